package queryable

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// TenantLimits answers each tenant's limits (limits.Overrides).
type TenantLimits interface {
	For(tenant string) *limits.Limits
}

// Limited applies the tenant's query limits to the queries of another
// queryable: how far back a query may read (older data is left out), how
// long a time range one query may read, and how many series, chunks and
// chunk bytes one query may fetch. Series are counted after replicas and
// sources are merged, chunks and bytes as they arrive from ingesters and
// store-gateways, so a query over a limit stops early, wherever it runs.
type Limited struct {
	inner  storage.Queryable
	limits TenantLimits
	now    func() time.Time
}

// NewLimited returns inner with the limits of each call's tenant applied.
func NewLimited(inner storage.Queryable, l TenantLimits) *Limited {
	return &Limited{inner: inner, limits: l, now: time.Now}
}

var _ storage.Queryable = (*Limited)(nil)

// Querier implements storage.Queryable. The tenant is known only once a
// call brings its context, so the querier underneath is opened then.
func (l *Limited) Querier(mint, maxt int64) (storage.Querier, error) {
	return &limitedQuerier{l: l, mint: mint, maxt: maxt}, nil
}

// limitedQuerier is one query's querier: its counts span every call.
type limitedQuerier struct {
	l          *Limited
	mint, maxt int64
	fetched    fetchCounts

	mu    sync.Mutex
	inner storage.Querier // nil until the first call, or when the lookback leaves nothing to read
}

// open returns the querier underneath, over the range the tenant's
// lookback leaves (nil when it leaves nothing), and the tenant's limits.
func (q *limitedQuerier) open(ctx context.Context) (storage.Querier, *limits.Limits, error) {
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fetched.limits != nil { // opened by an earlier call of the query
		return q.inner, q.fetched.limits, nil
	}
	lim := q.l.limits.For(id)
	q.fetched.limits = lim
	mint := q.mint
	if lim.MaxQueryLookback > 0 {
		mint = max(mint, q.l.now().Add(-time.Duration(lim.MaxQueryLookback)).UnixMilli())
	}
	if mint > q.maxt {
		return nil, lim, nil
	}
	inner, err := q.l.inner.Querier(mint, q.maxt)
	if err != nil {
		return nil, nil, err
	}
	q.inner = inner
	return inner, lim, nil
}

func (q *limitedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	inner, lim, err := q.open(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if inner == nil {
		return storage.EmptySeriesSet()
	}
	if lim.MaxQueryLength > 0 && hints != nil && hints.Func != "series" {
		start, end := max(hints.Start, q.mint), min(hints.End, q.maxt)
		if length := time.Duration(end-start) * time.Millisecond; length > time.Duration(lim.MaxQueryLength) {
			return storage.ErrSeriesSet(rpc.Errorf(rpc.CauseTenantLimit,
				"the query time range exceeds the limit (query length: %s, limit: %s); shorten the query or raise -querier.max-query-length",
				model.Duration(length), lim.MaxQueryLength))
		}
	}
	return &countedSeriesSet{SeriesSet: inner.Select(withFetchCounts(ctx, &q.fetched), sortSeries, hints, ms...), fetched: &q.fetched}
}

func (q *limitedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	inner, _, err := q.open(ctx)
	if err != nil || inner == nil {
		return nil, nil, err
	}
	return inner.LabelValues(ctx, name, hints, ms...)
}

func (q *limitedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	inner, _, err := q.open(ctx)
	if err != nil || inner == nil {
		return nil, nil, err
	}
	return inner.LabelNames(ctx, hints, ms...)
}

func (q *limitedQuerier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inner == nil {
		return nil
	}
	return q.inner.Close()
}

// fetchCounts counts what one query fetched against its tenant's limits.
type fetchCounts struct {
	limits               *limits.Limits // set once, by the first call, before any count
	series, chunks, size atomic.Int64
}

// addSeries counts one series given to the engine.
func (f *fetchCounts) addSeries() error {
	n := f.series.Add(1)
	if max := f.limits.MaxFetchedSeriesPerQuery; max > 0 && n > int64(max) {
		return rpc.Errorf(rpc.CauseTenantLimit, "the query hit the max number of series limit (limit: %d series); narrow the query or raise -querier.max-fetched-series-per-query", max)
	}
	return nil
}

// addChunks counts chunks as they arrive from an ingester or store-gateway.
func (f *fetchCounts) addChunks(n, bytes int) error {
	c, b := f.chunks.Add(int64(n)), f.size.Add(int64(bytes))
	if max := f.limits.MaxFetchedChunksPerQuery; max > 0 && c > int64(max) {
		return rpc.Errorf(rpc.CauseTenantLimit, "the query hit the max number of chunks limit (limit: %d chunks); narrow the query or raise -querier.max-fetched-chunks-per-query", max)
	}
	if max := f.limits.MaxFetchedChunkBytesPerQuery; max > 0 && b > int64(max) {
		return rpc.Errorf(rpc.CauseTenantLimit, "the query hit the max number of chunk bytes limit (limit: %d bytes); narrow the query or raise -querier.max-fetched-chunk-bytes-per-query", max)
	}
	return nil
}

type fetchCountsKey struct{}

func withFetchCounts(ctx context.Context, f *fetchCounts) context.Context {
	return context.WithValue(ctx, fetchCountsKey{}, f)
}

// fetchCountsFrom returns the counts of the query ctx belongs to, or nil.
func fetchCountsFrom(ctx context.Context) *fetchCounts {
	f, _ := ctx.Value(fetchCountsKey{}).(*fetchCounts)
	return f
}

// countedSeriesSet counts the series the engine reads and stops at the
// limit.
type countedSeriesSet struct {
	storage.SeriesSet
	fetched *fetchCounts
	err     error
}

func (s *countedSeriesSet) Next() bool {
	if s.err != nil || !s.SeriesSet.Next() {
		return false
	}
	if err := s.fetched.addSeries(); err != nil {
		s.err = err
		return false
	}
	return true
}

func (s *countedSeriesSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.SeriesSet.Err()
}
