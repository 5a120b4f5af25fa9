package frontend

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/testutil/memcachedtest"
	"github.com/isobar-tsdb/isobar/querier/api"
)

type noLimits struct{}

func (noLimits) For(string) *limits.Limits { return &limits.Limits{} }

type fixedLimits limits.Limits

func (f fixedLimits) For(string) *limits.Limits { l := limits.Limits(f); return &l }

// countingTransport counts the requests that reach the querier.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// querierAndFrontend serves a querier's API over data, and a frontend
// configured by cfg in front of it.
func querierAndFrontend(t testing.TB, data string, cfg Config) (querier, frontend http.Handler, calls *countingTransport, f *Frontend) {
	t.Helper()
	st := promqltest.LoadedStorage(t, data)
	t.Cleanup(func() { _ = st.Close() })
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true})
	qmux := http.NewServeMux()
	api.New(eng, filteredShards{st}, nil, nil, api.BuildInfo{}, nil).Register(qmux, "/api/v1")
	querier = tenant.Middleware(true, qmux)

	calls = &countingTransport{next: HandlerTransport(querier)}
	f, err := New(cfg, calls, noLimits{}, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(f.close)
	fmux := http.NewServeMux()
	f.Register(fmux, "/api/v1")
	return querier, tenant.Middleware(true, fmux), calls, f
}

func get(t testing.TB, h http.Handler, path string, params url.Values) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path+"?"+params.Encode(), nil)
	req.Header.Set(tenant.HeaderName, "team-a")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func testConfig() Config {
	return Config{SplitInterval: time.Hour, CacheResults: true, ResultsCacheBackend: CacheInMemory, ResultsCacheBytes: 64 << 20, MaxCacheFreshness: 10 * time.Minute, MaxOutstandingPerTenant: 100, Parallelism: 4, MaxRetries: 2}
}

// Eight hours of a fleet's counters, gauges and native histograms.
const fleetData = `
load 1m
  node_cpu_seconds_total{instance="cmp-1",mode="idle"} 0+60x480
  node_cpu_seconds_total{instance="cmp-1",mode="user"} 0+3x200 _x20 600+7x260
  node_cpu_seconds_total{instance="cmp-2",mode="idle"} 0+55x480
  node_cpu_seconds_total{instance="cmp-2",mode="user"} 0+9x480
  ovs_port_drops_total{bridge="br-int",port="tap1"} 0+1x100 0+2x380
  ovs_port_drops_total{bridge="br-int",port="tap2"} 0+0x480
  gpu_temp_celsius{gpu="0"} 60+0.1x480
  lb_request_seconds_bucket{le="0.1"} 0+10x480
  lb_request_seconds_bucket{le="1"} 0+15x480
  lb_request_seconds_bucket{le="+Inf"} 0+16x480
  lb_latency{backend="a"} {{schema:1 sum:5 count:4 buckets:[1 2 1]}}+{{schema:1 sum:2 count:3 buckets:[1 1 1]}}x480
`

// Through the frontend, split by hour, cold, warm and partly cached, every
// range query answers byte for byte what the querier answers alone.
func TestFrontendAnswersWhatTheQuerierAnswers(t *testing.T) {
	querier, frontend, calls, f := querierAndFrontend(t, fleetData, testConfig())
	f.now = func() time.Time { return time.Unix(1e9, 0) } // everything is old enough to cache

	queries := []string{
		`rate(node_cpu_seconds_total[5m])`,
		`sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))`,
		`topk(2, rate(node_cpu_seconds_total[5m]))`,
		`histogram_quantile(0.9, sum by (le) (rate(lb_request_seconds_bucket[5m])))`,
		`histogram_quantile(0.9, rate(lb_latency[5m]))`,
		`rate(lb_latency[5m])`,
		`count_values("value", gpu_temp_celsius)`,
		`max_over_time(rate(ovs_port_drops_total[5m])[30m:1m])`,
		`increase(ovs_port_drops_total[10m]) > 5`,
		`gpu_temp_celsius @ 3600`,
		`time()`,
		`absent(nothing)`,
	}
	ranges := []struct {
		name              string
		start, end, step  string
		wantSplitRequests bool
	}{
		{"aligned, one step a minute", "0", "28800", "60", true},
		{"unaligned start, odd step", "1234.5", "27000", "419", true},
		{"inside one hour", "7300", "9000", "15", false},
		{"one point", "3600", "3600", "60", false},
	}
	for _, q := range queries {
		for _, r := range ranges {
			t.Run(q+"/"+r.name, func(t *testing.T) {
				params := url.Values{"query": {q}, "start": {r.start}, "end": {r.end}, "step": {r.step}}
				code, want := get(t, querier, "/api/v1/query_range", params)
				require.Equal(t, http.StatusOK, code, want)
				before := calls.n.Load()
				code, cold := get(t, frontend, "/api/v1/query_range", params)
				require.Equal(t, http.StatusOK, code, cold)
				require.Equal(t, want, cold, "cold cache")
				if r.wantSplitRequests {
					require.Greater(t, calls.n.Load()-before, int64(1), "split into several requests")
				}
				before = calls.n.Load()
				code, warm := get(t, frontend, "/api/v1/query_range", params)
				require.Equal(t, http.StatusOK, code)
				require.Equal(t, want, warm, "warm cache")
				require.Equal(t, before, calls.n.Load(), "a warm cache asks the querier nothing")
			})
		}
	}

	// A range that overlaps the cached ones only partly: the querier is
	// asked for the missing part only, and the answer is whole.
	params := url.Values{"query": {queries[0]}, "start": {"-3600"}, "end": {"30000"}, "step": {"60"}}
	_, want := get(t, querier, "/api/v1/query_range", params)
	before := calls.n.Load()
	_, got := get(t, frontend, "/api/v1/query_range", params)
	require.Equal(t, want, got)
	require.Equal(t, int64(2), calls.n.Load()-before, "only the hour before and the part after the cached range")
}

// Errors in parameters and queries come from the querier, as it words
// them; the frontend passes other endpoints through.
func TestFrontendPassesOnWhatItDoesNotSplit(t *testing.T) {
	querier, frontend, _, _ := querierAndFrontend(t, fleetData, testConfig())
	for _, tc := range []struct {
		path   string
		params url.Values
	}{
		{"/api/v1/query_range", url.Values{"query": {"rate("}, "start": {"0"}, "end": {"3600"}, "step": {"60"}}},
		{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"x"}, "end": {"3600"}, "step": {"60"}}},
		{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"3600"}, "end": {"0"}, "step": {"60"}}},
		{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"3600"}, "step": {"0"}}},
		{"/api/v1/query_range", url.Values{"query": {"gpu_temp_celsius @ start()"}, "start": {"0"}, "end": {"7200"}, "step": {"60"}}},
		{"/api/v1/query", url.Values{"query": {"sum(gpu_temp_celsius)"}, "time": {"600"}}},
		{"/api/v1/series", url.Values{"match[]": {"node_cpu_seconds_total"}}},
		{"/api/v1/labels", nil},
		{"/api/v1/label/instance/values", nil},
	} {
		t.Run(tc.path+"?"+tc.params.Encode(), func(t *testing.T) {
			wantCode, want := get(t, querier, tc.path, tc.params)
			gotCode, got := get(t, frontend, tc.path, tc.params)
			require.Equal(t, wantCode, gotCode)
			require.Equal(t, want, got)
		})
	}
}

// Nothing newer than the freshness cut-off is cached: samples may still
// arrive for it.
func TestFrontendDoesNotCacheFreshResults(t *testing.T) {
	_, frontend, calls, f := querierAndFrontend(t, fleetData, testConfig())
	f.now = func() time.Time { return time.Unix(7200+300, 0) } // 5m after the range's end: inside the 10m freshness
	params := url.Values{"query": {"gpu_temp_celsius"}, "start": {"3600"}, "end": {"7200"}, "step": {"60"}}
	_, first := get(t, frontend, "/api/v1/query_range", params)
	before := calls.n.Load()
	_, second := get(t, frontend, "/api/v1/query_range", params)
	require.Equal(t, first, second)
	// The hour splits the range in two pieces: [3600, 7140] is cached up to
	// 6900 (10m before now) and asked again after it; [7200] is all fresh.
	require.Equal(t, int64(2), calls.n.Load()-before, "the fresh ends are asked again, the rest comes from the cache")
}

func TestSplitRange(t *testing.T) {
	const h = int64(time.Hour / time.Millisecond)
	for _, tc := range []struct {
		start, end, step int64
		want             []piece
	}{
		{0, 2 * h, 60_000, []piece{{0, h - 60_000, 0}, {h, 2*h - 60_000, 1}, {2 * h, 2 * h, 2}}},
		{30_000, 30_000 + 9*7*60_000, 7 * 60_000, []piece{{30_000, 30_000 + 8*7*60_000, 0}, {30_000 + 9*7*60_000, 30_000 + 9*7*60_000, 1}}},
		{-h / 2, h / 2, 15 * 60_000, []piece{{-h / 2, -15 * 60_000, -1}, {0, h / 2, 0}}},
		{5, 5, 1000, []piece{{5, 5, 0}}},
	} {
		t.Run(fmt.Sprint(tc.start, tc.end, tc.step), func(t *testing.T) {
			got := splitRange(tc.start, tc.end, tc.step, h)
			require.Equal(t, tc.want, got)
			for _, p := range got {
				require.Zero(t, (p.start-tc.start)%tc.step, "pieces start at evaluation times")
				require.Equal(t, floorDiv(p.start, h), floorDiv(p.end, h), "a piece stays inside one interval")
			}
		})
	}
}

// A tenant with many requests waiting does not hold back another tenant's
// request by more than one request per worker.
func TestQueueTakesTenantsInTurn(t *testing.T) {
	release := make(chan struct{})
	var order []string
	var mu = make(chan struct{}, 1)
	slow := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-release
		mu <- struct{}{}
		order = append(order, r.Header.Get(tenant.HeaderName))
		<-mu
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(""))}, nil
	})
	q := newQueue(slow, 1, 1000, 0, nil)
	defer q.close()
	send := func(id string) chan struct{} {
		done := make(chan struct{})
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(tenant.HeaderName, id)
		go func() {
			_, _ = q.roundTrip(req.Context(), id, req)
			close(done)
		}()
		return done
	}
	var busy []chan struct{}
	for range 20 {
		busy = append(busy, send("busy"))
	}
	waitQueued(t, q, "busy", 19) // the worker holds the first
	quiet := send("quiet")
	waitQueued(t, q, "quiet", 1)
	for range 3 {
		release <- struct{}{}
	}
	<-quiet
	require.Contains(t, order[:3], "quiet", "the quiet tenant's request ran among the first three: %v", order)
	close(release)
	for _, b := range busy {
		<-b
	}
}

// waitQueued waits, boundedly, until n requests of tenant id wait in q.
func waitQueued(t *testing.T, q *queue, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		got := len(q.tenants[id])
		q.mu.Unlock()
		if got == n {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d requests of %s queued, want %d", got, id, n)
		time.Sleep(time.Millisecond)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A querier answering 5xx is asked again; a 4xx is passed on at once; a
// tenant over its outstanding requests gets 429.
func TestQueueRetriesAndLimits(t *testing.T) {
	var n atomic.Int64
	flaky := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		code := http.StatusOK
		switch {
		case r.URL.Path == "/bad":
			code = http.StatusUnprocessableEntity
		case n.Add(1) <= 2:
			code = http.StatusInternalServerError
		}
		return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("x"))}, nil
	})
	q := newQueue(flaky, 2, 1, 3, nil)
	defer q.close()
	req, _ := http.NewRequest(http.MethodGet, "/ok", nil)
	resp, err := q.roundTrip(req.Context(), "a", req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, int64(3), n.Load(), "two 5xx answers, then success")

	bad, _ := http.NewRequest(http.MethodGet, "/bad", nil)
	resp, err = q.roundTrip(bad.Context(), "a", bad)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
}

// A tenant with as many requests waiting as it may have is refused more,
// while another tenant's are taken.
func TestQueueRefusesATenantOverItsOutstandingRequests(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 10)
	blocked := roundTripFunc(func(*http.Request) (*http.Response, error) {
		started <- struct{}{}
		<-release
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(""))}, nil
	})
	q := newQueue(blocked, 1, 1, 0, nil)
	defer q.close()
	defer close(release)
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	go func() { _, _ = q.roundTrip(req.Context(), "a", req) }() // taken by the worker
	<-started
	go func() { _, _ = q.roundTrip(req.Context(), "a", req) }() // waits
	waitQueued(t, q, "a", 1)
	_, err := q.roundTrip(req.Context(), "a", req)
	require.ErrorIs(t, err, errTooManyOutstanding)
	require.Contains(t, err.Error(), "-query-frontend.max-outstanding-requests-per-tenant")
}

// The query length limit holds for the whole range, though each piece of
// a split query is shorter.
func TestFrontendEnforcesTheQueryLengthLimit(t *testing.T) {
	_, frontend, calls, f := querierAndFrontend(t, fleetData, testConfig())
	f.limits = fixedLimits(limits.Limits{MaxQueryLength: model.Duration(2 * time.Hour)})
	code, body := get(t, frontend, "/api/v1/query_range", url.Values{"query": {"gpu_temp_celsius"}, "start": {"0"}, "end": {"7201"}, "step": {"60"}})
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "-querier.max-query-length")
	require.Zero(t, calls.n.Load())
	code, body = get(t, frontend, "/api/v1/query_range", url.Values{"query": {"gpu_temp_celsius"}, "start": {"0"}, "end": {"7200"}, "step": {"60"}})
	require.Equal(t, http.StatusOK, code, body)
}

// With the results cache in memcached, another frontend (or this one after
// a restart) answers from what the first stored, asking the querier
// nothing; a value stored under another key is a miss, not its answer.
func TestFrontendResultsCacheInMemcached(t *testing.T) {
	srv := memcachedtest.Start(t)
	cfg := testConfig()
	cfg.ResultsCacheBackend = CacheMemcached
	cfg.ResultsCacheMemcached.RegisterFlagsWithPrefix(flag.NewFlagSet("", flag.PanicOnError), memcachedFlagPrefix, "", "", "")
	cfg.ResultsCacheMemcached.Addresses = []string{srv.Addr}
	cfg.ResultsCacheMemcached.Timeout = 5 * time.Second // a busy test machine
	require.NoError(t, cfg.Validate())

	querier, first, _, f1 := querierAndFrontend(t, fleetData, cfg)
	f1.now = func() time.Time { return time.Unix(1e9, 0) }
	params := url.Values{"query": {`sum by (instance) (rate(node_cpu_seconds_total[5m]))`}, "start": {"0"}, "end": {"28800"}, "step": {"60"}}
	_, want := get(t, querier, "/api/v1/query_range", params)
	_, got := get(t, first, "/api/v1/query_range", params)
	require.Equal(t, want, got)

	_, second, calls, f2 := querierAndFrontend(t, fleetData, cfg)
	f2.now = f1.now
	require.Eventually(t, func() bool {
		before := calls.n.Load()
		_, got := get(t, second, "/api/v1/query_range", params)
		return got == want && calls.n.Load() == before
	}, 10*time.Second, 50*time.Millisecond, "the second frontend answers from memcached alone")

	// A value of another key under this key's hash: a miss.
	key := cacheKey("team-a", &rangeQuery{query: params.Get("query"), step: 60_000, other: url.Values{}}, piece{interval: 0})
	exts, err := decodeExtents(key, encodeExtents("another key", nil))
	require.Error(t, err)
	require.Nil(t, exts)
	_, err = decodeExtents(key, []byte("garbage"))
	require.Error(t, err)
}

func TestSplittable(t *testing.T) {
	for _, tc := range []struct {
		query string
		other url.Values
		want  bool
	}{
		{query: `sum(rate(x[5m]))`, want: true},
		{query: `rate(x[step()*4])`, want: true},
		{query: `x @ start()`},
		{query: `x @ end ( )`},
		{query: "rate(x[range()])"},
		{query: "max_over_time(x[\trange (\n)])"},
		{query: `sum(x)`, other: url.Values{"stats": {"all"}}},
	} {
		other := tc.other
		if other == nil {
			other = url.Values{}
		}
		require.Equal(t, tc.want, splittable(&rangeQuery{query: tc.query, other: other}), tc.query)
	}
}
