package frontend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

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

// apiResponse is the envelope of a Prometheus API answer.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

// decodeMatrix decodes a successful query_range answer.
func decodeMatrix(body []byte) (*matrix, error) {
	var resp apiResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decode the querier's answer: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("querier answered %q: %s: %s", resp.Status, resp.ErrorType, resp.Error)
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric     json.RawMessage   `json:"metric"`
			Values     []json.RawMessage `json:"values"`
			Histograms []json.RawMessage `json:"histograms"`
		} `json:"result"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		return nil, fmt.Errorf("decode the querier's result: %w", err)
	}
	if data.ResultType != "matrix" {
		return nil, fmt.Errorf("querier answered a %q, not a matrix", data.ResultType)
	}
	m := &matrix{series: make([]*rawSeries, 0, len(data.Result)), warnings: resp.Warnings, infos: resp.Infos}
	for _, r := range data.Result {
		var lbls map[string]string
		if err := json.Unmarshal(r.Metric, &lbls); err != nil {
			return nil, fmt.Errorf("decode a series' metric: %w", err)
		}
		s := &rawSeries{metric: r.Metric, lset: labels.FromMap(lbls)}
		var err error
		if s.values, err = decodePoints(r.Values); err != nil {
			return nil, err
		}
		if s.histograms, err = decodePoints(r.Histograms); err != nil {
			return nil, err
		}
		m.series = append(m.series, s)
	}
	return m, nil
}

// decodePoints reads the timestamp of each [timestamp, value] point.
func decodePoints(raw []json.RawMessage) ([]rawPoint, error) {
	out := make([]rawPoint, 0, len(raw))
	for _, p := range raw {
		var pair []json.RawMessage
		if err := json.Unmarshal(p, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("decode a point %.100s: not a [timestamp, value] pair", p)
		}
		ts, err := strconv.ParseFloat(string(pair[0]), 64)
		if err != nil {
			return nil, fmt.Errorf("decode the timestamp of a point %.100s: %w", p, err)
		}
		out = append(out, rawPoint{t: int64(math.Round(ts * 1000)), raw: p})
	}
	return out, nil
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
