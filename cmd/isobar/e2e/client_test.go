//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// ---- remote write ----

// rwHeaders are the headers a Prometheus remote-write 1.0 sender sets, plus
// X-Scope-OrgID when tenant is not empty.
func rwHeaders(tenant string) http.Header {
	h := http.Header{}
	h.Set("Content-Encoding", "snappy")
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	h.Set("User-Agent", "isobar-e2e")
	if tenant != "" {
		h.Set("X-Scope-OrgID", tenant)
	}
	return h
}

// encodeWrite marshals req and compresses it with snappy (block format, as
// Prometheus sends it).
func encodeWrite(req *prompb.WriteRequest) []byte {
	raw, err := req.Marshal()
	if err != nil {
		panic(fmt.Sprintf("marshal WriteRequest: %v", err))
	}
	return snappy.Encode(nil, raw)
}

// postRaw POSTs body to url with the given headers and returns the status
// and response body.
func postRaw(c *http.Client, url string, body []byte, header http.Header) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// push sends req to baseURL's /api/v1/push as tenant ("" sends no
// X-Scope-OrgID) and returns the status and response body.
func push(baseURL, tenant string, req *prompb.WriteRequest) (int, string, error) {
	return postRaw(httpClient, baseURL+"/api/v1/push", encodeWrite(req), rwHeaders(tenant))
}

// mustPush pushes req and requires 204.
func mustPush(t *testing.T, baseURL, tenant string, req *prompb.WriteRequest) {
	t.Helper()
	code, body, err := push(baseURL, tenant, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code, "push: %s", body)
}

// series builds a prompb series; lbls are name/value pairs, sent in the
// order given (not sorted, so tests can send invalid ones).
func series(lbls []string, samples ...prompb.Sample) prompb.TimeSeries {
	if len(lbls)%2 != 0 {
		panic("series: odd number of label strings")
	}
	ts := prompb.TimeSeries{Samples: samples}
	for i := 0; i < len(lbls); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: lbls[i], Value: lbls[i+1]})
	}
	return ts
}

func sample(tMs int64, v float64) prompb.Sample { return prompb.Sample{Timestamp: tMs, Value: v} }

// ---- Prometheus HTTP API ----

// apiClient talks to the Prometheus HTTP API of isobar or Prometheus.
type apiClient struct {
	base   string // e.g. http://127.0.0.1:9009 (the client adds /api/v1/...)
	tenant string // X-Scope-OrgID; empty sends none
	// header is sent with every request (a credential).
	header http.Header
}

type apiEnvelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// getRaw GETs base+path?params and returns the status and body.
func (c apiClient) getRaw(path string, params url.Values) (int, string, error) {
	u := c.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	h := c.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.tenant != "" {
		h.Set("X-Scope-OrgID", c.tenant)
	}
	return httpGet(u, h)
}

// get GETs an API path and returns its data; any status but 200 or an
// envelope that is not "success" is an error.
func (c apiClient) get(path string, params url.Values) (json.RawMessage, error) {
	code, body, err := c.getRaw(path, params)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s%s?%s: status %d: %s", c.base, path, params.Encode(), code, strings.TrimSpace(body))
	}
	var env apiEnvelope
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return nil, fmt.Errorf("GET %s%s: decode response: %w: %.300s", c.base, path, err, body)
	}
	if env.Status != "success" {
		return nil, fmt.Errorf("GET %s%s: status %q: %s: %s", c.base, path, env.Status, env.ErrorType, env.Error)
	}
	return env.Data, nil
}

func (c apiClient) mustGet(t *testing.T, path string, params url.Values, into any) {
	t.Helper()
	data, err := c.get(path, params)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, into), "decode %s: %.500s", path, data)
}

// fmtTime formats a millisecond timestamp as the API's float seconds.
func fmtTime(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}

func (c apiClient) queryE(q string, tMs int64) (result, error) {
	data, err := c.get("/api/v1/query", url.Values{"query": {q}, "time": {fmtTime(tMs)}})
	if err != nil {
		return result{}, err
	}
	return parseResult(data)
}

func (c apiClient) queryRangeE(q string, startMs, endMs int64, step time.Duration) (result, error) {
	data, err := c.get("/api/v1/query_range", url.Values{
		"query": {q}, "start": {fmtTime(startMs)}, "end": {fmtTime(endMs)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	})
	if err != nil {
		return result{}, err
	}
	return parseResult(data)
}

func (c apiClient) query(t *testing.T, q string, tMs int64) result {
	t.Helper()
	r, err := c.queryE(q, tMs)
	require.NoError(t, err, "query %q at %s", q, fmtTime(tMs))
	return r
}

func (c apiClient) queryRange(t *testing.T, q string, startMs, endMs int64, step time.Duration) result {
	t.Helper()
	r, err := c.queryRangeE(q, startMs, endMs, step)
	require.NoError(t, err, "query_range %q [%s, %s] step %s", q, fmtTime(startMs), fmtTime(endMs), step)
	return r
}

// seriesSet returns /api/v1/series for the matchers, as canonical strings,
// sorted.
func (c apiClient) seriesSet(t *testing.T, matchers ...string) []string {
	t.Helper()
	return c.seriesSetWith(t, nil, matchers...)
}

// seriesSetWith is seriesSet with more parameters (start, end).
func (c apiClient) seriesSetWith(t *testing.T, params url.Values, matchers ...string) []string {
	t.Helper()
	p := url.Values{"match[]": matchers}
	for k, v := range params {
		p[k] = v
	}
	var out []map[string]string
	c.mustGet(t, "/api/v1/series", p, &out)
	s := make([]string, 0, len(out))
	for _, m := range out {
		s = append(s, labelString(m))
	}
	sort.Strings(s)
	return s
}

func (c apiClient) labelNames(t *testing.T) []string {
	t.Helper()
	var out []string
	c.mustGet(t, "/api/v1/labels", nil, &out)
	return out
}

func (c apiClient) labelValues(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	c.mustGet(t, "/api/v1/label/"+name+"/values", nil, &out)
	return out
}

// metadataEntry is one element of /api/v1/metadata.
type metadataEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

func (c apiClient) metadata(t *testing.T, metric string) map[string][]metadataEntry {
	t.Helper()
	params := url.Values{}
	if metric != "" {
		params.Set("metric", metric)
	}
	out := map[string][]metadataEntry{}
	c.mustGet(t, "/api/v1/metadata", params, &out)
	return out
}

// ---- query results ----

// result is a parsed query result: a vector or matrix as series of points
// (a vector's series have one point each), or a scalar as one series
// without labels.
type result struct {
	Type   string
	Series []resultSeries
}

type resultSeries struct {
	Metric map[string]string
	Points []point
}

// point is a float sample (H == nil) or a native histogram sample.
type point struct {
	T int64 // milliseconds
	F float64
	H *nativeHistogram
}

type nativeHistogram struct {
	Count, Sum float64
	Buckets    []nativeBucket
}

type nativeBucket struct {
	Boundaries          int // 0: (l,u], 1: [l,u), 2: (l,u), 3: [l,u]
	Lower, Upper, Count float64
}

func (r result) numPoints() int {
	n := 0
	for _, s := range r.Series {
		n += len(s.Points)
	}
	return n
}

func parseResult(data json.RawMessage) (result, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return result{}, fmt.Errorf("decode query data: %w", err)
	}
	r := result{Type: d.ResultType}
	switch d.ResultType {
	case "vector":
		var v []struct {
			Metric    map[string]string `json:"metric"`
			Value     []json.RawMessage `json:"value"`
			Histogram []json.RawMessage `json:"histogram"`
		}
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return result{}, fmt.Errorf("decode vector: %w", err)
		}
		for _, e := range v {
			p, err := parsePoint(e.Value, e.Histogram)
			if err != nil {
				return result{}, err
			}
			r.Series = append(r.Series, resultSeries{Metric: e.Metric, Points: []point{p}})
		}
	case "matrix":
		var m []struct {
			Metric     map[string]string   `json:"metric"`
			Values     [][]json.RawMessage `json:"values"`
			Histograms [][]json.RawMessage `json:"histograms"`
		}
		if err := json.Unmarshal(d.Result, &m); err != nil {
			return result{}, fmt.Errorf("decode matrix: %w", err)
		}
		for _, e := range m {
			s := resultSeries{Metric: e.Metric}
			for _, v := range e.Values {
				p, err := parsePoint(v, nil)
				if err != nil {
					return result{}, err
				}
				s.Points = append(s.Points, p)
			}
			for _, h := range e.Histograms {
				p, err := parsePoint(nil, h)
				if err != nil {
					return result{}, err
				}
				s.Points = append(s.Points, p)
			}
			slices.SortStableFunc(s.Points, func(a, b point) int { return cmp.Compare(a.T, b.T) })
			r.Series = append(r.Series, s)
		}
	case "scalar":
		var v []json.RawMessage
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return result{}, fmt.Errorf("decode scalar: %w", err)
		}
		p, err := parsePoint(v, nil)
		if err != nil {
			return result{}, err
		}
		r.Series = []resultSeries{{Metric: map[string]string{}, Points: []point{p}}}
	default:
		return result{}, fmt.Errorf("unexpected result type %q", d.ResultType)
	}
	return r, nil
}

// parsePoint parses [ts,"value"] or [ts,{histogram}].
func parsePoint(value, hist []json.RawMessage) (point, error) {
	pair := value
	if pair == nil {
		pair = hist
	}
	if len(pair) != 2 {
		return point{}, fmt.Errorf("sample is not a [time, value] pair: %v", pair)
	}
	ts, err := strconv.ParseFloat(string(pair[0]), 64)
	if err != nil {
		return point{}, fmt.Errorf("timestamp %s: %w", pair[0], err)
	}
	p := point{T: int64(math.Round(ts * 1000))}
	if value != nil {
		p.F, err = parseFloatString(pair[1])
		return p, err
	}
	var h struct {
		Count   json.RawMessage     `json:"count"`
		Sum     json.RawMessage     `json:"sum"`
		Buckets [][]json.RawMessage `json:"buckets"`
	}
	if err := json.Unmarshal(pair[1], &h); err != nil {
		return point{}, fmt.Errorf("histogram %s: %w", pair[1], err)
	}
	p.H = &nativeHistogram{}
	if p.H.Count, err = parseFloatString(h.Count); err != nil {
		return point{}, err
	}
	if p.H.Sum, err = parseFloatString(h.Sum); err != nil {
		return point{}, err
	}
	for _, b := range h.Buckets {
		if len(b) != 4 {
			return point{}, fmt.Errorf("histogram bucket is not [boundaries, lower, upper, count]: %v", b)
		}
		var nb nativeBucket
		if err := json.Unmarshal(b[0], &nb.Boundaries); err != nil {
			return point{}, err
		}
		if nb.Lower, err = parseFloatString(b[1]); err != nil {
			return point{}, err
		}
		if nb.Upper, err = parseFloatString(b[2]); err != nil {
			return point{}, err
		}
		if nb.Count, err = parseFloatString(b[3]); err != nil {
			return point{}, err
		}
		p.H.Buckets = append(p.H.Buckets, nb)
	}
	return p, nil
}

// parseFloatString parses a JSON string holding a float ("1.5", "NaN",
// "+Inf").
func parseFloatString(raw json.RawMessage) (float64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("value %s is not a string: %w", raw, err)
	}
	return strconv.ParseFloat(s, 64)
}

// labelString renders a label set canonically: {a="1", b="2"}.
func labelString(m map[string]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", n, m[n])
	}
	b.WriteByte('}')
	return b.String()
}

// floatsEqual compares within relTol relative difference; NaN equals NaN
// and infinities must match exactly.
func floatsEqual(a, b, relTol float64) bool {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return math.IsNaN(a) && math.IsNaN(b)
	case a == b:
		return true
	case math.IsInf(a, 0) || math.IsInf(b, 0):
		return false
	}
	return math.Abs(a-b) <= relTol*math.Max(math.Abs(a), math.Abs(b))
}

// diffResults describes how got differs from want (at most maxDiffs
// differences), or returns "" when they are equal: same result type, same
// label sets, same timestamps, values within relTol.
func diffResults(want, got result, relTol float64) string {
	const maxDiffs = 10
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < maxDiffs {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	if want.Type != got.Type {
		return fmt.Sprintf("result type: want %s, got %s", want.Type, got.Type)
	}
	index := func(r result) (map[string]resultSeries, []string) {
		m := make(map[string]resultSeries, len(r.Series))
		keys := make([]string, 0, len(r.Series))
		for _, s := range r.Series {
			k := labelString(s.Metric)
			if _, dup := m[k]; dup {
				add("series %s appears twice", k)
			}
			m[k] = s
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return m, keys
	}
	wm, wkeys := index(want)
	gm, gkeys := index(got)
	for _, k := range wkeys {
		if _, ok := gm[k]; !ok {
			add("missing series %s (%d points)", k, len(wm[k].Points))
		}
	}
	for _, k := range gkeys {
		if _, ok := wm[k]; !ok {
			add("unexpected series %s (%d points)", k, len(gm[k].Points))
		}
	}
	for _, k := range wkeys {
		g, ok := gm[k]
		if !ok {
			continue
		}
		w := wm[k]
		if d := diffPoints(w.Points, g.Points, relTol); d != "" {
			add("series %s: %s", k, d)
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return strings.Join(diffs, "\n")
}

func diffPoints(want, got []point, relTol float64) string {
	if len(want) != len(got) {
		return fmt.Sprintf("want %d points, got %d (want %s, got %s)", len(want), len(got), pointsSummary(want), pointsSummary(got))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.T != g.T {
			return fmt.Sprintf("point %d: want time %s, got %s", i, fmtTime(w.T), fmtTime(g.T))
		}
		if (w.H == nil) != (g.H == nil) {
			return fmt.Sprintf("at %s: want histogram=%v, got histogram=%v", fmtTime(w.T), w.H != nil, g.H != nil)
		}
		if w.H == nil {
			if !floatsEqual(w.F, g.F, relTol) {
				return fmt.Sprintf("at %s: want %v, got %v", fmtTime(w.T), w.F, g.F)
			}
			continue
		}
		if d := diffHistograms(w.H, g.H, relTol); d != "" {
			return fmt.Sprintf("at %s: histogram: %s", fmtTime(w.T), d)
		}
	}
	return ""
}

func diffHistograms(w, g *nativeHistogram, relTol float64) string {
	if !floatsEqual(w.Count, g.Count, relTol) || !floatsEqual(w.Sum, g.Sum, relTol) {
		return fmt.Sprintf("want count %v sum %v, got count %v sum %v", w.Count, w.Sum, g.Count, g.Sum)
	}
	if len(w.Buckets) != len(g.Buckets) {
		return fmt.Sprintf("want %d buckets, got %d", len(w.Buckets), len(g.Buckets))
	}
	for i := range w.Buckets {
		wb, gb := w.Buckets[i], g.Buckets[i]
		if wb.Boundaries != gb.Boundaries || !floatsEqual(wb.Lower, gb.Lower, relTol) ||
			!floatsEqual(wb.Upper, gb.Upper, relTol) || !floatsEqual(wb.Count, gb.Count, relTol) {
			return fmt.Sprintf("bucket %d: want %+v, got %+v", i, wb, gb)
		}
	}
	return ""
}

func pointsSummary(ps []point) string {
	if len(ps) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%s .. %s]", fmtTime(ps[0].T), fmtTime(ps[len(ps)-1].T))
}
