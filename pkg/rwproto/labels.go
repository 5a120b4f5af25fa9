package rwproto

import "github.com/prometheus/prometheus/model/labels"

// AppendStringLabels appends to dst the encoding Prometheus' stringlabels
// uses for ls: each name and value preceded by its length in one byte, or
// 255 and three bytes little-endian for lengths of 255 and more. Hashing it
// gives what labels.Labels.Hash() gives for the same labels, without
// building them.
func AppendStringLabels(dst []byte, ls []labels.Label) []byte {
	for i := range ls {
		dst = appendSized(dst, ls[i].Name)
		dst = appendSized(dst, ls[i].Value)
	}
	return dst
}

func appendSized(dst []byte, s string) []byte {
	if n := len(s); n < 255 {
		dst = append(dst, byte(n))
	} else {
		dst = append(dst, 255, byte(n), byte(n>>8), byte(n>>16))
	}
	return append(dst, s...)
}
