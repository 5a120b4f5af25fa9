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
	"github.com/stretchr/testify/require"
)

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
			wantStatus: 400, wantMsg: []string{"decode remote-write request"},
		},
		{
			name: "snappy of a varint overflow", body: snappy.Encode(nil, bytes.Repeat([]byte{0xff}, 12)),
			wantStatus: 400, wantMsg: []string{"decode remote-write request", "varint"},
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
			name: "remote write 2.0", body: body(valid("e2e_bad_rw2", 1)),
			header: func(h http.Header) {
				h.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
				h.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
			},
			wantStatus: 415, wantMsg: []string{`unsupported remote-write message "io.prometheus.write.v2.Request"`},
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
