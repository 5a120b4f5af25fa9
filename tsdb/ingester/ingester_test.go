package ingester

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

const t0 = int64(1_700_000_000_000)

func testConfig(t testing.TB, dir string) (Config, limits.Limits) {
	var cfg Config
	var l limits.Limits
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	l.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	cfg.Dir = dir
	cfg.Retention = 1 << 62 // keep test data whatever its age
	return cfg, l
}

func startIngester(t testing.TB, cfg Config, l limits.Limits, tenantLimits map[string]yaml.Node) *Ingester {
	o, err := limits.NewOverrides(l, tenantLimits)
	require.NoError(t, err)
	ing, err := New(cfg, o, Deps{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), ing))
	return ing
}

func stop(t testing.TB, ing *Ingester) {
	require.NoError(t, services.StopAndAwaitTerminated(context.Background(), ing))
}

// request builds a decoded request the way rwproto would, from prompb.
func request(t testing.TB, wr *prompb.WriteRequest) *rwproto.Request {
	buf, err := wr.Marshal()
	require.NoError(t, err)
	var r rwproto.Request
	require.NoError(t, r.Unmarshal(buf, rwproto.Limits{}))
	return &r
}

func floatSeries(ts int64, v float64, kv ...string) prompb.TimeSeries {
	s := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: ts, Value: v}}}
	for i := 0; i < len(kv); i += 2 {
		s.Labels = append(s.Labels, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return s
}

type point struct {
	t int64
	v float64
}

// readAll returns every float sample of the tenant by series.
func readAll(t testing.TB, ing *Ingester, tenantID string) map[string][]point {
	ctx := tenant.With(context.Background(), tenantID)
	q, err := ing.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	out := map[string][]point{}
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		it = s.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], point{ts, v})
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return out
}

func TestPushAndQuery(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	for step := range int64(3) {
		require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			floatSeries(t0+step*15000, float64(step), "__name__", "up", "job", "a"),
			floatSeries(t0+step*15000, float64(10*step), "__name__", "up", "job", "b"),
		}})))
	}
	got := readAll(t, ing, "team-a")
	require.Equal(t, map[string][]point{
		`{__name__="up", job="a"}`: {{t0, 0}, {t0 + 15000, 1}, {t0 + 30000, 2}},
		`{__name__="up", job="b"}`: {{t0, 0}, {t0 + 15000, 10}, {t0 + 30000, 20}},
	}, got)
	require.Empty(t, readAll(t, ing, "team-b"), "another tenant sees nothing")
	require.InDelta(t, 6.0, testutil.ToFloat64(ing.metrics.ingestedSamples.WithLabelValues("team-a")), 0)
	require.InDelta(t, 2.0, testutil.ToFloat64(ing.metrics.activeSeries.WithLabelValues("team-a")), 0)
}

func TestKnownSeriesAllocateNothingPerSample(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	allocsPerPush := func(series int) float64 {
		wr := &prompb.WriteRequest{}
		for i := range series {
			wr.Timeseries = append(wr.Timeseries, floatSeries(t0, 1, "__name__", "up", "job", fmt.Sprintf("j%d", i), "series_count", fmt.Sprint(series)))
		}
		r := request(t, wr)
		require.NoError(t, ing.Push(ctx, r)) // creates the series
		ts := t0
		return testing.AllocsPerRun(20, func() {
			ts += 15000
			for i := range r.Timeseries {
				r.Timeseries[i].Samples[0].Timestamp = ts
			}
			require.NoError(t, ing.Push(ctx, r))
		})
	}
	one, hundred := allocsPerPush(1), allocsPerPush(100)
	if !raceEnabled {
		require.LessOrEqual(t, hundred, one+1, "a push of 100 known series allocates %v times, of 1 series %v times", hundred, one)
	}

	td, err := ing.tenant(ctx, "team-a", false)
	require.NoError(t, err)
	td.inUse.RUnlock()
	require.Equal(t, 101, td.refs.len())
}

func TestRefCacheCollisionIsHarmless(t *testing.T) {
	c := newRefCache()
	d := xxhash.New()
	a := labels.FromStrings("__name__", "up", "job", "a")
	keyA, checkA := c.hashes(a.Bytes(nil), d)
	c.put(keyA, refCacheEntry{ref: 7, lset: a, check: checkA})

	// Another series whose key collides with a's: its check hash differs,
	// so it is not mistaken for a, and it does not evict a.
	_, checkB := c.hashes(rwproto.AppendStringLabels(nil, []labels.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "b"}}), d)
	require.NotEqual(t, checkA, checkB)
	_, ok := c.get(keyA, checkB)
	require.False(t, ok)
	c.put(keyA, refCacheEntry{ref: 8, check: checkB})
	e, ok := c.get(keyA, checkA)
	require.True(t, ok)
	require.Equal(t, storage.SeriesRef(7), e.ref)

	// Seeds differ between caches, so check hashes cannot be precomputed.
	_, otherCheck := newRefCache().hashes(a.Bytes(nil), d)
	require.NotEqual(t, checkA, otherCheck)

	c.deleted(map[chunks.HeadSeriesRef]labels.Labels{7: a})
	_, ok = c.get(keyA, checkA)
	require.False(t, ok)
}

func TestStringLabelsEncodingMatchesLabels(t *testing.T) {
	long := string(make([]byte, 300))
	for _, ls := range [][]labels.Label{
		{{Name: "__name__", Value: "up"}},
		{{Name: "__name__", Value: "x"}, {Name: "long", Value: long}},
	} {
		require.Equal(t, labels.New(ls...).Bytes(nil), rwproto.AppendStringLabels(nil, ls))
	}
}

func TestRejectedSamplesKeepTheRest(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	l.MaxSeriesPerTenant = 2
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		floatSeries(t0+60000, 1, "__name__", "up", "job", "a"),
	}})))
	err := ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		floatSeries(t0, 0, "__name__", "up", "job", "a"),        // out of order
		floatSeries(t0+60000, 5, "__name__", "up", "job", "a"),  // duplicate timestamp, new value
		floatSeries(t0+120000, 2, "__name__", "up", "job", "a"), // fine
		floatSeries(t0+120000, 1, "__name__", "up", "job", "b"), // fine: second series
		floatSeries(t0+120000, 1, "__name__", "up", "job", "c"), // over the series limit
	}}))
	require.Error(t, err)
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	require.Contains(t, err.Error(), "3 samples were rejected")
	require.Contains(t, err.Error(), "the others were stored")
	require.Contains(t, err.Error(), "out-of-order")

	got := readAll(t, ing, "team-a")
	require.Equal(t, map[string][]point{
		`{__name__="up", job="a"}`: {{t0 + 60000, 1}, {t0 + 120000, 2}},
		`{__name__="up", job="b"}`: {{t0 + 120000, 1}},
	}, got)
	for reason, want := range map[string]float64{"sample_out_of_order": 1, "new_value_for_timestamp": 1, "series_limit": 1} {
		require.InDelta(t, want, testutil.ToFloat64(ing.metrics.rejectedSamples.WithLabelValues("team-a", reason)), 0, reason)
	}
}

func TestInvalidLabelsOfNewSeriesAreRejected(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	err := ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		floatSeries(t0, 1, "__name__", "up", "job", "a"),
		floatSeries(t0, 1, "__name__", "up", "job", "b", "instance", "x"), // unsorted
		floatSeries(t0, 1, "job", "c"),                                    // no metric name
	}}))
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	require.ErrorContains(t, err, "2 samples were rejected")
	require.ErrorContains(t, err, `labels are not sorted by name: "instance" comes after "job"`)
	require.Equal(t, map[string][]point{`{__name__="up", job="a"}`: {{t0, 1}}}, readAll(t, ing, "team-a"))
	require.InDelta(t, 1.0, testutil.ToFloat64(ing.metrics.rejectedSamples.WithLabelValues("team-a", "labels_not_sorted")), 0)
	require.InDelta(t, 1.0, testutil.ToFloat64(ing.metrics.rejectedSamples.WithLabelValues("team-a", "missing_metric_name")), 0)
}

func TestOutOfOrderWindowPerTenant(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	var tenants map[string]yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte("ooo: {out_of_order_time_window: 1h}"), &tenants))
	ing := startIngester(t, cfg, l, tenants)
	defer stop(t, ing)

	for tenantID, wantErr := range map[string]bool{"ooo": false, "strict": true} {
		ctx := tenant.With(context.Background(), tenantID)
		require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0, 1, "__name__", "up")}})))
		err := ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0-10*60000, 0, "__name__", "up")}}))
		require.Equal(t, wantErr, err != nil, "tenant %s: %v", tenantID, err)
	}
}

func TestRestartReplaysWAL(t *testing.T) {
	dir := t.TempDir()
	cfg, l := testConfig(t, dir)
	ing := startIngester(t, cfg, l, nil)
	ctx := tenant.With(context.Background(), "team-a")
	for i := range int64(100) {
		require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			floatSeries(t0+i*1000, float64(i), "__name__", "up", "job", "a"),
		}})))
	}
	before := readAll(t, ing, "team-a")
	stop(t, ing)

	ing = startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	require.Equal(t, before, readAll(t, ing, "team-a"))
	require.Len(t, before[`{__name__="up", job="a"}`], 100)
}

func TestIdleTenantIsFlushedClosedAndReopened(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	cfg.CloseIdleTenantAfter = time.Minute
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")
	require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0, 1, "__name__", "up")}})))

	ing.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	ing.housekeeping(context.Background())
	require.Empty(t, ing.Tenants())
	require.Zero(t, testutil.CollectAndCount(ing.metrics.ingestedSamples), "a closed tenant leaves no series in /metrics")
	require.Zero(t, testutil.CollectAndCount(ing.metrics.activeSeries))

	// A query opens it again, from its block; the head is empty.
	require.Equal(t, map[string][]point{`{__name__="up"}`: {{t0, 1}}}, readAll(t, ing, "team-a"))
	require.Equal(t, []string{"team-a"}, ing.Tenants())
	require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0+15000, 2, "__name__", "up")}})))
	require.Len(t, readAll(t, ing, "team-a")[`{__name__="up"}`], 2)
}

func TestNotReadyBeforeStart(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	o, err := limits.NewOverrides(l, nil)
	require.NoError(t, err)
	ing, err := New(cfg, o, Deps{}, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	err = ing.Push(tenant.With(context.Background(), "a"), &rwproto.Request{})
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err))
}

func TestMetadata(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")
	require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests."},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Up."},
	}})))
	md, err := ing.MetricMetadata(ctx, "", 0, 0)
	require.NoError(t, err)
	require.Len(t, md, 2)
	require.Equal(t, "counter", string(md["http_requests_total"][0].Type))
	md, err = ing.MetricMetadata(ctx, "up", 0, 0)
	require.NoError(t, err)
	require.Len(t, md, 1)
	md, err = ing.MetricMetadata(tenant.With(context.Background(), "team-b"), "", 0, 0)
	require.NoError(t, err)
	require.Empty(t, md)
}

// TestMetadataDoesNotKeepRequestMemory sends the same metadata twice from a
// buffer that is then overwritten, as the pooled request buffers are.
func TestMetadataDoesNotKeepRequestMemory(t *testing.T) {
	s := newMetadataStore()
	buf := []byte("counterhelp text")
	md := []rwproto.Metadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: string(buf[:7]), Help: unsafeString(buf[7:])}}
	s.add(md, time.Unix(1, 0), 0)
	s.add(md, time.Unix(2, 0), 0) // an existing entry: must not take the borrowed strings
	copy(buf, "XXXXXXXXXXXXXXXX")
	got := s.get("", 0, 0)
	require.Equal(t, "help text", got["counter"][0].Help)
	s.purge(time.Unix(2, 0))
	require.Len(t, s.get("", 0, 0), 1, "the refresh at 2s counts")
	s.purge(time.Unix(3, 0))
	require.Empty(t, s.get("", 0, 0))
}

// TestMetadataFamiliesPerTenantAreCapped: a tenant sending metadata of
// ever new families keeps at most its limit of them; known families are
// still refreshed and new descriptions of them kept.
func TestMetadataFamiliesPerTenantAreCapped(t *testing.T) {
	s := newMetadataStore()
	var md []rwproto.Metadata
	for i := range 10 {
		md = append(md, rwproto.Metadata{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: fmt.Sprintf("m%d", i), Help: "h"})
	}
	require.Equal(t, 6, s.add(md, time.Unix(1, 0), 4))
	require.Len(t, s.get("", 0, 0), 4)
	again := []rwproto.Metadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "m0", Help: "another help"}}
	require.Zero(t, s.add(again, time.Unix(2, 0), 4))
	require.Len(t, s.get("m0", 0, 0)["m0"], 2)
}

func unsafeString(b []byte) string { return unsafe.String(&b[0], len(b)) }

// BenchmarkPush measures appending one sample to each of many known series,
// as a remote-write stream does in steady state.
//
//	go test ./tsdb/ingester -run '^$' -bench Push -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkPush(b *testing.B) {
	for _, n := range []int{2000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			cfg, l := testConfig(b, b.TempDir())
			ing := startIngester(b, cfg, l, nil)
			defer stop(b, ing)
			ctx := tenant.With(context.Background(), "bench")
			wr := &prompb.WriteRequest{}
			for i := range n {
				wr.Timeseries = append(wr.Timeseries, floatSeries(t0, 0,
					"__name__", "libvirt_domain_interface_stats_receive_bytes_total", "az", "az1",
					"hypervisor", fmt.Sprintf("cmp-r1a-%04d.dc1.example", i/50), "instance_uuid", fmt.Sprintf("3f2b8c1e-6a4d-4e8f-9b7a-%012d", i),
					"job", "libvirt", "project_id", "4c8e2f1a9b7d4e6f8a0b1c2d3e4f5a6b", "region", "region-one", "target_device", "tap3f2b8c1e-6a"))
			}
			req := request(b, wr)
			require.NoError(b, ing.Push(ctx, req))
			ts := t0
			b.ReportAllocs()
			for b.Loop() {
				ts += 15000
				for i := range req.Timeseries {
					req.Timeseries[i].Samples[0].Timestamp = ts
				}
				if err := ing.Push(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

var _ storage.Queryable = (*Ingester)(nil)

// TestMaxTenantsPerIngester: a write that would open one tenant more than
// the limit is refused as retryable; open tenants keep writing.
func TestMaxTenantsPerIngester(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	cfg.MaxTenants = 2
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	push := func(id string) error {
		return ing.Push(tenant.With(context.Background(), id), request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0, 1, "__name__", "up")}}))
	}
	require.NoError(t, push("a"))
	require.NoError(t, push("b"))
	err := push("c")
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err))
	require.ErrorContains(t, err, "-ingester.instance-limits.max-tenants")
	require.Empty(t, readAll(t, ing, "c"))
	require.NoError(t, push("a"), "an open tenant writes on")
}

// TestMaxSeriesPerIngester: series over the ingester's limit, whatever
// their tenant, are refused as retryable while the rest of the push is
// stored; known series keep writing, and a retry of the same push stores
// nothing twice.
func TestMaxSeriesPerIngester(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	cfg.MaxSeries = 3
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	push := func(id string, ts int64, names ...string) error {
		req := &prompb.WriteRequest{}
		for _, n := range names {
			req.Timeseries = append(req.Timeseries, floatSeries(ts, 1, "__name__", n))
		}
		return ing.Push(tenant.With(context.Background(), id), request(t, req))
	}
	require.NoError(t, push("a", t0, "up", "load"))
	err := push("b", t0, "up", "load")
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err))
	require.ErrorContains(t, err, "1 samples were not stored for now (the others were)")
	require.ErrorContains(t, err, "-ingester.instance-limits.max-series")
	require.Len(t, readAll(t, ing, "b"), 1, "the series within the limit is stored")
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(push("b", t0, "up", "load")), "the retry")
	require.Len(t, readAll(t, ing, "b"), 1)
	require.NoError(t, push("a", t0+15_000, "up", "load"), "known series write on")
}

// Limits the tenant's TSDB enforces itself (out-of-order window, exemplar
// storage) follow the runtime configuration file while the tenant is open.
func TestNewLimitsApplyToOpenTenants(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	l.MaxExemplars = 0
	o, err := limits.NewOverrides(l, nil)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "runtime.yaml")
	require.NoError(t, os.WriteFile(file, []byte("overrides: {}\n"), 0o600))
	rc, err := limits.NewRuntimeConfig(limits.RuntimeConfig{File: file, ReloadPeriod: 10 * time.Millisecond}, o, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), rc))
	defer func() { require.NoError(t, services.StopAndAwaitTerminated(context.Background(), rc)) }()
	ing, err := New(cfg, o, Deps{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), ing))
	defer stop(t, ing)

	ctx := tenant.With(context.Background(), "team-a")
	push := func(ts int64, trace string) error {
		s := floatSeries(ts, 1, "__name__", "rpc_seconds")
		s.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: trace}}, Value: 1, Timestamp: ts}}
		return ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{s}}))
	}
	exemplars := func() int {
		eq, err := ing.ExemplarQuerier(ctx)
		require.NoError(t, err)
		res, err := eq.Select(math.MinInt64, math.MaxInt64, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "rpc_seconds")})
		require.NoError(t, err)
		n := 0
		for _, r := range res {
			n += len(r.Exemplars)
		}
		return n
	}
	require.NoError(t, push(t0, "t1"))
	require.Error(t, push(t0-10*60000, "t0"), "no out-of-order window yet")
	require.Zero(t, exemplars(), "no exemplar storage yet")

	applied := func(want tsdbLimits) func() bool {
		return func() bool {
			ing.mu.Lock()
			td := ing.tenants["team-a"]
			ing.mu.Unlock()
			td.limitsMu.Lock()
			defer td.limitsMu.Unlock()
			return td.applied == want
		}
	}
	require.NoError(t, os.WriteFile(file, []byte("overrides:\n  team-a: {out_of_order_time_window: 1h, max_exemplars: 10}\n"), 0o600))
	require.Eventually(t, applied(tsdbLimits{outOfOrderWindow: model.Duration(time.Hour), maxExemplars: 10}), 5*time.Second, 5*time.Millisecond)
	require.NoError(t, push(t0-10*60000, "t0"), "the new window is in force")
	require.NoError(t, push(t0+15000, "t2"))
	require.Equal(t, 2, exemplars(), "the exemplar storage has room now")

	require.NoError(t, os.WriteFile(file, []byte("overrides: {}\n"), 0o600))
	require.Eventually(t, applied(tsdbLimits{}), 5*time.Second, 5*time.Millisecond)
	require.Error(t, push(t0-5*60000, "t0"), "the window is gone again")
}

// A created timestamp forwarded with a sample (remote write 2.0) becomes a
// 0 sample at that time with -ingester.created-timestamp-zero-ingestion,
// and nothing without it.
func TestCreatedTimestampZeroIngestion(t *testing.T) {
	for _, zero := range []bool{false, true} {
		cfg, l := testConfig(t, t.TempDir())
		cfg.CreatedTimestampZero = zero
		ing := startIngester(t, cfg, l, nil)
		ctx := tenant.With(context.Background(), "team-a")
		ts := rwproto.TimeSeries{
			Labels:    []labels.Label{{Name: "__name__", Value: "requests_total"}},
			NumLabels: 1,
			Samples:   []rwproto.Sample{{Timestamp: t0, Value: 5, StartTimestamp: t0 - 30_000}},
		}
		raw, err := ts.Encode()
		require.NoError(t, err)
		require.NoError(t, ing.PushBody(ctx, rwproto.AppendSeries(nil, raw)))
		want := []point{{t0, 5}}
		if zero {
			want = []point{{t0 - 30_000, 0}, {t0, 5}}
		}
		require.Equal(t, map[string][]point{`{__name__="requests_total"}`: want}, readAll(t, ing, "team-a"), "zero ingestion %v", zero)
		stop(t, ing)
	}
}
