package rpc

import (
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeFrame decodes a frame of a chunk query's answer (a
// ChunkedReadResponse) from buf, which it keeps: label names and values are
// strings over buf and chunk data are slices of it, and the series, labels
// and chunks of the frame each live in one array, so a frame costs five
// allocations whatever the number of series it holds (gogo's decoder makes
// about ten a series and copies every byte). buf must not change
// afterwards; what keeps any of the frame keeps all of buf.
//
// Unknown fields are skipped, and a known field of the wrong wire type
// reads as empty (gogo's decoder refuses it).
func decodeFrame(buf []byte, m *prompb.ChunkedReadResponse) error {
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
	series := make([]prompb.ChunkedSeries, nSeries)
	m.ChunkedSeries = make([]*prompb.ChunkedSeries, nSeries)
	labelSlab := make([]prompb.Label, 0, nLabels)
	chunkSlab := make([]prompb.Chunk, 0, nChunks)
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
