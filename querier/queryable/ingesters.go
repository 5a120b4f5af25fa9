// Package queryable reads the series the PromQL engine needs from the
// ingesters of the ring, merging the replicas of every series into one.
package queryable

import (
	"context"
	"fmt"
	"slices"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// Ingesters is a storage.Queryable over the ingesters of a ring. A read
// asks the whole replication set and tolerates as many failed ingesters as
// the write quorum allows: every acknowledged sample is on a quorum of its
// replicas, so any read quorum holds it.
type Ingesters struct {
	ring dskitring.ReadRing
	pool *client.Pool
}

// NewIngesters returns a queryable over r, connecting through pool.
func NewIngesters(r dskitring.ReadRing, pool *client.Pool) *Ingesters {
	return &Ingesters{ring: r, pool: pool}
}

var _ storage.Queryable = (*Ingesters)(nil)

// Querier returns a querier over [mint, maxt] for the tenant of each call.
func (q *Ingesters) Querier(mint, maxt int64) (storage.Querier, error) {
	return &ringQuerier{q: q, mint: mint, maxt: maxt}, nil
}

type ringQuerier struct {
	q          *Ingesters
	mint, maxt int64
}

// each runs f against a read quorum of the ingesters and returns the
// answers of those that answered.
func each[T any](ctx context.Context, q *Ingesters, f func(context.Context, *rpc.PooledIngester) (T, error)) ([]T, error) {
	if _, err := tenant.From(ctx); err != nil {
		return nil, err
	}
	rs, err := q.ring.GetReplicationSetForOperation(dskitring.Read)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "ingesters to read from: %v", err)
	}
	results, err := rs.Do(ctx, 0, func(ctx context.Context, inst *dskitring.InstanceDesc) (any, error) {
		c, err := q.pool.GetClientForInstance(*inst)
		if err != nil {
			return nil, fmt.Errorf("ingester %s: %w", inst.Id, err)
		}
		return f(ctx, c.(*rpc.PooledIngester))
	})
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "read from ingesters: %v", err)
	}
	out := make([]T, 0, len(results))
	for _, r := range results {
		out = append(out, r.(T))
	}
	return out, nil
}

func (r *ringQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	start, end := r.mint, r.maxt
	if hints != nil {
		start, end = max(start, hints.Start), min(end, hints.End)
	}
	req := &prompb.Query{StartTimestampMs: start, EndTimestampMs: end, Matchers: rpc.ToLabelMatchers(ms)}
	answers, err := each(ctx, r.q, func(ctx context.Context, c *rpc.PooledIngester) ([]*prompb.ChunkedSeries, error) {
		var series []*prompb.ChunkedSeries
		err := c.QueryStream(ctx, req, func(resp *prompb.ChunkedReadResponse) error {
			series = append(series, resp.ChunkedSeries...)
			return nil
		})
		return series, err
	})
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	sets := make([]storage.SeriesSet, 0, len(answers))
	for _, series := range answers {
		sets = append(sets, storage.NewSeriesSetFromChunkSeriesSet(&chunkSeriesSet{series: series, cur: -1}))
	}
	// Replicas hold the same samples; the chained merge keeps one of each.
	return storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
}

func (r *ringQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	req := &rpc.LabelsRequest{Start: r.mint, End: r.maxt, Name: name, Matchers: rpc.ToLabelMatchers(ms), Limit: limitOf(hints)}
	return r.union(ctx, req, (*rpc.PooledIngester).LabelValues)
}

func (r *ringQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	req := &rpc.LabelsRequest{Start: r.mint, End: r.maxt, Matchers: rpc.ToLabelMatchers(ms), Limit: limitOf(hints)}
	return r.union(ctx, req, (*rpc.PooledIngester).LabelNames)
}

func (r *ringQuerier) union(ctx context.Context, req *rpc.LabelsRequest, call func(*rpc.PooledIngester, context.Context, *rpc.LabelsRequest) ([]string, error)) ([]string, annotations.Annotations, error) {
	answers, err := each(ctx, r.q, func(ctx context.Context, c *rpc.PooledIngester) ([]string, error) {
		return call(c, ctx, req)
	})
	if err != nil {
		return nil, nil, err
	}
	var all []string
	for _, a := range answers {
		all = append(all, a...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if req.Limit > 0 && len(all) > req.Limit {
		all = all[:req.Limit]
	}
	return all, nil, nil
}

func (*ringQuerier) Close() error { return nil }

func limitOf(h *storage.LabelHints) int {
	if h == nil {
		return 0
	}
	return h.Limit
}

// chunkSeriesSet walks the series one ingester sent, sorted by labels.
type chunkSeriesSet struct {
	series []*prompb.ChunkedSeries
	cur    int
	at     storage.ChunkSeries
	err    error
}

func (s *chunkSeriesSet) Next() bool {
	if s.err != nil {
		return false
	}
	s.cur++
	if s.cur >= len(s.series) {
		return false
	}
	cs := s.series[s.cur]
	b := labels.NewScratchBuilder(len(cs.Labels))
	for _, l := range cs.Labels {
		b.Add(l.Name, l.Value)
	}
	metas := make([]chunks.Meta, 0, len(cs.Chunks))
	for _, c := range cs.Chunks {
		chk, err := chunkenc.FromData(chunkenc.Encoding(c.Type), c.Data)
		if err != nil {
			s.err = fmt.Errorf("decode chunk of %s: %w", b.Labels(), err)
			return false
		}
		metas = append(metas, chunks.Meta{MinTime: c.MinTimeMs, MaxTime: c.MaxTimeMs, Chunk: chk})
	}
	s.at = &storage.ChunkSeriesEntry{
		Lset:            b.Labels(),
		ChunkIteratorFn: func(chunks.Iterator) chunks.Iterator { return storage.NewListChunkSeriesIterator(metas...) },
	}
	return true
}

func (s *chunkSeriesSet) At() storage.ChunkSeries           { return s.at }
func (s *chunkSeriesSet) Err() error                        { return s.err }
func (s *chunkSeriesSet) Warnings() annotations.Annotations { return nil }
