package rpc

import (
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// frameDecoder decodes the frames of a chunk query's answer (each a
// ChunkedReadResponse) over the bytes received: label names and values are
// strings over them and chunk data are slices of them. The series, labels
// and chunks of a frame each live in one array, kept from frame to frame,
// so a stream of frames allocates only while its frames grow (gogo's
// decoder makes about ten allocations a series and copies every byte).
//
// Unknown fields are skipped, and a known field of the wrong wire type
// reads as empty (gogo's decoder refuses it).
type frameDecoder struct {
	series   []prompb.ChunkedSeries
	pointers []*prompb.ChunkedSeries
	labels   []prompb.Label
	chunks   []prompb.Chunk
}

// decode decodes buf into m. buf must not change while m is read, and m
// is valid only until the next decode: both share memory with it.
func (d *frameDecoder) decode(buf []byte, m *prompb.ChunkedReadResponse) error {
	var nSeries, nLabels, nChunks int
	err := eachField(buf, func(num protowire.Number, _ uint64, v []byte) error {
		if num != 1 {
			return nil
		}
		nSeries++
		return eachField(v, func(num protowire.Number, _ uint64, _ []byte) error {
			switch num {
			case 1:
				nLabels++
			case 2:
				nChunks++
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	*m = prompb.ChunkedReadResponse{}
	if nSeries == 0 {
		return eachField(buf, func(num protowire.Number, x uint64, _ []byte) error {
			if num == 2 {
				m.QueryIndex = int64(x)
			}
			return nil
		})
	}
	series := reuse(d.series, nSeries)
	clear(series)
	m.ChunkedSeries = reuse(d.pointers, nSeries)
	labelSlab := reuse(d.labels, nLabels)[:0]
	chunkSlab := reuse(d.chunks, nChunks)[:0]
	d.series, d.pointers, d.labels, d.chunks = series, m.ChunkedSeries, labelSlab, chunkSlab
	i := 0
	return eachField(buf, func(num protowire.Number, x uint64, v []byte) error {
		switch num {
		case 2:
			m.QueryIndex = int64(x)
			return nil
		case 1:
		default:
			return nil
		}
		cs := &series[i]
		m.ChunkedSeries[i] = cs
		i++
		firstLabel, firstChunk := len(labelSlab), len(chunkSlab)
		err := eachField(v, func(num protowire.Number, _ uint64, v []byte) error {
			switch num {
			case 1:
				var l prompb.Label
				if err := decodeLabel(v, &l); err != nil {
					return err
				}
				labelSlab = append(labelSlab, l)
			case 2:
				var c prompb.Chunk
				if err := decodeChunk(v, &c); err != nil {
					return err
				}
				chunkSlab = append(chunkSlab, c)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n := len(labelSlab); n > firstLabel {
			cs.Labels = labelSlab[firstLabel:n:n]
		}
		if n := len(chunkSlab); n > firstChunk {
			cs.Chunks = chunkSlab[firstChunk:n:n]
		}
		return nil
	})
}

// reuse returns s with length n, in its own array if that is large enough,
// else in a new one with room for frames a little larger.
func reuse[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

func decodeLabel(b []byte, l *prompb.Label) error {
	return eachField(b, func(num protowire.Number, _ uint64, v []byte) error {
		switch num {
		case 1:
			l.Name = unsafe.String(unsafe.SliceData(v), len(v))
		case 2:
			l.Value = unsafe.String(unsafe.SliceData(v), len(v))
		}
		return nil
	})
}

func decodeChunk(b []byte, c *prompb.Chunk) error {
	return eachField(b, func(num protowire.Number, x uint64, v []byte) error {
		switch num {
		case 1:
			c.MinTimeMs = int64(x)
		case 2:
			c.MaxTimeMs = int64(x)
		case 3:
			c.Type = prompb.Chunk_Encoding(x)
		case 4:
			c.Data = v[:len(v):len(v)]
		}
		return nil
	})
}
