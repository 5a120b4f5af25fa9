package frontend

import (
	"context"
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
// with every query that has shardable parts answered sharded, 16 shards a
// leg: a querier's API over the test's storage evaluates the legs, each
// selecting its shard's series, and the frontend evaluates the outer query
// over their answers. The answers checked are the sharded ones. The
// annotations checked are the unsharded query's: the legs' annotations
// name positions in the legs' text, not in the query's.
//
// A few queries cannot pass sharded; they run unsharded, and why is below.
func TestPromQLBuiltinSuiteSharded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short (the race run) leaves out the whole suite; make unit runs it")
	}
	inner := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	e := &shardingEngine{inner: inner, shards: 16}
	promqltest.RunBuiltinTests(t, e)
	t.Logf("%d queries of the suite answered sharded, %d not shardable", e.shardedQueries.Load(), e.unshardable.Load())
	require.Greater(t, e.shardedQueries.Load(), int64(500))
}

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
// and others with inner.
type shardingEngine struct {
	inner                       *promql.Engine
	shards                      int
	shardedQueries, unshardable atomic.Int64
}

func (e *shardingEngine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	unsharded, err := e.inner.NewInstantQuery(ctx, q, opts, qs, ts)
	if err != nil {
		return nil, err
	}
	return e.sharded(unsharded, q, qs, ts, ts, 0), nil
}

func (e *shardingEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	unsharded, err := e.inner.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err != nil {
		return nil, err
	}
	return e.sharded(unsharded, q, qs, start, end, interval), nil
}

func (e *shardingEngine) sharded(unsharded promql.Query, q storage.Queryable, qs string, start, end time.Time, step time.Duration) promql.Query {
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
	plan := planShards(p, expr, e.shards)
	if plan == nil {
		e.unshardable.Add(1)
		return unsharded
	}
	e.shardedQueries.Add(1)
	path := "/api/v1/query_range"
	if step == 0 {
		path = "/api/v1/query"
	}
	return &shardedQuery{Query: unsharded, e: e, storage: q, rq: &rangeQuery{
		path: path, query: qs, start: start.UnixMilli(), end: end.UnixMilli(), step: step.Milliseconds(), other: url.Values{}, plan: plan,
	}}
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
	qmux := http.NewServeMux()
	api.New(q.e.inner, filteredShards{q.storage}, nil, nil, api.BuildInfo{}, nil).Register(qmux, "/api/v1")
	cfg := testConfig()
	cfg.Parser = promqltest.TestParserOpts
	f, err := New(cfg, HandlerTransport(tenant.Middleware(true, qmux)), fixedLimits(limits.Limits{QueryShardingTotalShards: q.e.shards}), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return &promql.Result{Err: err}
	}
	defer f.close()
	f.engine = q.e.inner // the suite's engine options (delayed name removal)
	var value parser.Value
	er, err := f.evalShardedValue(ctx, "team-a", q.rq, q.rq.start, q.rq.end, &queryStats{slots: make(chan struct{}, 4)},
		func(v parser.Value, _, _ []string) error {
			value = cloneValue(v)
			return nil
		})
	switch {
	case err != nil:
		return &promql.Result{Err: fmt.Errorf("sharded %s: %w", q.rq.plan.outer, err)}
	case er != nil:
		return &promql.Result{Err: fmt.Errorf("sharded %s: querier answered %d: %s", q.rq.plan.outer, er.code, er.body)}
	}
	return &promql.Result{Value: value, Warnings: res.Warnings}
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
