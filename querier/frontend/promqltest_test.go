package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/stats"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/shard"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/querier/api"
)

// TestPromQLBuiltinSuiteSharded runs Prometheus' own PromQL test files
// through the frontend. Every query that has shardable parts is answered
// sharded, 16 shards a leg: a querier's API over the test's storage
// evaluates the legs, each selecting its shard's series, and the frontend
// evaluates the outer query over their answers. The answers checked are
// the sharded ones. The annotations checked are the unsharded query's: the
// legs' annotations name positions in the legs' text, not in the query's.
//
// Every range query, sharded or not, is also answered split by
// splitInterval, with a cold and then a warm results cache: each must
// equal the answer of the whole range, to the byte, and the warm one must
// come from the cache alone.
//
// A few queries cannot pass sharded; they run unsharded, and why is below.
func TestPromQLBuiltinSuiteSharded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short (the race run) leaves out the whole suite; make unit runs it")
	}
	inner := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	e := &shardingEngine{inner: inner, shards: 16}
	promqltest.RunBuiltinTests(t, e)
	t.Logf("%d queries of the suite answered sharded, %d not shardable; %d range queries answered split and cached", e.shardedQueries.Load(), e.unshardable.Load(), e.splitQueries.Load())
	require.Greater(t, e.shardedQueries.Load(), int64(500))
	require.Greater(t, e.splitQueries.Load(), int64(500))
}

// splitInterval cuts the suite's range queries, most of which span
// minutes, into several pieces.
const splitInterval = 2 * time.Minute

// notShardable are the beginnings of the suite's queries whose answers
// sharding changes (the suite also runs them @ other times).
var notShardable = map[string]string{
	// Each shard's compensated (Kahan) sum is rounded to one float
	// before the shards' sums are added: 1e100 + 1 - 1e100 loses the 1.
	`sum(data{test="ten"}`: "compensated summation across shards",
	`avg(data{test="ten"}`: "compensated summation across shards",
	// avg keeps an incremental mean where the sum would overflow; the
	// shards' sums overflow to Inf.
	`avg(data{test="big"}`:          "avg near the float64 limit",
	`avg(data{test="-big"}`:         "avg near the float64 limit",
	`avg(histogram_avg_incremental`: "avg near the float64 limit",
}

// shardingEngine answers queries with shardable parts through a frontend,
// and others with inner; it answers every range query through a splitting
// and caching frontend too, and compares.
type shardingEngine struct {
	inner                                     *promql.Engine
	shards                                    int
	shardedQueries, unshardable, splitQueries atomic.Int64
}

func (e *shardingEngine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	unsharded, err := e.inner.NewInstantQuery(ctx, q, opts, qs, ts)
	if err != nil {
		return nil, err
	}
	return e.throughFrontend(unsharded, q, qs, ts, ts, 0), nil
}

func (e *shardingEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	unsharded, err := e.inner.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err != nil {
		return nil, err
	}
	return e.throughFrontend(unsharded, q, qs, start, end, interval), nil
}

func (e *shardingEngine) throughFrontend(unsharded promql.Query, q storage.Queryable, qs string, start, end time.Time, step time.Duration) promql.Query {
	p := parser.NewParser(promqltest.TestParserOpts)
	expr, err := p.ParseExpr(qs)
	if err != nil {
		return unsharded
	}
	for prefix := range notShardable {
		if strings.HasPrefix(qs, prefix) {
			return unsharded
		}
	}
	path := "/api/v1/query_range"
	if step == 0 {
		path = "/api/v1/query"
	}
	rq := &rangeQuery{path: path, query: qs, start: start.UnixMilli(), end: end.UnixMilli(), step: step.Milliseconds(), other: url.Values{}}
	rq.plan = planShards(p, expr, e.shards)
	if rq.plan == nil {
		e.unshardable.Add(1)
		if step == 0 || !splittable(rq) {
			return unsharded
		}
	} else {
		e.shardedQueries.Add(1)
	}
	return &shardedQuery{Query: unsharded, e: e, storage: q, rq: rq}
}

type shardedQuery struct {
	promql.Query // the unsharded query: its statement, stats, annotations
	e            *shardingEngine
	storage      storage.Queryable
	rq           *rangeQuery
}

func (q *shardedQuery) Exec(ctx context.Context) *promql.Result {
	res := q.Query.Exec(ctx)
	if res.Err != nil {
		return res
	}
	if q.rq.plan != nil {
		value, err := q.sharded(ctx)
		if err != nil {
			return &promql.Result{Err: err}
		}
		res = &promql.Result{Value: value, Warnings: res.Warnings}
	}
	if q.rq.step > 0 && splittable(q.rq) {
		q.e.splitQueries.Add(1)
		if err := q.splitAndCached(ctx); err != nil {
			return &promql.Result{Err: err}
		}
	}
	return res
}

// frontend is a frontend over a querier's API on the test's storage, with
// the suite's engine options (delayed name removal) for outer queries.
func (q *shardedQuery) frontend(cfg Config) (*Frontend, error) {
	qmux := http.NewServeMux()
	api.New(q.e.inner, filteredShards{q.storage}, nil, nil, api.BuildInfo{}, nil).Register(qmux, "/api/v1")
	cfg.Parser = promqltest.TestParserOpts
	cfg.MaxShardedQueries = 1 << 20
	f, err := New(cfg, HandlerTransport(tenant.Middleware(true, qmux)), fixedLimits(limits.Limits{QueryShardingTotalShards: q.e.shards}), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return nil, err
	}
	f.engine = q.e.inner
	return f, nil
}

// sharded answers the query sharded, over its whole range at once.
func (q *shardedQuery) sharded(ctx context.Context) (parser.Value, error) {
	f, err := q.frontend(testConfig())
	if err != nil {
		return nil, err
	}
	defer f.close()
	var value parser.Value
	er, err := f.evalShardedValue(ctx, "team-a", q.rq, q.rq.start, q.rq.end, &queryStats{slots: make(chan struct{}, 4)},
		func(v parser.Value, _, _ []string) error {
			value = cloneValue(v)
			return nil
		})
	switch {
	case err != nil:
		return nil, fmt.Errorf("sharded %s: %w", q.rq.plan.outer, err)
	case er != nil:
		return nil, fmt.Errorf("sharded %s: querier answered %d: %s", q.rq.plan.outer, er.code, er.body)
	}
	return value, nil
}

// splitAndCached answers the range query through a frontend that neither
// splits nor caches, and through one that splits by splitInterval and
// caches, twice: the three answers' data must be the same bytes, and the
// second split answer must come from the cache alone.
func (q *shardedQuery) splitAndCached(ctx context.Context) error {
	run := func(f *Frontend) (string, *queryStats, error) {
		rq := *q.rq
		st := &queryStats{slots: make(chan struct{}, 4)}
		m, er, err := f.runRange(ctx, "team-a", &rq, st)
		switch {
		case err != nil:
			return "", nil, err
		case er != nil:
			return "", nil, fmt.Errorf("querier answered %d: %s", er.code, er.body)
		}
		var resp apiResponse
		if err := json.Unmarshal(m.encode(), &resp); err != nil {
			return "", nil, err
		}
		return string(resp.Data), st, nil
	}
	cfg := testConfig()
	cfg.SplitInterval, cfg.CacheResults = 0, false
	whole, err := q.frontend(cfg)
	if err != nil {
		return err
	}
	defer whole.close()
	want, _, err := run(whole)
	if err != nil {
		return fmt.Errorf("%s through a frontend: %w", q.rq.query, err)
	}
	cfg = testConfig()
	cfg.SplitInterval = splitInterval
	split, err := q.frontend(cfg)
	if err != nil {
		return err
	}
	defer split.close()
	for _, pass := range []string{"cold", "warm"} {
		got, st, err := run(split)
		if err != nil {
			return fmt.Errorf("%s split by %s, %s cache: %w", q.rq.query, splitInterval, pass, err)
		}
		if got != want {
			return fmt.Errorf("%s split by %s, %s cache:\nwant %.2000s\ngot  %.2000s", q.rq.query, splitInterval, pass, want, got)
		}
		if asked := st.requests.Load() + st.shardRequests.Load(); pass == "warm" && asked > 0 {
			return fmt.Errorf("%s split by %s: a warm cache asked the querier %d times", q.rq.query, splitInterval, asked)
		}
	}
	return nil
}

func (q *shardedQuery) Stats() *stats.Statistics { return q.Query.Stats() }

// cloneValue copies v out of the engine's pooled memory.
func cloneValue(v parser.Value) parser.Value {
	switch v := v.(type) {
	case promql.Matrix:
		out := make(promql.Matrix, len(v))
		for i, s := range v {
			out[i] = promql.Series{Metric: s.Metric, Floats: slices.Clone(s.Floats), Histograms: slices.Clone(s.Histograms), DropName: s.DropName}
		}
		return out
	case promql.Vector:
		return slices.Clone(v)
	}
	return v
}

// filteredShards selects a shard's series by their labels' stable hash, as
// the stores do (ingester heads and blocks by SelectHints, which the
// end-to-end tests go through), over a storage opened without sharding.
type filteredShards struct{ storage.Queryable }

func (s filteredShards) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := s.Queryable.Querier(mint, maxt)
	return filteredQuerier{q}, err
}

type filteredQuerier struct{ storage.Querier }

func (q filteredQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	ms, sh, err := shard.FromMatchers(ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	set := q.Querier.Select(ctx, sortSeries, hints, ms...)
	if sh.Count == 0 {
		return set
	}
	return &shardFilter{SeriesSet: set, shard: sh}
}

type shardFilter struct {
	storage.SeriesSet
	shard shard.Shard
}

func (f *shardFilter) Next() bool {
	for f.SeriesSet.Next() {
		if labels.StableHash(f.At().Labels())%f.shard.Count == f.shard.Index {
			return true
		}
	}
	return false
}
