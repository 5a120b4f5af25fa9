package rwproto

import "encoding/binary"

// AppendSeries appends a series, given as its own protobuf encoding
// (TimeSeries.Raw), to dst, an encoded WriteRequest under construction. A
// request built this way from the series of decoded requests is a valid
// WriteRequest: nothing of the series is encoded again.
func AppendSeries(dst, raw []byte) []byte {
	return appendField(dst, 1, raw)
}

// AppendMetadata appends metadata, given as its own encoding (Metadata.Raw).
func AppendMetadata(dst, raw []byte) []byte {
	return appendField(dst, 3, raw)
}

func appendField(dst []byte, field uint64, raw []byte) []byte {
	dst = binary.AppendUvarint(dst, field<<3|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(raw)))
	return append(dst, raw...)
}
