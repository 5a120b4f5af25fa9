// Package rwproto decodes Prometheus remote-write 1.0 requests
// (prometheus.WriteRequest) without allocating per series or per sample,
// and 2.0 requests (io.prometheus.write.v2.Request) into the same shape.
//
// Label names and values in a decoded Request point into the buffer it was
// decoded from: they are valid only while that buffer is neither reused nor
// modified, and a Request is reused across calls to Unmarshal. Whoever keeps a
// string past the request must copy it (strings.Clone, or labels built by a
// labels.ScratchBuilder).
package rwproto

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// Request is a decoded remote-write request, reused across Unmarshal calls.
type Request struct {
	Timeseries []TimeSeries
	Metadata   []Metadata

	v2 v2State // what UnmarshalV2 reuses
}

// TimeSeries is one series of a request with its samples.
type TimeSeries struct {
	// Labels are the series' labels in the order they were sent, at most
	// Limits.MaxLabelsPerSeries+1 of them; NumLabels counts all that were sent.
	Labels     []labels.Label
	NumLabels  int
	Samples    []Sample
	Exemplars  []Exemplar
	Histograms []prompb.Histogram
	// Raw is the series' own protobuf encoding (the TimeSeries message body),
	// so it can be forwarded to another process without encoding it again.
	Raw []byte
}

// Sample is one float sample.
type Sample struct {
	Timestamp int64
	Value     float64
	// StartTimestamp is when the counter the sample belongs to started
	// (remote write 2.0's created timestamp); 0 when not sent.
	StartTimestamp int64
}

// Exemplar is one exemplar of a series.
type Exemplar struct {
	Labels    []labels.Label
	Value     float64
	Timestamp int64
}

// Metadata describes a metric family.
type Metadata struct {
	Type             prompb.MetricMetadata_MetricType
	MetricFamilyName string
	Help             string
	Unit             string
	// Raw is the metadata's own protobuf encoding, for forwarding.
	Raw []byte
}

// Limits bound how much memory decoding may use, whatever the input: a
// request of tiny series would otherwise cost many times its size in structs.
type Limits struct {
	MaxSeries          int
	MaxLabelsPerSeries int
}

// Errors that a malformed request yields.
var (
	ErrTruncated = errors.New("protobuf message truncated")
	ErrVarint    = errors.New("protobuf varint overflows 64 bits")
)

// DecodedBytesPerByte bounds what a request may cost in decoded objects:
// this many bytes of structs per byte of the request, plus
// decodedBytesSlack. Real requests need 1 to 9 (a tiny native histogram);
// a request of empty messages, 2 bytes each, would otherwise cost up to 125
// times its size.
const (
	DecodedBytesPerByte = 12
	decodedBytesSlack   = 1 << 20
)

// ErrTooManyObjects refuses a request whose decoded objects outweigh it.
var ErrTooManyObjects = fmt.Errorf("request decodes to more than %d bytes of objects per byte: refused as a decompression bomb of empty messages", DecodedBytesPerByte)

// budget counts down the bytes of objects a request may still decode to.
type budget struct{ left int64 }

func (b *budget) take(n uintptr) error {
	b.left -= int64(n)
	if b.left < 0 {
		return ErrTooManyObjects
	}
	return nil
}

// In-memory sizes of the decoded objects, charged to the budget.
const (
	seriesCost    = unsafe.Sizeof(TimeSeries{})
	sampleCost    = unsafe.Sizeof(Sample{})
	labelCost     = unsafe.Sizeof(labels.Label{})
	exemplarCost  = unsafe.Sizeof(Exemplar{})
	histogramCost = unsafe.Sizeof(prompb.Histogram{})
	metadataCost  = unsafe.Sizeof(Metadata{})
)

// Reset empties the request but keeps its allocated capacity.
func (r *Request) Reset() {
	r.Timeseries = r.Timeseries[:0]
	r.Metadata = r.Metadata[:0]
}

// NumSamples counts the float and histogram samples of the request.
func (r *Request) NumSamples() int {
	n := 0
	for i := range r.Timeseries {
		n += len(r.Timeseries[i].Samples) + len(r.Timeseries[i].Histograms)
	}
	return n
}

// Unmarshal decodes buf, a prometheus.WriteRequest, into r. Strings in r
// point into buf afterwards.
func (r *Request) Unmarshal(buf []byte, lim Limits) error {
	r.Reset()
	bud := &budget{left: int64(len(buf))*DecodedBytesPerByte + decodedBytesSlack}
	d := decoder{buf: buf}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && wire == wireBytes:
			b, err := d.bytes()
			if err != nil {
				return fmt.Errorf("timeseries %d: %w", len(r.Timeseries), err)
			}
			if lim.MaxSeries > 0 && len(r.Timeseries) >= lim.MaxSeries {
				return fmt.Errorf("request has more than %d series (-distributor.max-series-per-request)", lim.MaxSeries)
			}
			if err := bud.take(seriesCost); err != nil {
				return err
			}
			ts := r.nextSeries()
			if err := ts.unmarshal(b, lim.MaxLabelsPerSeries, bud); err != nil {
				return fmt.Errorf("timeseries %d: %w", len(r.Timeseries)-1, err)
			}
		case field == 3 && wire == wireBytes:
			b, err := d.bytes()
			if err != nil {
				return fmt.Errorf("metadata %d: %w", len(r.Metadata), err)
			}
			if err := bud.take(metadataCost); err != nil {
				return err
			}
			r.Metadata = append(r.Metadata, Metadata{})
			if err := r.Metadata[len(r.Metadata)-1].unmarshal(b); err != nil {
				return fmt.Errorf("metadata %d: %w", len(r.Metadata)-1, err)
			}
		default:
			if err := d.skip(wire); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextSeries extends Timeseries by one element, reusing the element's slices
// from an earlier request when there is capacity.
func (r *Request) nextSeries() *TimeSeries {
	n := len(r.Timeseries)
	if n < cap(r.Timeseries) {
		r.Timeseries = r.Timeseries[:n+1]
		ts := &r.Timeseries[n]
		ts.Labels, ts.Samples, ts.Exemplars, ts.Histograms = ts.Labels[:0], ts.Samples[:0], ts.Exemplars[:0], ts.Histograms[:0]
		ts.NumLabels, ts.Raw = 0, nil
		return ts
	}
	r.Timeseries = append(r.Timeseries, TimeSeries{})
	return &r.Timeseries[n]
}

func (ts *TimeSeries) unmarshal(buf []byte, maxLabels int, bud *budget) error {
	ts.Raw = buf
	d := decoder{buf: buf}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		if wire != wireBytes || field < 1 || field > 4 {
			if err := d.skip(wire); err != nil {
				return err
			}
			continue
		}
		b, err := d.bytes()
		if err != nil {
			return err
		}
		if err := bud.take([...]uintptr{0, labelCost, sampleCost, exemplarCost, histogramCost}[field]); err != nil {
			return err
		}
		switch field {
		case 1:
			ts.NumLabels++
			if maxLabels > 0 && len(ts.Labels) > maxLabels {
				continue // kept for the error message only through NumLabels
			}
			ts.Labels = append(ts.Labels, labels.Label{})
			if err := unmarshalLabel(b, &ts.Labels[len(ts.Labels)-1]); err != nil {
				return fmt.Errorf("label %d: %w", ts.NumLabels-1, err)
			}
		case 2:
			ts.Samples = append(ts.Samples, Sample{})
			if err := ts.Samples[len(ts.Samples)-1].unmarshal(b); err != nil {
				return fmt.Errorf("sample %d: %w", len(ts.Samples)-1, err)
			}
		case 3:
			if err := ts.appendExemplar(b, maxLabels, bud); err != nil {
				return fmt.Errorf("exemplar %d: %w", len(ts.Exemplars)-1, err)
			}
		case 4:
			if err := ts.appendHistogram(b, bud); err != nil {
				return fmt.Errorf("histogram %d: %w", len(ts.Histograms)-1, err)
			}
		}
	}
	return nil
}

// nextExemplar extends Exemplars by one element, reusing its labels' slice
// from an earlier request when there is capacity.
func (ts *TimeSeries) nextExemplar() *Exemplar {
	n := len(ts.Exemplars)
	if n < cap(ts.Exemplars) {
		ts.Exemplars = ts.Exemplars[:n+1]
		ts.Exemplars[n] = Exemplar{Labels: ts.Exemplars[n].Labels[:0]}
	} else {
		ts.Exemplars = append(ts.Exemplars, Exemplar{})
	}
	return &ts.Exemplars[n]
}

func (ts *TimeSeries) appendExemplar(b []byte, maxLabels int, bud *budget) error {
	e := ts.nextExemplar()
	d := decoder{buf: b}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && wire == wireBytes:
			lb, err := d.bytes()
			if err != nil {
				return err
			}
			if maxLabels > 0 && len(e.Labels) > maxLabels {
				return fmt.Errorf("exemplar has more than %d labels", maxLabels)
			}
			if err := bud.take(labelCost); err != nil {
				return err
			}
			e.Labels = append(e.Labels, labels.Label{})
			if err := unmarshalLabel(lb, &e.Labels[len(e.Labels)-1]); err != nil {
				return err
			}
		default:
			if err := e.unmarshalValueOrSkip(&d, field, wire); err != nil {
				return err
			}
		}
	}
	return nil
}

// unmarshalValueOrSkip reads the exemplar's value (field 2) or timestamp
// (field 3), alike in 1.0 and 2.0, or skips the field.
func (e *Exemplar) unmarshalValueOrSkip(d *decoder, field uint64, wire int) error {
	switch {
	case field == 2 && wire == wireFixed64:
		v, err := d.fixed64()
		if err != nil {
			return err
		}
		e.Value = math.Float64frombits(v)
	case field == 3 && wire == wireVarint:
		v, err := d.varint()
		if err != nil {
			return err
		}
		e.Timestamp = int64(v)
	default:
		return d.skip(wire)
	}
	return nil
}

// appendHistogram decodes a native histogram with prompb's generated code,
// reusing the slices of an earlier request's histogram at the same
// position, and charges its buckets to the budget.
func (ts *TimeSeries) appendHistogram(b []byte, bud *budget) error {
	n := len(ts.Histograms)
	if n < cap(ts.Histograms) {
		ts.Histograms = ts.Histograms[:n+1]
		old := ts.Histograms[n]
		ts.Histograms[n] = prompb.Histogram{
			NegativeSpans:  old.NegativeSpans[:0],
			NegativeDeltas: old.NegativeDeltas[:0],
			NegativeCounts: old.NegativeCounts[:0],
			PositiveSpans:  old.PositiveSpans[:0],
			PositiveDeltas: old.PositiveDeltas[:0],
			PositiveCounts: old.PositiveCounts[:0],
			CustomValues:   old.CustomValues[:0],
		}
	} else {
		ts.Histograms = append(ts.Histograms, prompb.Histogram{})
	}
	h := &ts.Histograms[n]
	if err := h.Unmarshal(b); err != nil {
		return err
	}
	buckets := len(h.NegativeSpans) + len(h.NegativeDeltas) + len(h.NegativeCounts) +
		len(h.PositiveSpans) + len(h.PositiveDeltas) + len(h.PositiveCounts) + len(h.CustomValues)
	return bud.take(uintptr(buckets) * 8)
}

func unmarshalLabel(b []byte, l *labels.Label) error {
	// Fast path for the shape every sender produces: name (field 1) then
	// value (field 2), each shorter than 128 bytes.
	if len(b) >= 4 && b[0] == 0x0a && b[1] < 0x80 {
		n := int(b[1])
		if v := 2 + n; v+2 <= len(b) && b[v] == 0x12 && b[v+1] < 0x80 && v+2+int(b[v+1]) == len(b) {
			l.Name = yoloString(b[2:v])
			l.Value = yoloString(b[v+2:])
			return nil
		}
	}
	d := decoder{buf: b}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		if wire != wireBytes || (field != 1 && field != 2) {
			if err := d.skip(wire); err != nil {
				return err
			}
			continue
		}
		s, err := d.bytes()
		if err != nil {
			return err
		}
		if field == 1 {
			l.Name = yoloString(s)
		} else {
			l.Value = yoloString(s)
		}
	}
	return nil
}

func (s *Sample) unmarshal(b []byte) error {
	*s = Sample{}
	d := decoder{buf: b}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && wire == wireFixed64:
			v, err := d.fixed64()
			if err != nil {
				return err
			}
			s.Value = math.Float64frombits(v)
		case field == 2 && wire == wireVarint:
			v, err := d.varint()
			if err != nil {
				return err
			}
			s.Timestamp = int64(v)
		case field == 3 && wire == wireVarint:
			v, err := d.varint()
			if err != nil {
				return err
			}
			s.StartTimestamp = int64(v)
		default:
			if err := d.skip(wire); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Metadata) unmarshal(b []byte) error {
	m.Raw = b
	d := decoder{buf: b}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && wire == wireVarint:
			v, err := d.varint()
			if err != nil {
				return err
			}
			m.Type = prompb.MetricMetadata_MetricType(v)
		case (field == 2 || field == 4 || field == 5) && wire == wireBytes:
			s, err := d.bytes()
			if err != nil {
				return err
			}
			switch field {
			case 2:
				m.MetricFamilyName = yoloString(s)
			case 4:
				m.Help = yoloString(s)
			case 5:
				m.Unit = yoloString(s)
			}
		default:
			if err := d.skip(wire); err != nil {
				return err
			}
		}
	}
	return nil
}

func yoloString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
