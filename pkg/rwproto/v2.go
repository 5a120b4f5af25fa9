package rwproto

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// v2State is what decoding a remote-write 2.0 request needs besides the
// Request itself, kept across requests for its memory.
type v2State struct {
	symbols  []string
	refs     []uint32
	arena    []byte // the series' and metadata's 1.0 encodings
	families map[string]struct{}
}

const symbolCost = unsafe.Sizeof("")

// ErrBadSymbols refuses a 2.0 request whose symbols table does not start
// with the empty string, as the protocol requires.
var ErrBadSymbols = errors.New("the symbols table must start with the empty string")

// UnmarshalV2 decodes buf, an io.prometheus.write.v2.Request, into r in
// the shape of a 1.0 request: labels, exemplar labels, help and unit are
// resolved through the symbols table (strings still point into buf), and
// the series' metadata become the request's metadata, one per metric
// family. Created (start) timestamps of samples are kept. Series and
// metadata have no Raw: EncodeRaw makes it when they are to be forwarded.
func (r *Request) UnmarshalV2(buf []byte, lim Limits) error {
	r.Reset()
	st := &r.v2
	if st.families == nil {
		st.families = map[string]struct{}{}
	}
	clear(st.families)
	bud := &budget{left: int64(len(buf))*DecodedBytesPerByte + decodedBytesSlack}

	// The symbols first: a sender may put them after the series. Where
	// they all come first, as senders write them, the series are read from
	// the first one on.
	st.symbols = st.symbols[:0]
	firstSeries, symbolsEnd := -1, 0
	d := decoder{buf: buf}
	for d.more() {
		at := d.pos
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		if field != 4 || wire != wireBytes {
			if field == 5 && firstSeries < 0 {
				firstSeries = at
			}
			if err := d.skip(wire); err != nil {
				return err
			}
			continue
		}
		s, err := d.bytes()
		if err != nil {
			return fmt.Errorf("symbol %d: %w", len(st.symbols), err)
		}
		if err := bud.take(symbolCost); err != nil {
			return err
		}
		st.symbols = append(st.symbols, yoloString(s))
		symbolsEnd = d.pos
	}
	if len(st.symbols) > 0 && st.symbols[0] != "" {
		return ErrBadSymbols
	}

	d = decoder{buf: buf}
	if firstSeries >= symbolsEnd {
		d.pos = firstSeries
	}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		if field != 5 || wire != wireBytes {
			if err := d.skip(wire); err != nil {
				return err
			}
			continue
		}
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
		meta, err := ts.unmarshalV2(b, st, lim.MaxLabelsPerSeries, bud)
		if err != nil {
			return fmt.Errorf("timeseries %d: %w", len(r.Timeseries)-1, err)
		}
		if err := r.addV2Metadata(ts, meta, bud); err != nil {
			return err
		}
	}
	return nil
}

// EncodeRaw gives every series and metadata of r that has no Raw (a
// request decoded from remote write 2.0, or built from OTLP) its 1.0
// encoding, for forwarding to ingesters.
func (r *Request) EncodeRaw() error {
	st := &r.v2
	st.arena = st.arena[:0]
	for i := range r.Timeseries {
		ts := &r.Timeseries[i]
		if ts.Raw != nil {
			continue
		}
		start := len(st.arena)
		var err error
		if st.arena, err = ts.AppendEncoded(st.arena); err != nil {
			return fmt.Errorf("timeseries %d: %w", i, err)
		}
		ts.Raw = st.arena[start:len(st.arena):len(st.arena)]
	}
	for i := range r.Metadata {
		m := &r.Metadata[i]
		if m.Raw != nil {
			continue
		}
		start := len(st.arena)
		st.arena = m.AppendEncodedMetadata(st.arena)
		m.Raw = st.arena[start:len(st.arena):len(st.arena)]
	}
	// The arena may have moved as it grew: what was encoded before still
	// points into the old arrays, which hold what they were given.
	return nil
}

// v2Metadata is a 2.0 series' metadata, its strings resolved.
type v2Metadata struct {
	typ        prompb.MetricMetadata_MetricType
	help, unit string
}

func (ts *TimeSeries) unmarshalV2(buf []byte, st *v2State, maxLabels int, bud *budget) (v2Metadata, error) {
	var meta v2Metadata
	st.refs = st.refs[:0]
	d := decoder{buf: buf}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return meta, err
		}
		switch {
		case field == 1 && (wire == wireBytes || wire == wireVarint):
			if st.refs, err = d.appendUint32s(st.refs, wire); err != nil {
				return meta, fmt.Errorf("label references: %w", err)
			}
		case field >= 2 && field <= 5 && wire == wireBytes:
			b, err := d.bytes()
			if err != nil {
				return meta, err
			}
			if err := bud.take([...]uintptr{0, 0, sampleCost, histogramCost, exemplarCost, 0}[field]); err != nil {
				return meta, err
			}
			switch field {
			case 2:
				ts.Samples = append(ts.Samples, Sample{})
				if err := ts.Samples[len(ts.Samples)-1].unmarshal(b); err != nil {
					return meta, fmt.Errorf("sample %d: %w", len(ts.Samples)-1, err)
				}
			case 3:
				if err := ts.appendHistogram(b, bud); err != nil {
					return meta, fmt.Errorf("histogram %d: %w", len(ts.Histograms)-1, err)
				}
			case 4:
				if err := ts.appendExemplarV2(b, st, maxLabels, bud); err != nil {
					return meta, fmt.Errorf("exemplar %d: %w", len(ts.Exemplars)-1, err)
				}
			case 5:
				if meta, err = unmarshalMetadataV2(b, st.symbols); err != nil {
					return meta, fmt.Errorf("metadata: %w", err)
				}
			}
		default:
			if err := d.skip(wire); err != nil {
				return meta, err
			}
		}
	}
	if len(st.refs)%2 != 0 {
		return meta, fmt.Errorf("%d label references: names and values come in pairs", len(st.refs))
	}
	for i := 0; i < len(st.refs); i += 2 {
		ts.NumLabels++
		if maxLabels > 0 && len(ts.Labels) > maxLabels {
			continue // kept for the error message only through NumLabels
		}
		if err := bud.take(labelCost); err != nil {
			return meta, err
		}
		l, err := symbolLabel(st.symbols, st.refs[i], st.refs[i+1])
		if err != nil {
			return meta, fmt.Errorf("label %d: %w", i/2, err)
		}
		ts.Labels = append(ts.Labels, l)
	}
	return meta, nil
}

func symbolLabel(symbols []string, name, value uint32) (labels.Label, error) {
	if int(name) >= len(symbols) || int(value) >= len(symbols) {
		return labels.Label{}, fmt.Errorf("symbol reference %d out of the table of %d", max(name, value), len(symbols))
	}
	return labels.Label{Name: symbols[name], Value: symbols[value]}, nil
}

func (ts *TimeSeries) appendExemplarV2(b []byte, st *v2State, maxLabels int, bud *budget) error {
	e := ts.nextExemplar()
	var refs []uint32 // an exemplar has a label or two: no scratch to share
	d := decoder{buf: b}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && (wire == wireBytes || wire == wireVarint):
			if refs, err = d.appendUint32s(refs, wire); err != nil {
				return fmt.Errorf("label references: %w", err)
			}
		default:
			if err := e.unmarshalValueOrSkip(&d, field, wire); err != nil {
				return err
			}
		}
	}
	if len(refs)%2 != 0 {
		return fmt.Errorf("%d label references: names and values come in pairs", len(refs))
	}
	if maxLabels > 0 && len(refs)/2 > maxLabels {
		return fmt.Errorf("exemplar has more than %d labels", maxLabels)
	}
	for i := 0; i < len(refs); i += 2 {
		if err := bud.take(labelCost); err != nil {
			return err
		}
		l, err := symbolLabel(st.symbols, refs[i], refs[i+1])
		if err != nil {
			return err
		}
		e.Labels = append(e.Labels, l)
	}
	return nil
}

func unmarshalMetadataV2(b []byte, symbols []string) (v2Metadata, error) {
	var m v2Metadata
	d := decoder{buf: b}
	for d.more() {
		field, wire, err := d.tag()
		if err != nil {
			return m, err
		}
		if wire != wireVarint || (field != 1 && field != 3 && field != 4) {
			if err := d.skip(wire); err != nil {
				return m, err
			}
			continue
		}
		v, err := d.varint()
		if err != nil {
			return m, err
		}
		if field == 1 {
			m.typ = prompb.MetricMetadata_MetricType(v)
			continue
		}
		if v >= uint64(len(symbols)) {
			return m, fmt.Errorf("symbol reference %d out of the table of %d", v, len(symbols))
		}
		if field == 3 {
			m.help = symbols[v]
		} else {
			m.unit = symbols[v]
		}
	}
	return m, nil
}

// addV2Metadata records the metadata of a series as its metric family's,
// once a request.
func (r *Request) addV2Metadata(ts *TimeSeries, m v2Metadata, bud *budget) error {
	if m == (v2Metadata{}) {
		return nil
	}
	name := ""
	for _, l := range ts.Labels {
		if l.Name == labels.MetricName {
			name = l.Value
			break
		}
	}
	family := familyName(name, m.typ)
	if family == "" {
		return nil
	}
	if _, seen := r.v2.families[family]; seen {
		return nil
	}
	if err := bud.take(metadataCost); err != nil {
		return err
	}
	r.v2.families[family] = struct{}{}
	r.Metadata = append(r.Metadata, Metadata{Type: m.typ, MetricFamilyName: family, Help: m.help, Unit: m.unit})
	return nil
}

// familyName is the metric family a series of the given type belongs to:
// a histogram's or summary's series carry suffixes its family does not.
func familyName(metric string, typ prompb.MetricMetadata_MetricType) string {
	var suffixes []string
	switch typ {
	case prompb.MetricMetadata_HISTOGRAM, prompb.MetricMetadata_GAUGEHISTOGRAM:
		suffixes = []string{"_bucket", "_count", "_sum", "_gcount", "_gsum"}
	case prompb.MetricMetadata_SUMMARY:
		suffixes = []string{"_count", "_sum"}
	}
	for _, s := range suffixes {
		if f, ok := strings.CutSuffix(metric, s); ok {
			return f
		}
	}
	return metric
}

// appendUint32s appends the values of a repeated uint32 field, packed
// (wireBytes) or not (wireVarint).
func (d *decoder) appendUint32s(dst []uint32, wire int) ([]uint32, error) {
	if wire == wireVarint {
		v, err := d.varint()
		if err != nil {
			return dst, err
		}
		if v > math.MaxUint32 {
			return dst, fmt.Errorf("value %d overflows 32 bits", v)
		}
		return append(dst, uint32(v)), nil
	}
	b, err := d.bytes()
	if err != nil {
		return dst, err
	}
	for i := 0; i < len(b); {
		// References below 16384, one or two bytes, are nearly all.
		if c := b[i]; c < 0x80 {
			dst = append(dst, uint32(c))
			i++
			continue
		} else if i+1 < len(b) && b[i+1] < 0x80 {
			dst = append(dst, uint32(c&0x7f)|uint32(b[i+1])<<7)
			i += 2
			continue
		}
		p := decoder{buf: b, pos: i}
		v, err := p.varintSlow()
		if err != nil {
			return dst, err
		}
		if v > math.MaxUint32 {
			return dst, fmt.Errorf("value %d overflows 32 bits", v)
		}
		dst = append(dst, uint32(v))
		i = p.pos
	}
	return dst, nil
}
