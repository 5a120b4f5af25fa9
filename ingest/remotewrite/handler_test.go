package remotewrite

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// recorder is a Distributor that remembers what it was handed.
type recorder struct {
	mu      sync.Mutex
	tenants []string
	series  []string
	err     error
	max     int
}

func (r *recorder) Push(ctx context.Context, req *rwproto.Request) error {
	id, err := tenant.From(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tenants = append(r.tenants, id)
	for _, ts := range req.Timeseries {
		var b strings.Builder
		for _, l := range ts.Labels {
			b.WriteString(l.Name + "=" + l.Value + ",")
		}
		r.series = append(r.series, b.String())
	}
	return r.err
}

func (r *recorder) RecvLimits(string) (int, rwproto.Limits) {
	return r.max, rwproto.Limits{MaxSeries: 100, MaxLabelsPerSeries: 30}
}

func body(t testing.TB, series ...string) []byte {
	wr := &prompb.WriteRequest{}
	for _, name := range series {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: name}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1}},
		})
	}
	b, err := wr.Marshal()
	require.NoError(t, err)
	return b
}

func bodyV2(t testing.TB, series ...string) []byte {
	syms := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, name := range series {
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
			LabelsRefs: syms.SymbolizeLabels(labels.FromStrings("__name__", name), nil),
			Samples:    []writev2.Sample{{Value: 1, Timestamp: 1}},
		})
	}
	req.Symbols = syms.Symbols()
	b, err := req.Marshal()
	require.NoError(t, err)
	return b
}

func serve(h http.Handler, method string, hdr map[string]string, b []byte) *httptest.ResponseRecorder {
	return serveAt(h, "/api/v1/push", method, hdr, b)
}

func serveAt(h http.Handler, path, method string, hdr map[string]string, b []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	tenant.Middleware(false, h).ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	zenc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	valid := body(t, "up", "node_load1")
	big := body(t, strings.Repeat("x", 5000))

	for _, tc := range []struct {
		name       string
		method     string
		hdr        map[string]string
		body       []byte
		pushErr    error
		wantCode   int
		wantMsg    string
		wantSeries int
	}{
		{name: "snappy", hdr: map[string]string{"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}, body: snappy.Encode(nil, valid), wantCode: 204, wantSeries: 2},
		{name: "no headers means snappy", body: snappy.Encode(nil, valid), wantCode: 204, wantSeries: 2},
		{name: "rw1 proto param", hdr: map[string]string{"Content-Type": "application/x-protobuf;proto=prometheus.WriteRequest"}, body: snappy.Encode(nil, valid), wantCode: 204, wantSeries: 2},
		{name: "zstd", hdr: map[string]string{"Content-Encoding": "zstd"}, body: zenc.EncodeAll(valid, nil), wantCode: 204, wantSeries: 2},
		{name: "rw2", hdr: map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, body: snappy.Encode(nil, bodyV2(t, "up", "node_load1")), wantCode: 204, wantSeries: 2},
		{name: "rw2 bad symbols", hdr: map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, body: snappy.Encode(nil, []byte("\x22\x01x")), wantCode: 400, wantMsg: "decode remote-write 2.0 request: the symbols table must start with the empty string"},
		{name: "unknown message", hdr: map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v3.Request"}, body: snappy.Encode(nil, valid), wantCode: 415, wantMsg: "this server takes prometheus.WriteRequest (remote write 1.0) and io.prometheus.write.v2.Request (2.0)"},
		{name: "json", hdr: map[string]string{"Content-Type": "application/json"}, body: valid, wantCode: 415, wantMsg: "application/x-protobuf"},
		{name: "gzip", hdr: map[string]string{"Content-Encoding": "gzip"}, body: valid, wantCode: 415, wantMsg: "snappy or zstd"},
		{name: "not snappy", body: []byte("\xff\xff\xff\xff\xffhello"), wantCode: 400, wantMsg: "decode snappy body"},
		{name: "not protobuf", body: snappy.Encode(nil, []byte("\x0a\x7fhello")), wantCode: 400, wantMsg: "decode remote-write 1.0 request"},
		{name: "not zstd", hdr: map[string]string{"Content-Encoding": "zstd"}, body: []byte("nope"), wantCode: 400, wantMsg: "zstd"},
		{name: "compressed too large", body: snappy.Encode(nil, bytes.Repeat(big, 2)), wantCode: 413, wantMsg: "-distributor.max-recv-msg-size"},
		{name: "decompressed too large", body: snappy.Encode(nil, bytes.Repeat([]byte{0}, 8000)), wantCode: 413, wantMsg: "decompressed body of 8000 bytes"},
		{name: "zstd decompressed too large", hdr: map[string]string{"Content-Encoding": "zstd"}, body: zenc.EncodeAll(bytes.Repeat([]byte{0}, 8000), nil), wantCode: 413, wantMsg: "exceeds the limit"},
		{name: "bad data from distributor", body: snappy.Encode(nil, valid), pushErr: rpc.Errorf(rpc.CauseBadData, "1 series failed validation"), wantCode: 400, wantMsg: "1 series failed", wantSeries: 2},
		{name: "rate limited", body: snappy.Encode(nil, valid), pushErr: rpc.Errorf(rpc.CauseTenantLimit, "ingestion rate limit"), wantCode: 429, wantMsg: "rate limit", wantSeries: 2},
		{name: "not ready", body: snappy.Encode(nil, valid), pushErr: rpc.Errorf(rpc.CauseUnavailable, "replaying WAL"), wantCode: 503, wantSeries: 2},
		{name: "our fault", body: snappy.Encode(nil, valid), pushErr: context.DeadlineExceeded, wantCode: 500, wantSeries: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &recorder{err: tc.pushErr, max: 4096}
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			rec := serve(New(d, slog.New(slog.DiscardHandler), prometheus.NewRegistry()), method, tc.hdr, tc.body)
			require.Equal(t, tc.wantCode, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tc.wantMsg)
			require.Len(t, d.series, tc.wantSeries)
			if tc.wantSeries > 0 {
				require.Equal(t, []string{tenant.Anonymous}, d.tenants)
			}
		})
	}
}

func TestHandlerReusesBuffersSafely(t *testing.T) {
	d := &recorder{max: 1 << 20}
	h := New(d, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				name := strings.Repeat(string(rune('a'+i)), 10+i)
				rec := serve(h, http.MethodPost, nil, snappy.Encode(nil, body(t, name)))
				require.Equal(t, 204, rec.Code)
			}
		}()
	}
	wg.Wait()
	require.Len(t, d.series, 400)
	for _, s := range d.series {
		name := strings.TrimSuffix(strings.TrimPrefix(s, "__name__="), ",")
		require.Equal(t, strings.Repeat(name[:1], len(name)), name, "a request's strings must not be overwritten by another's")
	}
}

// FuzzHandler feeds arbitrary bodies through the handler: whatever arrives,
// the answer is a 2xx or 4xx, never a 5xx or a crash.
func FuzzHandler(f *testing.F) {
	f.Add(snappy.Encode(nil, body(f, "up")), false, false)
	f.Add(body(f, "up"), false, false)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00}, true, false)
	f.Add(snappy.Encode(nil, bodyV2(f, "up")), false, true)
	f.Fuzz(func(t *testing.T, b []byte, zstdEncoding, v2 bool) {
		hdr := map[string]string{}
		if zstdEncoding {
			hdr["Content-Encoding"] = "zstd"
		}
		if v2 {
			hdr["Content-Type"] = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
		}
		rec := serve(New(&recorder{max: 1 << 16}, slog.New(slog.DiscardHandler), nil), http.MethodPost, hdr, b)
		require.Less(t, rec.Code, 500, rec.Body.String())
	})
}

// TestClaimedSizesAreNotAllocated: what a client claims (a Content-Length,
// a snappy or zstd header's decoded size) allocates nothing until the
// bytes arrive; each request is refused having cost a few kilobytes.
func TestClaimedSizesAreNotAllocated(t *testing.T) {
	zenc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	frame := zenc.EncodeAll(make([]byte, 50<<20), nil)
	var hdr zstd.Header
	require.NoError(t, hdr.Decode(frame))
	require.True(t, hdr.HasFCS)
	zstdClaim := frame[:hdr.HeaderSize] // declares 50 MB, holds no block

	h := New(&recorder{max: 100 << 20}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	for _, tc := range []struct {
		name          string
		hdr           map[string]string
		body          []byte
		contentLength int64
		wantMsg       string
	}{
		{name: "snappy header claiming 100 MB", body: append(binary.AppendUvarint(nil, 100_000_000), 0), wantMsg: "claims 100000000 bytes, more than 5 compressed bytes can hold"},
		{name: "zstd header claiming 50 MB", hdr: map[string]string{"Content-Encoding": "zstd"}, body: zstdClaim, wantMsg: "decode zstd body"},
		{name: "Content-Length of 90 MB, 10 bytes sent", body: []byte("0123456789"), contentLength: 90 << 20, wantMsg: "decode snappy body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/push", bytes.NewReader(tc.body))
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			if tc.contentLength > 0 {
				req.ContentLength = tc.contentLength
			}
			rec := httptest.NewRecorder()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			tenant.Middleware(false, h).ServeHTTP(rec, req)
			runtime.ReadMemStats(&after)
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tc.wantMsg)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(2<<20), "bytes allocated answering it")
		})
	}
}

// TestInstanceLimits: beyond its requests or bytes in flight, the handler
// answers 503 (a sender retries) before reading a body; once the requests
// in flight finish, it takes more.
func TestInstanceLimits(t *testing.T) {
	h := New(&recorder{max: 1 << 20}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).
		WithInstanceLimits(InstanceLimits{MaxInflightRequests: 1, MaxInflightBytes: 1000})
	valid := snappy.Encode(nil, body(t, "up"))

	// A request whose body is still arriving holds the only slot.
	pr, pw := io.Pipe()
	slow := httptest.NewRequest(http.MethodPost, "/api/v1/push", pr)
	slowDone := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		tenant.Middleware(false, h).ServeHTTP(rec, slow)
		slowDone <- rec.Code
	}()
	require.Eventually(t, func() bool { return h.inflight.Load() == 1 }, 5*time.Second, time.Millisecond)
	rec := serve(h, http.MethodPost, nil, valid)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "-distributor.instance-limits.max-inflight-push-requests")
	_, err := pw.Write(valid)
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	require.Equal(t, http.StatusNoContent, <-slowDone)
	require.Equal(t, http.StatusNoContent, serve(h, http.MethodPost, nil, valid).Code, "the slot is free again")

	// A body declared larger than the bytes in flight may hold.
	big := httptest.NewRequest(http.MethodPost, "/api/v1/push", bytes.NewReader(valid))
	big.ContentLength = 2000
	rec = httptest.NewRecorder()
	tenant.Middleware(false, h).ServeHTTP(rec, big)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "-distributor.instance-limits.max-inflight-push-requests-bytes")
	require.Zero(t, h.inflightBytes.Load(), "every byte held is given back")
}

// keepFirst is a Distributor that keeps the first series of a request and
// reports the others invalid, as validation does.
type keepFirst struct{ recorder }

func (k *keepFirst) Push(_ context.Context, req *rwproto.Request) error {
	if len(req.Timeseries) > 1 {
		req.Timeseries = req.Timeseries[:1]
		return rpc.Errorf(rpc.CauseBadData, "series failed validation")
	}
	return nil
}

// A 2.0 sender hears what was written on every answer, a partial write's
// included; a 1.0 sender gets no such headers.
func TestHandlerTellsV2SendersWhatWasWritten(t *testing.T) {
	h := New(&keepFirst{recorder{max: 4096}}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	v2 := map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}
	for _, tc := range []struct {
		series   []string
		wantCode int
		want     string
	}{
		{[]string{"up"}, 204, "1"},
		{[]string{"up", "node_load1", "node_load5"}, 400, "1"},
	} {
		rec := serve(h, http.MethodPost, v2, snappy.Encode(nil, bodyV2(t, tc.series...)))
		require.Equal(t, tc.wantCode, rec.Code, rec.Body.String())
		require.Equal(t, tc.want, rec.Header().Get("X-Prometheus-Remote-Write-Samples-Written"))
		require.Equal(t, "0", rec.Header().Get("X-Prometheus-Remote-Write-Histograms-Written"))
		require.Equal(t, "0", rec.Header().Get("X-Prometheus-Remote-Write-Exemplars-Written"))
	}
	rec := serve(h, http.MethodPost, nil, snappy.Encode(nil, body(t, "up")))
	require.Equal(t, 204, rec.Code)
	require.Empty(t, rec.Header().Get("X-Prometheus-Remote-Write-Samples-Written"))
}
