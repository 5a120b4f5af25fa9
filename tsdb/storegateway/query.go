package storegateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

var _ rpc.StoreGatewayServer = (*StoreGateway)(nil)

const (
	// batchSeries and batchChunks bound the series read from the index
	// before their chunks are fetched together.
	batchSeries = 1024
	batchChunks = 16 * 1024
)

// Series implements rpc.StoreGatewayServer: it sends the series of the
// requested blocks matching the query, with their chunks that overlap the
// query's time range, merged across blocks and sorted by labels.
func (s *StoreGateway) Series(ctx context.Context, req *rpc.BlocksQuery, send func(*prompb.ChunkedReadResponse) error) error {
	defer s.observe("Series", time.Now())
	if req.Query == nil {
		return rpc.Errorf(rpc.CauseBadData, "series request without a query")
	}
	q, err := s.querier(ctx, req.BlockIDs, req.Query.StartTimestampMs, req.Query.EndTimestampMs)
	if err != nil {
		return err
	}
	defer q.Close()
	return rpc.ServeChunkQuery(ctx, q, req.Query, send)
}

// LabelNames implements rpc.StoreGatewayServer.
func (s *StoreGateway) LabelNames(ctx context.Context, req *rpc.BlocksLabelsRequest) ([]string, error) {
	defer s.observe("LabelNames", time.Now())
	ms, err := rpc.FromLabelMatchers(req.Matchers)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	q, err := s.querier(ctx, req.BlockIDs, req.Start, req.End)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	names, _, err := q.LabelNames(ctx, &storage.LabelHints{Limit: req.Limit}, ms...)
	return names, err
}

// LabelValues implements rpc.StoreGatewayServer.
func (s *StoreGateway) LabelValues(ctx context.Context, req *rpc.BlocksLabelsRequest) ([]string, error) {
	defer s.observe("LabelValues", time.Now())
	ms, err := rpc.FromLabelMatchers(req.Matchers)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	q, err := s.querier(ctx, req.BlockIDs, req.Start, req.End)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	values, _, err := q.LabelValues(ctx, req.Name, &storage.LabelHints{Limit: req.Limit}, ms...)
	return values, err
}

func (s *StoreGateway) observe(method string, start time.Time) {
	s.metrics.queryDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// querier returns a chunk querier over the tenant's requested blocks, which
// must all be held, in [mint, maxt]. Close releases the blocks.
func (s *StoreGateway) querier(ctx context.Context, blockIDs []string, mint, maxt int64) (*blocksQuerier, error) {
	tenantID, err := tenant.From(ctx)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	if len(blockIDs) == 0 {
		return nil, rpc.Errorf(rpc.CauseBadData, "no blocks requested")
	}
	ids := make([]ulid.ULID, 0, len(blockIDs))
	for _, str := range blockIDs {
		id, err := ulid.ParseStrict(str)
		if err != nil {
			return nil, rpc.Errorf(rpc.CauseBadData, "block ID %q: %v", str, err)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	bs, readers, release, err := s.acquire(tenantID, ids)
	if missing := rpc.MissingBlocks(err); len(missing) > 0 {
		// The querier read a newer bucket index than our last sync: load
		// what it asks for, if ours, and try once more.
		if lerr := s.loadRequested(ctx, tenantID, missing); lerr != nil {
			s.logger.Warn("load requested blocks", "tenant", tenantID, "blocks", missing, "err", lerr)
		}
		bs, readers, release, err = s.acquire(tenantID, ids)
	}
	if err != nil {
		return nil, err
	}
	// Blocks in time order, so chunks of a series come out in time order
	// unless blocks overlap.
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if bs[a].minTime != bs[b].minTime {
			return int(min(max(bs[a].minTime-bs[b].minTime, -1), 1))
		}
		return bs[a].id.Compare(bs[b].id)
	})
	q := &blocksQuerier{s: s, mint: mint, maxt: maxt, release: release}
	for _, i := range order {
		q.blocks = append(q.blocks, bs[i])
		q.readers = append(q.readers, readers[i])
	}
	return q, nil
}

// blocksQuerier is a storage.ChunkQuerier over held blocks of one tenant.
// It holds references on the blocks until closed, so their index readers
// stay open: labels it returns may point into the mmapped index.
type blocksQuerier struct {
	s          *StoreGateway
	blocks     []*block
	readers    []*index.Reader
	mint, maxt int64
	release    func()
}

// Select returns the series matching ms (of the shard the hints name, if
// any), merged across the blocks. Chunks
// of a series in several blocks are all sent, none dropped or re-encoded;
// the querier merges overlapping ones.
func (q *blocksQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	var sets []storage.ChunkSeriesSet
	for i, b := range q.blocks {
		if b.minTime > maxt || b.maxTime <= mint {
			continue
		}
		p, err := tsdb.PostingsForMatchers(ctx, q.readers[i], ms...)
		if err != nil {
			return storage.ErrChunkSeriesSet(fmt.Errorf("select postings of block %s: %w", b.id, err))
		}
		if hints != nil && hints.ShardCount > 0 {
			// A query-frontend's shard: the series whose labels hash to it.
			p = q.readers[i].ShardedPostings(p, hints.ShardIndex, hints.ShardCount)
		}
		sets = append(sets, &blockSeriesSet{ctx: ctx, s: q.s, b: b, ir: q.readers[i], p: p, mint: mint, maxt: maxt})
	}
	switch len(sets) {
	case 0:
		return storage.EmptyChunkSeriesSet()
	case 1:
		return sets[0]
	}
	return storage.NewMergeChunkSeriesSet(sets, 0, concatChunks)
}

// concatChunks merges the same series of several blocks: it hands on all
// their chunks, ordered by min time, without re-encoding or dropping any.
// Chunks of overlapping blocks overlap; the querier merges them.
func concatChunks(series ...storage.ChunkSeries) storage.ChunkSeries {
	if len(series) == 0 {
		return nil
	}
	var all []chunks.Meta
	var it chunks.Iterator
	var err error
	for _, s := range series {
		it = s.Iterator(it)
		for it.Next() {
			all = append(all, it.At())
		}
		if err == nil {
			err = it.Err()
		}
	}
	slices.SortStableFunc(all, func(a, b chunks.Meta) int {
		switch {
		case a.MinTime < b.MinTime:
			return -1
		case a.MinTime > b.MinTime:
			return 1
		}
		return 0
	})
	return &storage.ChunkSeriesEntry{
		Lset: series[0].Labels(),
		ChunkIteratorFn: func(chunks.Iterator) chunks.Iterator {
			if err != nil {
				return errChunkIterator{err}
			}
			return storage.NewListChunkSeriesIterator(all...)
		},
	}
}

// errChunkIterator is an iterator that failed.
type errChunkIterator struct{ err error }

func (e errChunkIterator) At() chunks.Meta { return chunks.Meta{} }
func (e errChunkIterator) Next() bool      { return false }
func (e errChunkIterator) Err() error      { return e.err }

// LabelNames returns the sorted label names of the series matching ms in
// the blocks. As in Prometheus' block querier, a block counts whole if it
// overlaps the time range.
func (q *blocksQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var all [][]string
	for i, b := range q.blocks {
		if b.minTime > q.maxt || b.maxTime <= q.mint {
			continue
		}
		ir := q.readers[i]
		var names []string
		var err error
		if len(ms) == 0 {
			names, err = ir.LabelNames(ctx)
		} else {
			var p index.Postings
			if p, err = tsdb.PostingsForMatchers(ctx, ir, ms...); err == nil {
				names, err = ir.LabelNamesFor(ctx, p)
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("label names of block %s: %w", b.id, err)
		}
		all = append(all, names)
	}
	return mergeStrings(all, hints), nil, nil
}

// LabelValues returns the sorted values of name of the series matching ms
// in the blocks.
func (q *blocksQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var all [][]string
	for i, b := range q.blocks {
		if b.minTime > q.maxt || b.maxTime <= q.mint {
			continue
		}
		values, err := labelValues(ctx, q.readers[i], name, ms)
		if err != nil {
			return nil, nil, fmt.Errorf("values of label %q of block %s: %w", name, b.id, err)
		}
		all = append(all, values)
	}
	return mergeStrings(all, hints), nil, nil
}

func labelValues(ctx context.Context, ir *index.Reader, name string, ms []*labels.Matcher) ([]string, error) {
	if len(ms) == 0 {
		return ir.SortedLabelValues(ctx, name, nil)
	}
	// Only series that have the label.
	has, err := labels.NewMatcher(labels.MatchRegexp, name, ".+")
	if err != nil {
		return nil, err
	}
	p, err := tsdb.PostingsForMatchers(ctx, ir, append(slices.Clip(ms), has)...)
	if err != nil {
		return nil, err
	}
	seen := map[string]struct{}{}
	var b labels.ScratchBuilder
	for p.Next() {
		if err := ir.Series(p.At(), &b, nil); err != nil {
			return nil, err
		}
		seen[b.Labels().Get(name)] = struct{}{}
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}

// mergeStrings merges sorted lists into one without duplicates, cloning
// the strings (they may point into an index that is closed later) and
// applying the hints' limit.
func mergeStrings(lists [][]string, hints *storage.LabelHints) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	for i, v := range out {
		out[i] = strings.Clone(v)
	}
	return out
}

// Close releases the blocks.
func (q *blocksQuerier) Close() error {
	if q.release != nil {
		q.release()
		q.release = nil
	}
	return nil
}

// blockSeriesSet is the series of one block matching a query. It reads a
// batch of series from the index and then fetches all their chunks at
// once, so reads of neighbouring chunks are coalesced.
type blockSeriesSet struct {
	ctx        context.Context
	s          *StoreGateway
	b          *block
	ir         *index.Reader
	p          index.Postings
	mint, maxt int64

	batch   []storage.ChunkSeriesEntry
	metas   [][]chunks.Meta // chunks of batch[i], loaded
	cur     int
	builder labels.ScratchBuilder
	scratch []chunks.Meta
	done    bool
	err     error
}

func (ss *blockSeriesSet) Next() bool {
	if ss.err != nil {
		return false
	}
	ss.cur++
	if ss.cur < len(ss.batch) {
		return true
	}
	if ss.done {
		return false
	}
	if err := ss.nextBatch(); err != nil {
		ss.err = err
		return false
	}
	ss.cur = 0
	return len(ss.batch) > 0
}

func (ss *blockSeriesSet) nextBatch() error {
	// Entries of the previous batch may still be referenced by the merge
	// of several blocks' sets, so a new batch gets new slices.
	ss.batch, ss.metas = nil, nil
	nChunks := 0
	for len(ss.batch) < batchSeries && nChunks < batchChunks {
		if !ss.p.Next() {
			ss.done = true
			break
		}
		if err := ss.ir.Series(ss.p.At(), &ss.builder, &ss.scratch); err != nil {
			return fmt.Errorf("read series of block %s: %w", ss.b.id, err)
		}
		var keep []chunks.Meta
		for _, m := range ss.scratch {
			if m.MaxTime >= ss.mint && m.MinTime <= ss.maxt {
				keep = append(keep, m)
			}
		}
		if len(keep) == 0 {
			continue
		}
		ss.batch = append(ss.batch, storage.ChunkSeriesEntry{Lset: ss.builder.Labels()})
		ss.metas = append(ss.metas, keep)
		nChunks += len(keep)
	}
	if err := ss.p.Err(); err != nil {
		return fmt.Errorf("read postings of block %s: %w", ss.b.id, err)
	}
	if err := ss.ctx.Err(); err != nil {
		return err
	}
	ptrs := make([]*chunks.Meta, 0, nChunks)
	for i := range ss.metas {
		for j := range ss.metas[i] {
			ptrs = append(ptrs, &ss.metas[i][j])
		}
	}
	if len(ptrs) > 0 {
		if err := ss.s.loadChunks(ss.ctx, ss.b, ptrs); err != nil {
			return fmt.Errorf("read chunks of block %s of tenant %q: %w", ss.b.id, ss.b.tenant, err)
		}
	}
	for i := range ss.batch {
		metas := ss.metas[i]
		ss.batch[i].ChunkIteratorFn = func(chunks.Iterator) chunks.Iterator {
			return storage.NewListChunkSeriesIterator(metas...)
		}
	}
	return nil
}

func (ss *blockSeriesSet) At() storage.ChunkSeries { return &ss.batch[ss.cur] }

func (ss *blockSeriesSet) Err() error { return ss.err }

func (ss *blockSeriesSet) Warnings() annotations.Annotations { return nil }
