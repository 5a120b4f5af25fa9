package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/isobar-tsdb/isobar/pkg/testutil/benchseries"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// startApp runs a whole process's modules in this test, on a free port.
func startApp(t testing.TB, args ...string) (*App, string) {
	args = append([]string{"-data.dir", t.TempDir(), "-server.http-listen-address", "127.0.0.1", "-server.http-listen-port", "0", "-server.grpc-listen-port", "0"}, args...)
	cfg, err := Load(args)
	require.NoError(t, err)
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return a.ServerAddr() != "" }, 10*time.Second, 10*time.Millisecond)
	url := "http://" + a.ServerAddr()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	return a, url
}

func pushBody(t testing.TB, ts int64, series ...string) []byte {
	wr := &prompb.WriteRequest{}
	for _, s := range series {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: s}, {Name: "job", Value: "test"}},
			Samples: []prompb.Sample{{Value: 42, Timestamp: ts}},
		})
	}
	b, err := wr.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, b)
}

func do(t testing.TB, method, url, orgID string, body []byte) (int, string) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	require.NoError(t, err)
	if orgID != "" {
		req.Header.Set("X-Scope-OrgID", orgID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestPushThenQuery(t *testing.T) {
	_, url := startApp(t)
	now := time.Now().UnixMilli()
	code, msg := do(t, http.MethodPost, url+"/api/v1/push", "", pushBody(t, now, "up", "node_load1"))
	require.Equal(t, http.StatusNoContent, code, msg)

	at := fmt.Sprintf("%.3f", float64(now)/1000)
	for _, prefix := range []string{"/api/v1", "/prometheus/api/v1"} {
		code, body := do(t, http.MethodGet, url+prefix+"/query?query=up&time="+at, "", nil)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"test"},"value":[`+at+`,"42"]}]}}`, body)
	}
	code, body := do(t, http.MethodGet, url+"/api/v1/label/__name__/values", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, `{"status":"success","data":["node_load1","up"]}`, body)

	code, body = do(t, http.MethodGet, url+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, code)
	for _, m := range []string{
		`isobar_distributor_received_samples_total{tenant="anonymous"} 2`,
		`isobar_ingester_active_series{tenant="anonymous"} 2`,
		`isobar_request_duration_seconds_count{method="POST",route="POST /api/v1/push",status_code="204"} 1`,
		`isobar_build_info{`,
		`isobar_ingester_tsdb_head_series 2`,
	} {
		require.Contains(t, body, m)
	}
	code, _ = do(t, http.MethodGet, url+"/debug/pprof/goroutine?debug=1", "", nil)
	require.Equal(t, http.StatusOK, code)
}

// TestIngesterJoinsRing checks the ingester is in the ring, ACTIVE, once
// the process is ready, and that /ring shows it.
func TestIngesterJoinsRing(t *testing.T) {
	_, url := startApp(t, "-ring.instance-id", "ingester-test-1")
	code, page := do(t, http.MethodGet, url+"/ring", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, page, "ingester-test-1")
	require.Contains(t, page, "ACTIVE")

	// Tools ask for JSON.
	req, err := http.NewRequest(http.MethodGet, url+"/ring", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var ringJSON struct {
		Shards []struct {
			ID     string   `json:"id"`
			State  string   `json:"state"`
			Tokens []uint32 `json:"tokens"`
		} `json:"shards"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ringJSON))
	require.Len(t, ringJSON.Shards, 1)
	require.Equal(t, "ingester-test-1", ringJSON.Shards[0].ID)
	require.Equal(t, "ACTIVE", ringJSON.Shards[0].State)
	require.Len(t, ringJSON.Shards[0].Tokens, 512)
}

func TestMultitenancy(t *testing.T) {
	_, url := startApp(t, "-auth.multitenancy-enabled=true")
	now := time.Now().UnixMilli()
	code, msg := do(t, http.MethodPost, url+"/api/v1/push", "", pushBody(t, now, "up"))
	require.Equal(t, http.StatusUnauthorized, code, msg)
	code, _ = do(t, http.MethodPost, url+"/api/v1/push", "a", pushBody(t, now, "only_a"))
	require.Equal(t, http.StatusNoContent, code)
	code, _ = do(t, http.MethodPost, url+"/api/v1/push", "b", pushBody(t, now, "only_b"))
	require.Equal(t, http.StatusNoContent, code)

	_, body := do(t, http.MethodGet, url+"/api/v1/label/__name__/values", "a", nil)
	require.Equal(t, `{"status":"success","data":["only_a"]}`, body)
	_, body = do(t, http.MethodGet, url+"/api/v1/label/__name__/values", "b", nil)
	require.Equal(t, `{"status":"success","data":["only_b"]}`, body)
	code, _ = do(t, http.MethodGet, url+"/api/v1/query?query=up", "", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = do(t, http.MethodGet, url+"/api/v1/status/buildinfo", "", nil)
	require.Equal(t, http.StatusOK, code, "Grafana asks build info before it knows a tenant")
	require.Contains(t, body, `"version":"`+Version+`"`)
}

// BenchmarkPushPath measures the whole write path in one process: HTTP
// handler, decompression, decoding, validation, limits and the TSDB
// append, for a request of 2000 known series, as in a sender's steady
// state; by protocol: remote write 1.0, 2.0 (the same series and samples)
// and OTLP (a gauge of 2000 data points with the same attributes).
//
//	go test ./cmd/isobar/app -run '^$' -bench PushPath -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkPushPath(b *testing.B) {
	a, _ := startApp(b)
	const series = 2000
	// A sub-benchmark runs again with -count: its samples carry on where
	// the last run's stopped.
	next := map[string]int64{}
	for _, proto := range []struct {
		name, contentType string
		wantCode          int
		body              func(job string, ts int64) []byte
	}{
		{"remote_write_1.0", "application/x-protobuf", http.StatusNoContent, func(job string, ts int64) []byte {
			raw, err := libvirtAt(job, series, ts).Marshal()
			require.NoError(b, err)
			return snappy.Encode(nil, raw)
		}},
		{"remote_write_2.0", "application/x-protobuf;proto=io.prometheus.write.v2.Request", http.StatusNoContent, func(job string, ts int64) []byte {
			raw, err := v2Of(libvirtAt(job, series, ts)).Marshal()
			require.NoError(b, err)
			return snappy.Encode(nil, raw)
		}},
		{"otlp", "application/x-protobuf", http.StatusOK, func(job string, ts int64) []byte {
			raw, err := pmetricotlp.NewExportRequestFromMetrics(otlpOf(libvirtAt(job, series, ts))).MarshalProto()
			require.NoError(b, err)
			return raw
		}},
	} {
		b.Run(proto.name, func(b *testing.B) {
			path := "/api/v1/push"
			if proto.name == "otlp" {
				path = "/otlp/v1/metrics"
			}
			job := "bench-" + proto.name
			t0 := max(time.Now().Add(-time.Hour).UnixMilli(), next[proto.name])
			// Pre-encode the requests so the benchmark measures the server only.
			bodies := make([][]byte, 64)
			defer func() { next[proto.name] = t0 + int64(len(bodies)+1)*15 }()
			fill := func() {
				for i := range bodies {
					bodies[i] = proto.body(job, t0+int64(i)*15)
				}
			}
			handler := a.server.srv.Handler
			push := func(body []byte) {
				req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
				req.Header.Set("Content-Type", proto.contentType)
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != proto.wantCode {
					b.Fatalf("push: %d %s", rec.Code, strings.TrimSpace(rec.Body.String()))
				}
			}
			push(proto.body(job, t0-15)) // create the series
			fill()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if n == len(bodies) { // keep timestamps increasing, off the clock
					b.StopTimer()
					t0 += int64(len(bodies)) * 15
					fill()
					b.StartTimer()
					n = 0
				}
				push(bodies[n])
				n++
			}
			b.ReportMetric(float64(series*b.N)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(series*b.N), "µs/sample")
		})
	}
}

// libvirtAt is the benchmark workload of the given job at ts.
func libvirtAt(job string, series int, ts int64) *prompb.WriteRequest {
	wr := benchseries.Libvirt(series)
	for i := range wr.Timeseries {
		for j := range wr.Timeseries[i].Labels {
			if wr.Timeseries[i].Labels[j].Name == "job" {
				wr.Timeseries[i].Labels[j].Value = job
			}
		}
		wr.Timeseries[i].Samples[0] = prompb.Sample{Timestamp: ts, Value: float64(ts % 1000)}
	}
	return wr
}

// v2Of writes wr as a remote write 2.0 request.
func v2Of(wr *prompb.WriteRequest) *writev2.Request {
	syms := writev2.NewSymbolTable()
	out := &writev2.Request{}
	for _, ts := range wr.Timeseries {
		var lb labels.ScratchBuilder
		for _, l := range ts.Labels {
			lb.Add(l.Name, l.Value)
		}
		s := writev2.TimeSeries{LabelsRefs: syms.SymbolizeLabels(lb.Labels(), nil)}
		for _, x := range ts.Samples {
			s.Samples = append(s.Samples, writev2.Sample{Value: x.Value, Timestamp: x.Timestamp})
		}
		out.Timeseries = append(out.Timeseries, s)
	}
	out.Symbols = syms.Symbols()
	return out
}

// otlpOf writes wr's series as the data points of one OTLP gauge, their
// labels as attributes.
func otlpOf(wr *prompb.WriteRequest) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "libvirt-exporter")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(wr.Timeseries[0].Labels[0].Value)
	dps := m.SetEmptyGauge().DataPoints()
	for _, ts := range wr.Timeseries {
		dp := dps.AppendEmpty()
		for _, l := range ts.Labels[1:] {
			dp.Attributes().PutStr(l.Name, l.Value)
		}
		dp.SetTimestamp(pcommon.Timestamp(ts.Samples[0].Timestamp * 1e6))
		dp.SetDoubleValue(ts.Samples[0].Value)
	}
	return md
}

// TestOperatorEndpointsRefuseCrossSiteRequests: a page of another site
// cannot make an operator's browser flush, compact or change rules; the
// same requests from a tool (no browser headers) or the same origin work.
func TestOperatorEndpointsRefuseCrossSiteRequests(t *testing.T) {
	_, url := startApp(t)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"cross-site browser request", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"origin of another site", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"same-origin browser request", http.Header{"Sec-Fetch-Site": {"same-origin"}}, 0},
		{"a tool", nil, 0},
	} {
		for _, ep := range []struct {
			method, path, body string
			ok                 int
		}{
			{http.MethodPost, "/ingester/flush", "", http.StatusNoContent},
			{http.MethodPost, "/compactor/run", "", http.StatusNoContent},
			{http.MethodPost, "/prometheus/config/v1/rules/ns", "name: g\nrules:\n  - record: r\n    expr: vector(1)\n", http.StatusAccepted},
			{http.MethodDelete, "/prometheus/config/v1/rules/ns", "", http.StatusAccepted},
		} {
			t.Run(tc.name+" "+ep.method+" "+ep.path, func(t *testing.T) {
				req, err := http.NewRequest(ep.method, url+ep.path, strings.NewReader(ep.body))
				require.NoError(t, err)
				for k, v := range tc.header {
					req.Header[k] = v
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := tc.want
				if want == 0 {
					want = ep.ok
				}
				require.Equal(t, want, resp.StatusCode, "%s", b)
			})
		}
	}
}

func TestRedactArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{
			in:   []string{"isobar", "-bucket.s3.secret-access-key=abc", "-bucket.s3.access-key-id=id", "-target=all"},
			want: []string{"isobar", "-bucket.s3.secret-access-key=<redacted>", "-bucket.s3.access-key-id=id", "-target=all"},
		},
		{
			in:   []string{"isobar", "--bucket.s3.secret-access-key", "abc", "-x.password", "p", "-auth.token=t", "-target", "all"},
			want: []string{"isobar", "--bucket.s3.secret-access-key", "<redacted>", "-x.password", "<redacted>", "-auth.token=<redacted>", "-target", "all"},
		},
		{in: []string{"isobar", "-bucket.s3.secret-access-key"}, want: []string{"isobar", "-bucket.s3.secret-access-key"}},
	} {
		require.Equal(t, tc.want, redactArgs(tc.in))
	}
}

// TestTricklingClientIsCutOff: a push whose body never arrives whole is
// answered once -server.http-read-timeout passes, not held forever.
func TestTricklingClientIsCutOff(t *testing.T) {
	_, url := startApp(t, "-server.http-read-timeout=500ms")
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	_, err = fmt.Fprintf(conn, "POST /api/v1/push HTTP/1.1\r\nHost: isobar\r\nContent-Type: application/x-protobuf\r\nContent-Length: 104857600\r\n\r\n0123456789")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	status, err := bufio.NewReader(conn).ReadString('\n')
	took := time.Since(start)
	if err == nil {
		require.Contains(t, status, "400", "the answer to a body that stopped arriving")
	} else {
		require.ErrorIs(t, err, io.EOF, "the server closed the connection")
	}
	require.Less(t, took, 5*time.Second)
	require.GreaterOrEqual(t, took, 400*time.Millisecond)
}

// TestOperatorEndpointsMoveOrGo: operator endpoints served on their own
// address are gone from the HTTP port; turned off, they are nowhere.
func TestOperatorEndpointsMoveOrGo(t *testing.T) {
	a, url := startApp(t, "-server.operator-listen-address=127.0.0.1:0")
	op := "http://" + a.server.OperatorAddr()
	require.NotEqual(t, "http://", op)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/ingester/flush"}, {http.MethodPost, "/compactor/run"}, {http.MethodGet, "/debug/pprof/cmdline"},
	} {
		code, _ := do(t, tc.method, url+tc.path, "", nil)
		require.Equal(t, http.StatusNotFound, code, "%s on the HTTP port", tc.path)
		code, body := do(t, tc.method, op+tc.path, "", nil)
		require.Less(t, code, 300, "%s on the operator address: %s", tc.path, body)
	}
	code, _ := do(t, http.MethodGet, url+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, code, "metrics stay on the HTTP port")

	_, url = startApp(t, "-server.operator-endpoints-disabled")
	for _, path := range []string{"/ingester/flush", "/compactor/run", "/store-gateway/sync"} {
		code, _ := do(t, http.MethodPost, url+path, "", nil)
		require.Equal(t, http.StatusNotFound, code, path)
	}
	code, _ = do(t, http.MethodGet, url+"/debug/pprof/", "", nil)
	require.Equal(t, http.StatusNotFound, code)
}
