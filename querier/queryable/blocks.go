package queryable

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"golang.org/x/sync/errgroup"

	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// BlockStore answers queries over some of a tenant's blocks, all of them or
// an error: a store-gateway, over gRPC or in the same process. Series may
// reuse a frame's memory once recv's call for the next frame returns (the
// querier is done with a frame by then), not before.
type BlockStore interface {
	Series(ctx context.Context, req *rpc.BlocksQuery, recv func(*prompb.ChunkedReadResponse) error) error
	LabelNames(ctx context.Context, req *rpc.BlocksLabelsRequest) ([]string, error)
	LabelValues(ctx context.Context, req *rpc.BlocksLabelsRequest) ([]string, error)
}

// BlockStores finds the store-gateways that may hold a block.
type BlockStores interface {
	// Replicas returns the names of the stores holding the block, in the
	// order to ask them.
	Replicas(tenantID string, id ulid.ULID) ([]string, error)
	// Store returns the store of a name Replicas returned.
	Store(name string) (BlockStore, error)
}

// BlocksFinder lists a tenant's blocks that hold data in [mint, maxt].
type BlocksFinder interface {
	Blocks(ctx context.Context, tenantID string, mint, maxt int64) ([]bucketindex.Block, error)
}

// Blocks is a storage.Queryable over the blocks in the bucket, served by
// store-gateways. It asks for every block the finder lists, tries the
// replicas of each in turn, and fails, never returns a silent hole, when a
// block cannot be read from any of them.
type Blocks struct {
	finder BlocksFinder
	stores BlockStores
}

// NewBlocks returns a queryable over the blocks finder lists.
func NewBlocks(finder BlocksFinder, stores BlockStores) *Blocks {
	return &Blocks{finder: finder, stores: stores}
}

var _ storage.Queryable = (*Blocks)(nil)

// Querier returns a querier over [mint, maxt] for the tenant of each call.
func (b *Blocks) Querier(mint, maxt int64) (storage.Querier, error) {
	return &blocksQuerier{b: b, mint: mint, maxt: maxt}, nil
}

type blocksQuerier struct {
	b          *Blocks
	mint, maxt int64

	mu      sync.Mutex
	streams []*frameStream // ended by Close
}

// fetch runs call for every block overlapping [mint, maxt], grouped by the
// store asked, and hands each store's answer to keep. A store that fails
// has its blocks asked of their next replica; keep only sees answers that
// are whole.
func fetch[T any](ctx context.Context, b *Blocks, mint, maxt int64, call func(context.Context, BlockStore, []string) (T, error), keep func(T)) error {
	id, err := tenant.From(ctx)
	if err != nil {
		return err
	}
	blocks, err := b.finder.Blocks(ctx, id, mint, maxt)
	if err != nil {
		return err
	}
	pending := make([]ulid.ULID, 0, len(blocks))
	for _, bl := range blocks {
		pending = append(pending, bl.ID)
	}
	tried := map[ulid.ULID][]string{}
	failures := map[ulid.ULID][]string{}
	var mu sync.Mutex
	for len(pending) > 0 {
		groups := map[string][]string{}
		var unreachable []ulid.ULID
		for _, bid := range pending {
			replicas, err := b.stores.Replicas(id, bid)
			if err != nil {
				return rpc.Errorf(rpc.CauseUnavailable, "store-gateways of block %s: %v", bid, err)
			}
			next := ""
			for _, r := range replicas {
				if !slices.Contains(tried[bid], r) {
					next = r
					break
				}
			}
			if next == "" {
				unreachable = append(unreachable, bid)
				continue
			}
			tried[bid] = append(tried[bid], next)
			groups[next] = append(groups[next], bid.String())
		}
		if len(unreachable) > 0 {
			return unqueriedBlocks(id, unreachable, failures)
		}
		pending = pending[:0]
		g, gctx := errgroup.WithContext(ctx)
		for name, ids := range groups {
			g.Go(func() error {
				store, err := b.stores.Store(name)
				var answer T
				if err == nil {
					answer, err = call(gctx, store, ids)
				}
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					keep(answer)
					return nil
				}
				if cause := rpc.CauseOf(err); cause == rpc.CauseBadData || cause == rpc.CauseTenantLimit {
					return err // the query itself is wrong: no replica will do better
				}
				// A store that does not hold some of the blocks answers
				// nothing: the blocks it holds are asked of it again, the
				// others of their next replica.
				missing := rpc.MissingBlocks(err)
				for _, s := range ids {
					bid := ulid.MustParse(s)
					if len(missing) > 0 && !slices.Contains(missing, s) {
						tried[bid] = slices.DeleteFunc(tried[bid], func(r string) bool { return r == name })
					} else {
						failures[bid] = append(failures[bid], fmt.Sprintf("%s: %v", name, err))
					}
					pending = append(pending, bid)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func unqueriedBlocks(tenantID string, ids []ulid.ULID, failures map[ulid.ULID][]string) error {
	var why []string
	for _, id := range ids {
		f := failures[id]
		if len(f) == 0 {
			f = []string{"no store-gateway holds it"}
		}
		why = append(why, fmt.Sprintf("%s (%s)", id, strings.Join(f, "; ")))
	}
	return rpc.Errorf(rpc.CauseUnavailable, "%d blocks of tenant %q could not be queried, so the answer would have holes: %s", len(ids), tenantID, strings.Join(why, ", "))
}

// Select streams the series of every block overlapping the range from
// the store-gateways holding them and merges them series by series. Each
// first choice of store-gateway starts one stream; a stream that fails,
// before its first frame or in the middle, is replaced by streams from the
// blocks' other replicas (a store-gateway that does not hold some of them
// is asked again for the others), carrying on after the last series given.
// A block no replica can serve fails the query: never a silent hole.
func (q *blocksQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	id, err := tenant.From(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	start, end := q.mint, q.maxt
	if hints != nil {
		start, end = max(start, hints.Start), min(end, hints.End)
	}
	blocks, err := q.b.finder.Blocks(ctx, id, start, end)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if len(blocks) == 0 {
		return storage.EmptySeriesSet()
	}
	req := &prompb.Query{StartTimestampMs: start, EndTimestampMs: end, Matchers: rpc.ToLabelMatchers(ms)}
	// One set per store-gateway first asked: the sets merge in parallel
	// and each fails over on its own.
	first := map[string][]ulid.ULID{}
	for _, bl := range blocks {
		replicas, err := q.b.stores.Replicas(id, bl.ID)
		if err != nil {
			return storage.ErrSeriesSet(rpc.Errorf(rpc.CauseUnavailable, "store-gateways of block %s: %v", bl.ID, err))
		}
		name := ""
		if len(replicas) > 0 {
			name = replicas[0]
		}
		first[name] = append(first[name], bl.ID)
	}
	names := slices.Sorted(maps.Keys(first))
	sets := make([]storage.ChunkSeriesSet, 0, len(names))
	for _, name := range names {
		src := &blockSource{q: q, ctx: ctx, tenant: id, req: req, ids: first[name], failures: map[ulid.ULID][]string{}}
		next, err := src.open()
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		sets = append(sets, &chunkSeriesSet{next: next, cur: -1, failed: src.fail, fetched: fetchCountsFrom(ctx)})
	}
	// Blocks overlap (replicas not compacted yet): one copy of each chunk
	// or sample.
	return mergeReplicas(sets, start, end)
}

// blockSource streams the series of some blocks from their store-gateways,
// choosing again after a failure.
type blockSource struct {
	q      *blocksQuerier
	ctx    context.Context
	tenant string
	req    *prompb.Query
	ids    []ulid.ULID
	// failures holds, per block, the store-gateways that failed it and why.
	failures map[ulid.ULID][]string
	failed   map[ulid.ULID][]string // the store-gateways' names alone
}

// storeFailure is the end of one store-gateway's stream.
type storeFailure struct {
	store string
	ids   []ulid.ULID
	err   error
}

func (e *storeFailure) Error() string { return fmt.Sprintf("store-gateway %s: %v", e.store, e.err) }
func (e *storeFailure) Unwrap() error { return e.err }

// open streams every block from the first of its replicas that has not
// failed it.
func (s *blockSource) open() (func() ([]*prompb.ChunkedSeries, bool, error), error) {
	groups := map[string][]ulid.ULID{}
	var unreachable []ulid.ULID
	for _, id := range s.ids {
		replicas, err := s.q.b.stores.Replicas(s.tenant, id)
		if err != nil {
			return nil, rpc.Errorf(rpc.CauseUnavailable, "store-gateways of block %s: %v", id, err)
		}
		next := ""
		for _, r := range replicas {
			if !slices.Contains(s.failed[id], r) {
				next = r
				break
			}
		}
		if next == "" {
			unreachable = append(unreachable, id)
			continue
		}
		groups[next] = append(groups[next], id)
	}
	if len(unreachable) > 0 {
		return nil, unqueriedBlocks(s.tenant, unreachable, s.failures)
	}
	var nexts []func() ([]*prompb.ChunkedSeries, bool, error)
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		ids := groups[name]
		stream := newFrameStream(s.ctx)
		s.q.track(stream)
		go func() {
			store, err := s.q.b.stores.Store(name)
			if err == nil {
				strs := make([]string, len(ids))
				for i, id := range ids {
					strs[i] = id.String()
				}
				err = store.Series(stream.ctx, &rpc.BlocksQuery{Query: s.req, BlockIDs: strs}, stream.put)
			}
			if err != nil {
				err = &storeFailure{store: name, ids: ids, err: err}
			}
			stream.finish(err)
		}()
		nexts = append(nexts, stream.next)
	}
	if len(nexts) == 1 {
		return nexts[0], nil
	}
	return mergeFrames(nexts), nil
}

// fail decides what the failure of a stream means: a query that is wrong
// fails as it is; otherwise the store-gateway is not asked again for the
// blocks it failed (those it said it does not hold, or all it was asked
// for) and every block is streamed anew.
func (s *blockSource) fail(err error) (func() ([]*prompb.ChunkedSeries, bool, error), error) {
	var sf *storeFailure
	if !errors.As(err, &sf) {
		return nil, err
	}
	if cause := rpc.CauseOf(sf.err); cause == rpc.CauseBadData || cause == rpc.CauseTenantLimit {
		return nil, sf.err // the query itself is wrong: no replica will do better
	}
	if s.ctx.Err() != nil {
		return nil, s.ctx.Err()
	}
	missing := rpc.MissingBlocks(sf.err)
	if s.failed == nil {
		s.failed = map[ulid.ULID][]string{}
	}
	marked := false
	for _, id := range sf.ids {
		if len(missing) > 0 && !slices.Contains(missing, id.String()) {
			continue // held: it may be asked of the same store-gateway again
		}
		s.failed[id] = append(s.failed[id], sf.store)
		s.failures[id] = append(s.failures[id], fmt.Sprintf("%s: %v", sf.store, sf.err))
		marked = true
	}
	if !marked { // an answer naming none of the blocks asked: fail them all
		for _, id := range sf.ids {
			s.failed[id] = append(s.failed[id], sf.store)
			s.failures[id] = append(s.failures[id], fmt.Sprintf("%s: %v", sf.store, sf.err))
		}
	}
	return s.open()
}

// track keeps a stream to end on Close.
func (q *blocksQuerier) track(s *frameStream) {
	q.mu.Lock()
	q.streams = append(q.streams, s)
	q.mu.Unlock()
}

// mergeFrames merges sources of series sorted by labels into one, series
// by series; the chunks of a series several sources hold are put
// together. An error of any source ends it.
func mergeFrames(sources []func() ([]*prompb.ChunkedSeries, bool, error)) func() ([]*prompb.ChunkedSeries, bool, error) {
	type cursor struct {
		next  func() ([]*prompb.ChunkedSeries, bool, error)
		frame []*prompb.ChunkedSeries
		i     int
		done  bool
	}
	cs := make([]*cursor, len(sources))
	for i, n := range sources {
		cs[i] = &cursor{next: n}
	}
	const batch = 256
	return func() ([]*prompb.ChunkedSeries, bool, error) {
		var out []*prompb.ChunkedSeries
		for len(out) < batch {
			var head *prompb.ChunkedSeries
			for _, c := range cs {
				for !c.done && c.i >= len(c.frame) {
					f, ok, err := c.next()
					if err != nil {
						return nil, false, err
					}
					c.frame, c.i, c.done = f, 0, !ok
				}
				if c.done {
					continue
				}
				if s := c.frame[c.i]; head == nil || compareLabels(s.Labels, head.Labels) < 0 {
					head = s
				}
			}
			if head == nil {
				break
			}
			merged := &prompb.ChunkedSeries{Labels: head.Labels}
			for _, c := range cs {
				if !c.done && c.i < len(c.frame) && compareLabels(c.frame[c.i].Labels, head.Labels) == 0 {
					merged.Chunks = append(merged.Chunks, c.frame[c.i].Chunks...)
					c.frame[c.i] = nil
					c.i++
				}
			}
			out = append(out, merged)
		}
		if len(out) == 0 {
			return nil, false, nil
		}
		return out, true, nil
	}
}

// compareLabels orders label lists as labels.Compare does.
func compareLabels(a, b []prompb.Label) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i].Name, b[i].Name); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

func (q *blocksQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	req := rpc.LabelsRequest{Start: q.mint, End: q.maxt, Name: name, Matchers: rpc.ToLabelMatchers(ms), Limit: limitOf(hints)}
	return q.union(ctx, req, BlockStore.LabelValues)
}

func (q *blocksQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	req := rpc.LabelsRequest{Start: q.mint, End: q.maxt, Matchers: rpc.ToLabelMatchers(ms), Limit: limitOf(hints)}
	return q.union(ctx, req, BlockStore.LabelNames)
}

func (q *blocksQuerier) union(ctx context.Context, req rpc.LabelsRequest, call func(BlockStore, context.Context, *rpc.BlocksLabelsRequest) ([]string, error)) ([]string, annotations.Annotations, error) {
	var all []string
	err := fetch(ctx, q.b, q.mint, q.maxt, func(ctx context.Context, s BlockStore, ids []string) ([]string, error) {
		return call(s, ctx, &rpc.BlocksLabelsRequest{LabelsRequest: req, BlockIDs: ids})
	}, func(values []string) { all = append(all, values...) })
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if req.Limit > 0 && len(all) > req.Limit {
		all = all[:req.Limit]
	}
	return all, nil, nil
}

// Close ends the streams of every Select that were not read to the end.
func (q *blocksQuerier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range q.streams {
		s.cancel()
	}
	q.streams = nil
	return nil
}

// BucketIndexFinder lists blocks from the tenants' bucket indexes, each
// read again once older than maxAge. An index the compactor last wrote
// more than maxStale ago (0: any age will do) fails the query: blocks made
// or deleted since are missing from it, and the answer would have holes.
type BucketIndexFinder struct {
	bkt      bucket.Reader
	maxAge   time.Duration
	maxStale time.Duration
	now      func() time.Time

	mu      sync.Mutex
	indexes map[string]cachedIndex
}

type cachedIndex struct {
	index *bucketindex.Index
	read  time.Time
}

// NewBucketIndexFinder returns a finder reading the bucket indexes in bkt.
func NewBucketIndexFinder(bkt bucket.Reader, maxAge, maxStale time.Duration) *BucketIndexFinder {
	return &BucketIndexFinder{bkt: bkt, maxAge: maxAge, maxStale: maxStale, now: time.Now, indexes: map[string]cachedIndex{}}
}

// Blocks implements BlocksFinder. A tenant without a bucket index has no
// blocks yet.
func (f *BucketIndexFinder) Blocks(ctx context.Context, tenantID string, mint, maxt int64) ([]bucketindex.Block, error) {
	now := f.now()
	f.mu.Lock()
	c, ok := f.indexes[tenantID]
	f.mu.Unlock()
	if !ok || now.Sub(c.read) >= f.maxAge {
		x, err := bucketindex.ReadIndex(ctx, f.bkt, tenantID)
		switch {
		case bucket.IsNotFound(err):
			x = &bucketindex.Index{}
		case err != nil:
			return nil, rpc.Errorf(rpc.CauseUnavailable, "read the bucket index of tenant %q: %v", tenantID, err)
		}
		c = cachedIndex{index: x, read: now}
		f.mu.Lock()
		f.indexes[tenantID] = c
		f.mu.Unlock()
	}
	if f.maxStale > 0 && c.index.UpdatedAt > 0 {
		if age := now.Sub(time.Unix(c.index.UpdatedAt, 0)); age > f.maxStale {
			return nil, rpc.Errorf(rpc.CauseUnavailable, "the bucket index of tenant %q was last updated %s ago, longer than -querier.bucket-index-max-stale-period (%s): blocks the compactor made or deleted since would be missing from the answer; check that a compactor runs", tenantID, age.Round(time.Second), f.maxStale)
		}
	}
	return c.index.Queryable(mint, maxt), nil
}

// RingStores finds store-gateways on their ring and reaches them through a
// pool.
type RingStores struct {
	ring dskitring.ReadRing
	pool *client.Pool
}

// NewRingStores returns the store-gateways of r, reached through pool.
func NewRingStores(r dskitring.ReadRing, pool *client.Pool) *RingStores {
	return &RingStores{ring: r, pool: pool}
}

// BlocksRead is the ring operation of reading a block: healthy ACTIVE
// store-gateways only.
var BlocksRead = dskitring.NewOp([]dskitring.InstanceState{dskitring.ACTIVE}, nil)

// Replicas implements BlockStores; names are addresses.
func (s *RingStores) Replicas(tenantID string, id ulid.ULID) ([]string, error) {
	rs, err := s.ring.Get(ring.BlockToken(tenantID, id.String()), BlocksRead, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	addrs := rs.GetAddresses()
	// Spread the first try over the replicas, the same for a block each time.
	if n := len(addrs); n > 1 {
		k := int(id.Time() % uint64(n))
		addrs = append(addrs[k:], addrs[:k]...)
	}
	return addrs, nil
}

// Store implements BlockStores.
func (s *RingStores) Store(addr string) (BlockStore, error) {
	c, err := s.pool.GetClientFor(addr)
	if err != nil {
		return nil, err
	}
	return c.(*rpc.PooledStoreGateway), nil
}

// LocalStore makes the store-gateway of this process the one replica of
// every block.
func LocalStore(s BlockStore) BlockStores { return localStore{s} }

type localStore struct{ s BlockStore }

func (localStore) Replicas(string, ulid.ULID) ([]string, error) { return []string{"local"}, nil }
func (l localStore) Store(string) (BlockStore, error)           { return keptFrames{l.s}, nil }

// keptFrames hands on copies of the frames a store-gateway in this process
// sends: it reuses a frame's memory for the next at once (a gRPC server
// has encoded it by then), and the querier reads a frame while the next
// is handed over. Label strings and chunk bytes are not reused, so the copy is of
// the frame's structure only.
type keptFrames struct{ BlockStore }

func (k keptFrames) Series(ctx context.Context, req *rpc.BlocksQuery, recv func(*prompb.ChunkedReadResponse) error) error {
	return k.BlockStore.Series(ctx, req, func(f *prompb.ChunkedReadResponse) error {
		series := make([]prompb.ChunkedSeries, len(f.ChunkedSeries))
		kept := &prompb.ChunkedReadResponse{ChunkedSeries: make([]*prompb.ChunkedSeries, len(f.ChunkedSeries)), QueryIndex: f.QueryIndex}
		for i, cs := range f.ChunkedSeries {
			series[i] = prompb.ChunkedSeries{Labels: slices.Clone(cs.Labels), Chunks: slices.Clone(cs.Chunks)}
			kept.ChunkedSeries[i] = &series[i]
		}
		return recv(kept)
	})
}
