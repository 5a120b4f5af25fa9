package rwproto

import (
	"encoding/binary"
	"fmt"

	"github.com/prometheus/prometheus/prompb"
)

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

// Encode returns the series' protobuf encoding (a TimeSeries message body)
// built from its fields, for a series whose fields no longer match Raw
// (validation dropped some of its exemplars). All its labels must be held.
func (ts *TimeSeries) Encode() ([]byte, error) {
	p := prompb.TimeSeries{
		Labels:     make([]prompb.Label, len(ts.Labels)),
		Samples:    make([]prompb.Sample, len(ts.Samples)),
		Exemplars:  make([]prompb.Exemplar, len(ts.Exemplars)),
		Histograms: ts.Histograms,
	}
	for i, l := range ts.Labels {
		p.Labels[i] = prompb.Label{Name: l.Name, Value: l.Value}
	}
	for i, s := range ts.Samples {
		p.Samples[i] = prompb.Sample{Timestamp: s.Timestamp, Value: s.Value}
	}
	for i, e := range ts.Exemplars {
		x := prompb.Exemplar{Value: e.Value, Timestamp: e.Timestamp, Labels: make([]prompb.Label, len(e.Labels))}
		for j, l := range e.Labels {
			x.Labels[j] = prompb.Label{Name: l.Name, Value: l.Value}
		}
		p.Exemplars[i] = x
	}
	b, err := p.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode series: %w", err)
	}
	return b, nil
}
