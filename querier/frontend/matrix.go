package frontend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/labels"
)

// The frontend splits, caches and merges range query answers without
// decoding their values: a point stays the bytes the querier wrote, so a
// merged answer is the querier's own encoding, byte for byte, and a float
// never goes through a parse and a format that might change its digits.

// matrix is the result of a successful query_range answer.
type matrix struct {
	series   []*rawSeries
	warnings []string
	infos    []string
}

// rawSeries is one series of a matrix: its metric as encoded, and its
// float and histogram points, each as encoded, in time order.
type rawSeries struct {
	metric     json.RawMessage
	lset       labels.Labels // decoded from metric, to sort by
	values     []rawPoint
	histograms []rawPoint
}

type rawPoint struct {
	t   int64 // milliseconds
	raw json.RawMessage
}

// matrixJSON reads querier answers: jsoniter, whose iterator copies each
// point's bytes once, where encoding/json validated and copied them again
// for every level of nesting (bench_test.go: BenchmarkDecodeMatrix).
var matrixJSON = jsoniter.ConfigCompatibleWithStandardLibrary

// decodeMatrix decodes a successful query_range answer. The metrics and
// points it keeps are slices of one copy of body's bytes.
func decodeMatrix(body []byte) (*matrix, error) {
	it := matrixJSON.BorrowIterator(body)
	defer matrixJSON.ReturnIterator(it)
	// The captures never outgrow body, so the arena is never moved.
	d := matrixDecoder{arena: make([]byte, 0, len(body))}
	var (
		m                                   matrix
		status, errorType, errMsg, dataType string
		err                                 error
	)
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch field {
		case "status":
			status = it.ReadString()
		case "errorType":
			errorType = it.ReadString()
		case "error":
			errMsg = it.ReadString()
		case "warnings":
			m.warnings = readStrings(it)
		case "infos":
			m.infos = readStrings(it)
		case "data":
			it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
				switch field {
				case "resultType":
					dataType = it.ReadString()
				case "result":
					it.ReadArrayCB(func(it *jsoniter.Iterator) bool {
						var s *rawSeries
						if s, err = d.series(it); err != nil {
							return false
						}
						m.series = append(m.series, s)
						return true
					})
				default:
					it.Skip()
				}
				return it.Error == nil && err == nil
			})
		default:
			it.Skip()
		}
		return it.Error == nil && err == nil
	})
	switch {
	case err != nil:
		return nil, err
	case it.Error != nil:
		return nil, fmt.Errorf("decode the querier's answer: %w", it.Error)
	case status != "success":
		return nil, fmt.Errorf("querier answered %q: %s: %s", status, errorType, errMsg)
	case dataType != "matrix":
		return nil, fmt.Errorf("querier answered a %q, not a matrix", dataType)
	}
	return &m, nil
}

// matrixDecoder keeps the bytes of the metrics and points it reads in one
// arena.
type matrixDecoder struct {
	arena   []byte
	builder labels.ScratchBuilder
}

// capture returns the bytes of the next value of it, as they are (but the
// blanks before it, which the iterator keeps).
func (d *matrixDecoder) capture(it *jsoniter.Iterator) []byte {
	start := len(d.arena)
	d.arena = it.SkipAndAppendBytes(d.arena)
	return bytes.TrimLeft(d.arena[start:len(d.arena):len(d.arena)], jsonBlanks)
}

const jsonBlanks = " \t\r\n"

func (d *matrixDecoder) series(it *jsoniter.Iterator) (*rawSeries, error) {
	s := &rawSeries{}
	var err error
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch field {
		case "metric":
			s.metric = d.capture(it)
			if it.Error == nil {
				s.lset, err = d.labels(s.metric)
			}
		case "values":
			s.values, err = d.points(it)
		case "histograms":
			s.histograms, err = d.points(it)
		default:
			it.Skip()
		}
		return it.Error == nil && err == nil
	})
	return s, err
}

// labels decodes a series' metric, {"name":"value",...}.
func (d *matrixDecoder) labels(metric []byte) (labels.Labels, error) {
	it := matrixJSON.BorrowIterator(metric)
	defer matrixJSON.ReturnIterator(it)
	d.builder.Reset()
	it.ReadMapCB(func(it *jsoniter.Iterator, name string) bool {
		d.builder.Add(name, it.ReadString())
		return it.Error == nil
	})
	if it.Error != nil {
		return labels.EmptyLabels(), fmt.Errorf("decode a series' metric %.100s: %w", metric, it.Error)
	}
	d.builder.Sort()
	lset := d.builder.Labels()
	if name, dup := lset.HasDuplicateLabelNames(); dup {
		return labels.EmptyLabels(), fmt.Errorf("decode a series' metric %.100s: label %q twice", metric, name)
	}
	return lset, nil
}

// points reads an array of [timestamp, value] points, keeping each as
// encoded and its timestamp in milliseconds.
func (d *matrixDecoder) points(it *jsoniter.Iterator) ([]rawPoint, error) {
	var (
		out []rawPoint
		err error
	)
	it.ReadArrayCB(func(it *jsoniter.Iterator) bool {
		raw := d.capture(it)
		if it.Error != nil {
			return false
		}
		var t int64
		if t, err = pointTime(raw); err != nil {
			return false
		}
		out = append(out, rawPoint{t: t, raw: raw})
		return true
	})
	return out, err
}

// pointTime reads the timestamp, in seconds, of a point [timestamp, value]
// whose JSON is valid, blanks trimmed before it.
func pointTime(raw []byte) (int64, error) {
	rest, ok := bytes.CutPrefix(raw, []byte("["))
	ts, _, found := bytes.Cut(rest, []byte(","))
	if !ok || !found {
		return 0, fmt.Errorf("decode a point %.100s: not a [timestamp, value] pair", raw)
	}
	sec, err := strconv.ParseFloat(string(bytes.TrimSpace(ts)), 64)
	if err != nil {
		return 0, fmt.Errorf("decode the timestamp of a point %.100s: %w", raw, err)
	}
	return int64(math.Round(sec * 1000)), nil
}

// readStrings reads an array of strings, or null.
func readStrings(it *jsoniter.Iterator) []string {
	if it.ReadNil() {
		return nil
	}
	var out []string
	it.ReadArrayCB(func(it *jsoniter.Iterator) bool {
		out = append(out, it.ReadString())
		return it.Error == nil
	})
	return out
}

// merge appends the series of later to m: later's points all lie after
// m's. Series of either alone are kept; warnings and infos are united. m
// must be a matrix of its own (built by merges into an empty one), never
// one a cache holds.
func (m *matrix) merge(later *matrix) {
	byMetric := make(map[string]*rawSeries, len(m.series))
	for _, s := range m.series {
		byMetric[string(s.metric)] = s
	}
	for _, s := range later.series {
		if have, ok := byMetric[string(s.metric)]; ok {
			have.values = append(have.values, s.values...)
			have.histograms = append(have.histograms, s.histograms...)
			continue
		}
		c := *s
		// Clipped: appending to them must never write into later's arrays,
		// which a cached extent may share.
		c.values, c.histograms = slices.Clip(s.values), slices.Clip(s.histograms)
		m.series = append(m.series, &c)
		byMetric[string(s.metric)] = &c
	}
	m.warnings = union(slices.Clip(m.warnings), later.warnings)
	m.infos = union(slices.Clip(m.infos), later.infos)
}

// trim returns the part of m with points in [start, end]; series left
// without points are dropped.
func (m *matrix) trim(start, end int64) *matrix {
	out := &matrix{warnings: m.warnings, infos: m.infos}
	for _, s := range m.series {
		c := &rawSeries{metric: s.metric, lset: s.lset, values: pointsIn(s.values, start, end), histograms: pointsIn(s.histograms, start, end)}
		if len(c.values)+len(c.histograms) > 0 {
			out.series = append(out.series, c)
		}
	}
	return out
}

func pointsIn(ps []rawPoint, start, end int64) []rawPoint {
	i, _ := slices.BinarySearchFunc(ps, start, func(p rawPoint, t int64) int { return cmpInt(p.t, t) })
	j, found := slices.BinarySearchFunc(ps, end, func(p rawPoint, t int64) int { return cmpInt(p.t, t) })
	if found {
		j++
	}
	if i >= j {
		return nil
	}
	return ps[i:j:j]
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

// size is about the bytes m holds, for the cache's budget.
func (m *matrix) size() int {
	n := 64
	for _, s := range m.series {
		n += len(s.metric) + 64
		for _, p := range s.values {
			n += len(p.raw) + 16
		}
		for _, p := range s.histograms {
			n += len(p.raw) + 16
		}
	}
	return n
}

// encode writes m as the querier writes a query_range answer: series
// sorted by labels, "values" and "histograms" only when there are some. It
// changes nothing of m, which a cache may share.
func (m *matrix) encode() []byte {
	sorted := slices.Clone(m.series)
	slices.SortFunc(sorted, func(a, b *rawSeries) int { return labels.Compare(a.lset, b.lset) })
	var b bytes.Buffer
	b.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for i, s := range sorted {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"metric":`)
		b.Write(s.metric)
		writePoints(&b, "values", s.values)
		writePoints(&b, "histograms", s.histograms)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	writeStrings(&b, "warnings", m.warnings)
	writeStrings(&b, "infos", m.infos)
	b.WriteByte('}')
	return b.Bytes()
}

func writePoints(b *bytes.Buffer, name string, ps []rawPoint) {
	if len(ps) == 0 {
		return
	}
	b.WriteString(`,"` + name + `":[`)
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(p.raw)
	}
	b.WriteByte(']')
}

func writeStrings(b *bytes.Buffer, name string, ss []string) {
	if len(ss) == 0 {
		return
	}
	enc, _ := json.Marshal(ss) // strings always encode
	b.WriteString(`,"` + name + `":`)
	b.Write(enc)
}
