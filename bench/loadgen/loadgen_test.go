package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/bench/loadgen"
)

// fakeServer is a remote-write receiver that decodes every request with
// prompb, checks it and counts the samples of the requests it accepts.
type fakeServer struct {
	tenant     string
	failEvery  int // fail every failEvery-th series request (0: never)
	failStatus int

	mu         sync.Mutex
	requests   int
	samples    int64
	failed     map[string]int64
	metadata   int
	lastTs     map[string]int64
	violations []string
}

func newFakeServer(tenant string, failEvery, failStatus int) *fakeServer {
	return &fakeServer{
		tenant: tenant, failEvery: failEvery, failStatus: failStatus,
		failed: make(map[string]int64), lastTs: make(map[string]int64),
	}
}

func (s *fakeServer) violation(format string, args ...any) {
	if len(s.violations) < 10 {
		s.violations = append(s.violations, fmt.Sprintf(format, args...))
	}
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixMilli()
	compressed, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, want := range map[string]string{
		"Content-Encoding":                  "snappy",
		"Content-Type":                      "application/x-protobuf",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
		"X-Scope-OrgID":                     s.tenant,
	} {
		if got := r.Header.Get(h); got != want {
			s.violation("header %s = %q, want %q", h, got, want)
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/push" {
		s.violation("%s %s", r.Method, r.URL.Path)
	}
	raw, err := snappy.Decode(nil, compressed)
	if err != nil {
		s.violation("snappy: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		s.violation("unmarshal: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Timeseries) == 0 {
		s.metadata++
		if len(req.Metadata) == 0 {
			s.violation("empty request")
		}
		return
	}
	s.requests++
	if s.failEvery > 0 && s.requests%s.failEvery == 0 {
		s.failed[strconv.Itoa(s.failStatus)]++
		http.Error(w, "injected failure", s.failStatus)
		return
	}
	var key strings.Builder
	for _, ts := range req.Timeseries {
		key.Reset()
		for _, l := range ts.Labels {
			key.WriteString(l.Name + "=" + l.Value + ",")
		}
		for _, smp := range ts.Samples {
			if smp.Timestamp > now {
				s.violation("sample %d ms in the future", smp.Timestamp-now)
			}
			if last, ok := s.lastTs[key.String()]; ok && smp.Timestamp <= last {
				s.violation("series %s: timestamp %d after %d", key.String(), smp.Timestamp, last)
			}
			s.lastTs[key.String()] = smp.Timestamp
			s.samples++
		}
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		cfg        loadgen.Config
		failEvery  int
		failStatus int
		wantRate   float64 // expected steady samples/s, 0: unchecked
	}{
		{
			name: "all accepted",
			cfg: loadgen.Config{Series: 5000, Batch: 500, Concurrency: 4, Duration: time.Second,
				WarmupRounds: 1, Metadata: true, PID: os.Getpid(), Tenant: "team-a"},
		},
		{
			name:      "some rejected with 400",
			cfg:       loadgen.Config{Series: 3000, Batch: 250, Concurrency: 3, Duration: time.Second, WarmupRounds: 2},
			failEvery: 5, failStatus: http.StatusBadRequest,
		},
		{
			name: "server errors at a limited rate",
			cfg: loadgen.Config{Series: 2000, Batch: 200, Concurrency: 2, Duration: 1500 * time.Millisecond,
				WarmupRounds: 1, SamplesPerSecond: 20000, Interval: time.Second},
			failEvery: 3, failStatus: http.StatusInternalServerError,
			wantRate: 20000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(tt.cfg.Tenant, tt.failEvery, tt.failStatus)
			ts := httptest.NewServer(srv)
			defer ts.Close()

			var progress bytes.Buffer
			cfg := tt.cfg
			cfg.URL = ts.URL + "/api/v1/push"
			cfg.Progress = &progress
			cfg.ProgressInterval = 300 * time.Millisecond
			start := time.Now()
			res, err := loadgen.Run(context.Background(), cfg)
			require.NoError(t, err)
			elapsed := time.Since(start)

			srv.mu.Lock()
			defer srv.mu.Unlock()
			require.Empty(t, srv.violations)
			require.Equal(t, srv.samples, res.TotalSamplesAccepted, "server decoded != loadgen accepted")
			require.Positive(t, res.TotalSamplesAccepted)
			require.Equal(t, cfg.Series, res.Series)
			require.Less(t, elapsed, time.Duration((res.Warmup.Seconds+cfg.Duration.Seconds()+2)*float64(time.Second)))
			require.NotEmpty(t, progress.String())

			// The warmup writes every series WarmupRounds times.
			require.True(t, res.Warmup.Completed)
			require.Equal(t, int64(cfg.WarmupRounds*cfg.Series), res.Warmup.SamplesAccepted+res.Warmup.SamplesFailed)
			require.InDelta(t, float64(cfg.WarmupRounds), res.Warmup.Rounds, 1e-9)
			require.Positive(t, res.Steady.Requests)
			require.Positive(t, res.Steady.Latency.P50Millis)
			require.LessOrEqual(t, res.Steady.Latency.P50Millis, res.Steady.Latency.P99Millis)
			require.LessOrEqual(t, res.Steady.Latency.P99Millis, res.Steady.Latency.MaxMillis)
			require.LessOrEqual(t, res.FirstTimestamp, res.LastTimestamp)
			require.LessOrEqual(t, res.LastTimestamp, time.Now().UnixMilli())

			// Errors are counted by status, both as requests and samples.
			gotErrors := make(map[string]int64)
			for _, ph := range []loadgen.PhaseResult{res.Warmup, res.Steady} {
				for k, v := range ph.Errors {
					gotErrors[k] += v
					require.Contains(t, ph.ErrorExamples[k], "injected failure")
				}
				require.Equal(t, ph.FailedRequests*int64(cfg.Batch), ph.SamplesFailed)
			}
			require.Equal(t, srv.failed, gotErrors)
			require.Equal(t, res.Warmup.FailedRequests+res.Steady.FailedRequests, sum(srv.failed))

			if cfg.Metadata {
				require.Equal(t, 1, srv.metadata)
				require.Equal(t, "ok", res.Metadata.Status)
				require.Positive(t, res.Metadata.Families)
			}
			if cfg.PID > 0 {
				require.NotNil(t, res.Server)
				require.Equal(t, cfg.PID, res.Server.PID)
				require.Positive(t, res.Server.RSSBytesEnd)
				require.Positive(t, res.Server.SteadyCPUSeconds+res.Server.WarmupCPUSeconds)
			} else {
				require.Nil(t, res.Server)
			}
			if tt.wantRate > 0 {
				sent := float64(res.Steady.SamplesAccepted + res.Steady.SamplesFailed)
				require.InEpsilon(t, tt.wantRate, sent/res.Steady.Seconds, 0.3)
			}

			var summary bytes.Buffer
			require.NoError(t, res.WriteSummary(&summary))
			require.Contains(t, summary.String(), "samples accepted")
			data, err := json.Marshal(res)
			require.NoError(t, err)
			var back loadgen.Result
			require.NoError(t, json.Unmarshal(data, &back))
			require.Equal(t, res, back)
			t.Logf("progress:\n%s\nsummary:\n%s", progress.String(), summary.String())
		})
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func TestRunCanceled(t *testing.T) {
	srv := newFakeServer("", 0, 0)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := loadgen.Run(ctx, loadgen.Config{
		URL: ts.URL + "/api/v1/push", Series: 1000, Batch: 100, Duration: time.Hour, WarmupRounds: 1,
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Positive(t, res.TotalSamplesAccepted)
}

func TestRunInvalidConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     loadgen.Config
		wantErr string
	}{
		{name: "no url", cfg: loadgen.Config{Series: 10}, wantErr: "url"},
		{name: "bad scheme", cfg: loadgen.Config{URL: "ftp://127.0.0.1/x", Series: 10}, wantErr: "url"},
		{name: "no series", cfg: loadgen.Config{URL: "http://127.0.0.1:1/x"}, wantErr: "series"},
		{name: "negative batch", cfg: loadgen.Config{URL: "http://127.0.0.1:1/x", Series: 10, Batch: -1}, wantErr: "batch"},
		{name: "negative rate", cfg: loadgen.Config{URL: "http://127.0.0.1:1/x", Series: 10, SamplesPerSecond: -1}, wantErr: "samples per second"},
		{name: "missing pid", cfg: loadgen.Config{URL: "http://127.0.0.1:1/x", Series: 10, PID: 1 << 30}, wantErr: "measure server pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadgen.Run(context.Background(), tt.cfg)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestRunNetworkErrors(t *testing.T) {
	// A closed server: every request fails with a network error.
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL + "/api/v1/push"
	ts.Close()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: url, Series: 100, Batch: 50, Duration: 200 * time.Millisecond, WarmupRounds: 1,
	})
	require.NoError(t, err)
	require.Zero(t, res.TotalSamplesAccepted)
	require.Equal(t, int64(2), res.Warmup.Errors["network"])
	require.Equal(t, int64(100), res.Warmup.SamplesFailed)
}
