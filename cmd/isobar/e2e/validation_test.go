//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// v2Headers are those of a remote write 2.0 sender.
func v2Headers(h http.Header) {
	h.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
	h.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
}

// otlpHeaders are those of an OTLP HTTP exporter.
func otlpHeaders(h http.Header) {
	h.Set("Content-Type", "application/x-protobuf")
	h.Del("Content-Encoding")
}

func mustMarshal(t *testing.T, r *writev2.Request) []byte {
	b, err := r.Marshal()
	require.NoError(t, err)
	return b
}

// bodyV2 is a snappy-compressed remote write 2.0 request of the series
// series makes with the symbols table it is given.
func bodyV2(series func(*writev2.SymbolsTable) []writev2.TimeSeries) []byte {
	syms := writev2.NewSymbolTable()
	ss := series(&syms)
	b, err := (&writev2.Request{Symbols: syms.Symbols(), Timeseries: ss}).Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, b)
}

// v2Series is a 2.0 series of the labels (name/value pairs, in order) with
// one sample.
func v2Series(syms *writev2.SymbolsTable, ts int64, v float64, lbls ...string) writev2.TimeSeries {
	s := writev2.TimeSeries{Samples: []writev2.Sample{{Value: v, Timestamp: ts}}}
	for _, l := range lbls {
		s.LabelsRefs = append(s.LabelsRefs, syms.Symbolize(l))
	}
	return s
}

// otlpBody is an OTLP request of one gauge a metric name, value 22 at ts,
// each data point with as many attributes as the map says.
func otlpBody(t *testing.T, ts int64, metrics map[string]int) []byte {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for name, attrs := range metrics {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(ts * 1e6))
		dp.SetDoubleValue(22)
		for i := range attrs {
			dp.Attributes().PutStr(fmt.Sprintf("a%05d", i), "v")
		}
	}
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(t, err)
	return b
}

// badInputFlags are the limits the bad-input table runs with: small enough
// to reach with small requests.
var badInputFlags = []string{"-distributor.max-recv-msg-size=100000", "-validation.max-label-names-per-series=10"}

// rateLimitedFlags are those of the target of the rate-limit cases.
var rateLimitedFlags = []string{"-distributor.ingestion-rate-limit=10", "-distributor.ingestion-burst-size=10"}

// badInputTarget is where the cases of the table write and where what they
// stored is read: one single binary, or a cluster's distributor and
// querier.
type badInputTarget struct {
	write, read *isobar
	// replicas, in a cluster, are the ingesters every series goes to.
	replicas []*isobar
}

// push writes req and returns once every replica holds it. A cluster
// answers once a quorum of replicas stored a write; a conflicting write
// sent before the last replica stored the first can reach that replica
// first and stay there (quorum replication has no order between two
// writes): the table's cases build on writes that are everywhere.
func (b badInputTarget) push(t *testing.T, req *prompb.WriteRequest) {
	t.Helper()
	const ingested = `isobar_ingester_ingested_samples_total(\{.*\})?`
	before := make([]float64, len(b.replicas))
	for i, r := range b.replicas {
		before[i] = metricSum(t, r, ingested)
	}
	mustPush(t, b.write.URL, "", req)
	samples := 0
	for _, ts := range req.Timeseries {
		samples += len(ts.Samples)
	}
	for i, r := range b.replicas {
		waitFor(t, 10*time.Second, "the write on every replica", func() error {
			if got := metricSum(t, r, ingested) - before[i]; got < float64(samples) {
				return fmt.Errorf("%s ingested %v of %d samples", r.URL, got, samples)
			}
			return nil
		})
	}
}

// TestBadInputIsRejectedAndNothingValidIsLost sends one bad request after
// another and requires the documented status and message for each, that the
// valid series of a partly invalid request are stored, that nothing invalid
// is, and that the process keeps serving.
func TestBadInputIsRejectedAndNothingValidIsLost(t *testing.T) {
	iso := startIsobar(t, t.TempDir(), badInputFlags...)
	limited := startIsobar(t, t.TempDir(), rateLimitedFlags...)
	badInputTable(t, badInputTarget{write: iso, read: iso}, badInputTarget{write: limited, read: limited})
	require.Empty(t, logLines(iso.currentLog(), "level=ERROR"), "isobar logged errors")
	require.Empty(t, logLines(limited.currentLog(), "level=ERROR"), "isobar logged errors")
}

// TestClusterRejectsBadInputAsTheSingleBinary runs the same table against
// a cluster: 3 ingesters, a distributor and a querier with the same
// limits, and a second distributor with the rate limit. Every case gives
// the single binary's status and message, and stores what it stores.
func TestClusterRejectsBadInputAsTheSingleBinary(t *testing.T) {
	c := startCluster(t, badInputFlags...)
	limited := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "distributor-limited", "distributor", freeAddr(t), append(slices.Clone(badInputFlags), rateLimitedFlags...)...)...)
	waitActive(t, limited, 3)
	badInputTable(t, badInputTarget{write: c.distributor, read: c.querier, replicas: c.ingesters}, badInputTarget{write: limited, read: c.querier, replicas: c.ingesters})
	for _, p := range append(slices.Clone(c.ingesters), c.distributor, c.querier, limited) {
		require.True(t, p.running(), "isobar pid %d exited", p.PID())
	}
}

func badInputTable(t *testing.T, main, limited badInputTarget) {
	ts := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	valid := func(name string, v float64) prompb.TimeSeries {
		return series([]string{"__name__", name, "job", "e2e"}, sample(ts, v))
	}
	bad := func(lbls ...string) prompb.TimeSeries { return series(lbls, sample(ts, 1)) }
	body := func(ss ...prompb.TimeSeries) []byte { return encodeWrite(&prompb.WriteRequest{Timeseries: ss}) }
	// The limit counts __name__: 10 labels pass, 11 do not, and the message
	// counts all of them even though the decoder keeps only limit+1.
	withLabels := func(name string, n int) []string {
		lbls := []string{"__name__", name}
		for i := range n - 1 {
			lbls = append(lbls, fmt.Sprintf("l%02d", i), "v")
		}
		return lbls
	}
	zstdBody := func(ss ...prompb.TimeSeries) []byte {
		raw, err := (&prompb.WriteRequest{Timeseries: ss}).Marshal()
		require.NoError(t, err)
		enc, err := zstd.NewWriter(nil)
		require.NoError(t, err)
		defer enc.Close()
		return enc.EncodeAll(raw, nil)
	}
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}

	type stored struct {
		name  string
		value float64
	}
	cases := []struct {
		name       string
		target     *badInputTarget
		setup      []prompb.TimeSeries // pushed first, must get 204
		method     string              // default POST
		path       string              // default /api/v1/push
		body       []byte
		chunked    bool                // send without Content-Length
		header     func(h http.Header) // changes to the remote-write headers
		wantStatus int
		wantMsg    []string // substrings of the response body
		stored     []stored // must be queryable afterwards with this value
	}{
		{
			// The tenant's first sample: had its head taken it, every
			// later write would be refused (every case below writes).
			name:       "sample at the int64 minimum",
			body:       body(series([]string{"__name__", "e2e_bad_ancient"}, sample(math.MinInt64, 1)), valid("e2e_ok_ancient", 13)),
			wantStatus: 400, wantMsg: []string{"more than 30d in the past (-validation.past-grace-period)", `{__name__="e2e_bad_ancient"}`},
			stored: []stored{{"e2e_ok_ancient", 13}},
		},
		{
			name: "not snappy", body: []byte("this is not a snappy-compressed body"),
			wantStatus: 400, wantMsg: []string{"decode snappy body"},
		},
		{
			name: "snappy of garbage (bad protobuf)", body: snappy.Encode(nil, []byte("\x0a\xff\x01garbage")),
			wantStatus: 400, wantMsg: []string{"decode remote-write 1.0 request"},
		},
		{
			name: "snappy of a varint overflow", body: snappy.Encode(nil, bytes.Repeat([]byte{0xff}, 12)),
			wantStatus: 400, wantMsg: []string{"decode remote-write 1.0 request", "varint"},
		},
		{
			name: "body over the limit", body: randomBytes(120_000),
			wantStatus: 413, wantMsg: []string{"request body of 120000 bytes exceeds the limit of 100000 bytes (-distributor.max-recv-msg-size)"},
		},
		{
			name: "chunked body over the limit", body: randomBytes(120_000), chunked: true,
			wantStatus: 413, wantMsg: []string{"exceeds the limit of 100000 bytes (-distributor.max-recv-msg-size)"},
		},
		{
			name: "decompressed body over the limit", body: snappy.Encode(nil, make([]byte, 300_000)),
			wantStatus: 413, wantMsg: []string{"decompressed body of 300000 bytes exceeds the limit of 100000 bytes"},
		},
		{
			name: "gzip encoding", body: body(valid("e2e_bad_gzip", 1)),
			header:     func(h http.Header) { h.Set("Content-Encoding", "gzip") },
			wantStatus: 415, wantMsg: []string{`unsupported Content-Encoding "gzip"`},
		},
		{
			name: "remote write 2.0: the valid series stored, the invalid refused",
			body: bodyV2(func(syms *writev2.SymbolsTable) []writev2.TimeSeries {
				return []writev2.TimeSeries{v2Series(syms, ts, 21, "__name__", "e2e_ok_rw2", "job", "e2e"), v2Series(syms, ts, 1, "job", "e2e_bad_rw2_no_name")}
			}),
			header:     v2Headers,
			wantStatus: 400, wantMsg: []string{"series has no metric name (label __name__)", `{job="e2e_bad_rw2_no_name"}`},
			stored: []stored{{"e2e_ok_rw2", 21}},
		},
		{
			name: "remote write 2.0: a symbol reference out of the table",
			body: bodyV2(func(syms *writev2.SymbolsTable) []writev2.TimeSeries {
				s := v2Series(syms, ts, 1, "__name__", "e2e_bad_rw2_ref")
				s.LabelsRefs[1] = 9999
				return []writev2.TimeSeries{s}
			}),
			header:     v2Headers,
			wantStatus: 400, wantMsg: []string{"decode remote-write 2.0 request", "symbol reference 9999 out of the table of"},
		},
		{
			name:       "remote write 2.0: references into an empty table",
			body:       snappy.Encode(nil, mustMarshal(t, &writev2.Request{Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ts}}}}})),
			header:     v2Headers,
			wantStatus: 400, wantMsg: []string{"symbol reference 2 out of the table of 0"},
		},
		{
			name:       "remote write 2.0: a symbols table not starting empty",
			body:       snappy.Encode(nil, mustMarshal(t, &writev2.Request{Symbols: []string{"__name__", "e2e_bad_rw2_symbols"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{0, 1}, Samples: []writev2.Sample{{Value: 1, Timestamp: ts}}}}})),
			header:     v2Headers,
			wantStatus: 400, wantMsg: []string{"the symbols table must start with the empty string"},
		},
		{
			name: "an unknown remote-write message", body: body(valid("e2e_bad_rw3", 1)),
			header: func(h http.Header) {
				h.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v3.Request")
			},
			wantStatus: 415, wantMsg: []string{`unsupported remote-write message "io.prometheus.write.v3.Request"`, "(remote write 1.0) and io.prometheus.write.v2.Request (2.0)"},
		},
		{
			name: "OTLP: a metric name of 1 MB", path: "/otlp/v1/metrics",
			body:   otlpBody(t, ts, map[string]int{"e2e_bad_otlp_" + strings.Repeat("n", 1<<20): 0, "e2e_ok_otlp_name": 0}),
			header: otlpHeaders, wantStatus: 413, wantMsg: []string{"exceeds the limit of 100000 bytes"},
		},
		{
			name: "OTLP: a metric name over the label value limit, beside a valid one", path: "/otlp/v1/metrics",
			body:   otlpBody(t, ts, map[string]int{"e2e_bad_otlp_" + strings.Repeat("n", 3000): 0, "e2e_ok_otlp_long": 0}),
			header: otlpHeaders, wantStatus: 400, wantMsg: []string{"is 3013 bytes long, more than the limit of 2048 (-validation.max-length-label-value)"},
			stored: []stored{{"e2e_ok_otlp_long", 22}},
		},
		{
			name: "OTLP: 5,000 attributes on a data point, beside a valid one", path: "/otlp/v1/metrics",
			body:   otlpBody(t, ts, map[string]int{"e2e_bad_otlp_attrs": 5000, "e2e_ok_otlp_attrs": 0}),
			header: otlpHeaders, wantStatus: 400, wantMsg: []string{"has 5001 labels, more than the limit of 10 (-validation.max-label-names-per-series)"},
			stored: []stored{{"e2e_ok_otlp_attrs", 22}},
		},
		{
			name: "OTLP: not protobuf", path: "/otlp/v1/metrics", body: []byte("\x0a\xff\x01garbage"),
			header: otlpHeaders, wantStatus: 400, wantMsg: []string{"decode OTLP request"},
		},
		{
			name: "json content type", body: body(valid("e2e_bad_json", 1)),
			header:     func(h http.Header) { h.Set("Content-Type", "application/json") },
			wantStatus: 415, wantMsg: []string{`unsupported Content-Type "application/json"`},
		},
		{
			name:       "missing metric name",
			body:       body(valid("e2e_ok_missing_name_1", 1), bad("job", "e2e_bad_missing_name"), valid("e2e_ok_missing_name_2", 2)),
			wantStatus: 400, wantMsg: []string{`series has no metric name (label __name__): {job="e2e_bad_missing_name"}`},
			stored: []stored{{"e2e_ok_missing_name_1", 1}, {"e2e_ok_missing_name_2", 2}},
		},
		{
			name:       "unsorted labels",
			body:       body(bad("__name__", "e2e_bad_unsorted", "b", "1", "a", "2"), valid("e2e_ok_unsorted", 3)),
			wantStatus: 400, wantMsg: []string{`labels are not sorted by name: "a" comes after "b": {__name__="e2e_bad_unsorted", b="1", a="2"}`},
			stored: []stored{{"e2e_ok_unsorted", 3}},
		},
		{
			name:       "duplicate label name",
			body:       body(valid("e2e_ok_duplicate", 4), bad("__name__", "e2e_bad_duplicate", "a", "1", "a", "2")),
			wantStatus: 400, wantMsg: []string{`duplicate label name "a": {__name__="e2e_bad_duplicate", a="1", a="2"}`},
			stored: []stored{{"e2e_ok_duplicate", 4}},
		},
		{
			name:       "too many labels",
			body:       body(bad(withLabels("e2e_bad_too_many_labels", 11)...), valid("e2e_ok_too_many_labels", 5)),
			wantStatus: 400, wantMsg: []string{"series has 11 labels, more than the limit of 10 (-validation.max-label-names-per-series)", `__name__="e2e_bad_too_many_labels"`},
			stored: []stored{{"e2e_ok_too_many_labels", 5}},
		},
		{
			name:       "far too many labels",
			body:       body(bad(withLabels("e2e_bad_far_too_many_labels", 40)...), valid("e2e_ok_far_too_many_labels", 5.5)),
			wantStatus: 400, wantMsg: []string{"series has 40 labels, more than the limit of 10 (-validation.max-label-names-per-series)", `__name__="e2e_bad_far_too_many_labels"`},
			stored: []stored{{"e2e_ok_far_too_many_labels", 5.5}},
		},
		{
			name: "labels at the limit", body: body(series(withLabels("e2e_ok_ten_labels", 10), sample(ts, 5.25))),
			wantStatus: 204, stored: []stored{{"e2e_ok_ten_labels", 5.25}},
		},
		{
			name:       "several invalid series",
			body:       body(bad("__name__", "e2e_bad_several_1", "b", "1", "a", "1"), valid("e2e_ok_several", 5.75), bad("job", "e2e_bad_several_2")),
			wantStatus: 400, wantMsg: []string{`labels are not sorted by name: "a" comes after "b": {__name__="e2e_bad_several_1"`},
			stored: []stored{{"e2e_ok_several", 5.75}},
		},
		{
			name:       "series without samples",
			body:       body(prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "e2e_bad_no_samples"}}}, valid("e2e_ok_no_samples", 5.875)),
			wantStatus: 400, wantMsg: []string{`series has no samples: {__name__="e2e_bad_no_samples"}`},
			stored: []stored{{"e2e_ok_no_samples", 5.875}},
		},
		{
			name:       "invalid label name",
			body:       body(bad("__name__", "e2e_bad_label_name", "bad-name", "v"), valid("e2e_ok_label_name", 6)),
			wantStatus: 400, wantMsg: []string{`invalid label name "bad-name": {__name__="e2e_bad_label_name", bad-name="v"}`},
			stored: []stored{{"e2e_ok_label_name", 6}},
		},
		{
			name:       "invalid metric name",
			body:       body(bad("__name__", "e2e bad metric"), valid("e2e_ok_metric_name", 7)),
			wantStatus: 400, wantMsg: []string{`invalid metric name "e2e bad metric"`},
			stored: []stored{{"e2e_ok_metric_name", 7}},
		},
		{
			name:       "sample 1h in the future",
			body:       body(series([]string{"__name__", "e2e_bad_future"}, sample(time.Now().Add(time.Hour).UnixMilli(), 1)), valid("e2e_ok_future", 8)),
			wantStatus: 400, wantMsg: []string{"in the future (-validation.create-grace-period)", `{__name__="e2e_bad_future"}`},
			stored: []stored{{"e2e_ok_future", 8}},
		},
		{
			name:       "empty label value",
			body:       body(bad("__name__", "e2e_bad_empty_value", "a", ""), valid("e2e_ok_empty_value", 9)),
			wantStatus: 400, wantMsg: []string{`label "a" has an empty value: {__name__="e2e_bad_empty_value", a=""}`},
			stored: []stored{{"e2e_ok_empty_value", 9}},
		},
		{
			name:       "out-of-order sample",
			setup:      []prompb.TimeSeries{series([]string{"__name__", "e2e_ooo"}, sample(ts, 10))},
			body:       body(series([]string{"__name__", "e2e_ooo"}, sample(ts-time.Minute.Milliseconds(), 11)), valid("e2e_ok_ooo", 12)),
			wantStatus: 400, wantMsg: []string{"out-of-order sample", `{__name__="e2e_ooo"}`},
			stored: []stored{{"e2e_ooo", 10}, {"e2e_ok_ooo", 12}},
		},
		{
			name:       "new value for an existing timestamp",
			setup:      []prompb.TimeSeries{series([]string{"__name__", "e2e_dup"}, sample(ts, 13))},
			body:       body(series([]string{"__name__", "e2e_dup"}, sample(ts, 14)), valid("e2e_ok_dup", 15)),
			wantStatus: 400, wantMsg: []string{"different value than the one already stored", `{__name__="e2e_dup"}`},
			stored: []stored{{"e2e_dup", 13}, {"e2e_ok_dup", 15}},
		},
		{
			name:       "identical retry",
			setup:      []prompb.TimeSeries{series([]string{"__name__", "e2e_retry"}, sample(ts, 16))},
			body:       body(series([]string{"__name__", "e2e_retry"}, sample(ts, 16))),
			wantStatus: 204, stored: []stored{{"e2e_retry", 16}},
		},
		{
			name: "zstd encoding", body: zstdBody(valid("e2e_ok_zstd", 17)),
			header:     func(h http.Header) { h.Set("Content-Encoding", "zstd") },
			wantStatus: 204, stored: []stored{{"e2e_ok_zstd", 17}},
		},
		{
			name: "write alias", path: "/api/v1/write", body: body(valid("e2e_ok_write_alias", 18)),
			wantStatus: 204, stored: []stored{{"e2e_ok_write_alias", 18}},
		},
		{
			name: "GET", method: http.MethodGet, wantStatus: 405,
		},
		{
			name: "over the rate limit", target: &limited,
			body: body(func() []prompb.TimeSeries {
				var ss []prompb.TimeSeries
				for i := range 11 {
					ss = append(ss, valid(fmt.Sprintf("e2e_bad_rate_%02d", i), 1))
				}
				return ss
			}()...),
			wantStatus: 429, wantMsg: []string{"ingestion rate limit of 10 samples/s with burst 10 exceeded by a request of 11 samples", "-distributor.ingestion-rate-limit"},
		},
		{
			name: "within the rate limit", target: &limited, body: body(valid("e2e_ok_rate", 19)),
			wantStatus: 204, stored: []stored{{"e2e_ok_rate", 19}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := c.target
			if target == nil {
				target = &main
			}
			if len(c.setup) > 0 {
				target.push(t, &prompb.WriteRequest{Timeseries: c.setup})
			}
			method, path := c.method, c.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/api/v1/push"
			}
			var rd io.Reader
			if c.body != nil {
				rd = bytes.NewReader(c.body)
				if c.chunked {
					rd = io.MultiReader(rd) // hides the length: sent chunked
				}
			}
			req, err := http.NewRequest(method, target.write.URL+path, rd)
			require.NoError(t, err)
			req.Header = rwHeaders("")
			if c.header != nil {
				c.header(req.Header)
			}
			resp, err := httpClient.Do(req)
			require.NoError(t, err)
			respBody, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, c.wantStatus, resp.StatusCode, "response: %s", respBody)
			for _, m := range c.wantMsg {
				require.Contains(t, string(respBody), m)
			}
			if c.wantStatus == http.StatusMethodNotAllowed {
				require.Contains(t, resp.Header.Get("Allow"), http.MethodPost)
			}
			ac := apiClient{base: target.read.URL}
			for _, s := range c.stored {
				r := ac.query(t, s.name, ts)
				require.Len(t, r.Series, 1, "%s must be stored", s.name)
				require.Equal(t, []point{{T: ts, F: s.value}}, r.Series[0].Points, "%s", s.name)
			}
		})
	}

	// Nothing invalid was stored, through either target; the processes
	// still run and take valid writes.
	for _, target := range []badInputTarget{main, limited} {
		ac := apiClient{base: target.read.URL}
		for _, q := range []string{`{__name__=~"e2e_bad.*"}`, `{job=~"e2e_bad.*"}`} {
			r := ac.query(t, q+"[1h]", time.Now().UnixMilli())
			require.Empty(t, r.Series, "%s: invalid data was stored", q)
		}
		names := ac.labelValues(t, "__name__")
		for _, n := range names {
			require.False(t, strings.HasPrefix(n, "e2e_bad"), "metric name %s of invalid data is known", n)
		}
		for _, p := range []*isobar{target.write, target.read} {
			require.True(t, p.running(), "isobar pid %d exited", p.PID())
			code, body, err := httpGet(p.URL+"/ready", nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code, "/ready: %s", body)
		}
		mustPush(t, target.write.URL, "", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{valid("e2e_ok_final", 20)}})
		r := ac.query(t, "e2e_ok_final", ts)
		require.Len(t, r.Series, 1)
		require.Equal(t, 20.0, r.Series[0].Points[0].F)
	}
}
