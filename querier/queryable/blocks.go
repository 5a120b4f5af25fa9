package queryable

import (
	"context"
	"fmt"
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
// an error: a store-gateway, over gRPC or in the same process.
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

func (q *blocksQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	start, end := q.mint, q.maxt
	if hints != nil {
		start, end = max(start, hints.Start), min(end, hints.End)
	}
	req := &prompb.Query{StartTimestampMs: start, EndTimestampMs: end, Matchers: rpc.ToLabelMatchers(ms)}
	var sets []storage.SeriesSet
	err := fetch(ctx, q.b, start, end, func(ctx context.Context, s BlockStore, ids []string) ([]*prompb.ChunkedSeries, error) {
		var series []*prompb.ChunkedSeries
		err := s.Series(ctx, &rpc.BlocksQuery{Query: req, BlockIDs: ids}, func(resp *prompb.ChunkedReadResponse) error {
			series = append(series, resp.ChunkedSeries...)
			return nil
		})
		return series, err
	}, func(series []*prompb.ChunkedSeries) {
		sets = append(sets, storage.NewSeriesSetFromChunkSeriesSet(&chunkSeriesSet{next: frames(series), cur: -1, fetched: fetchCountsFrom(ctx)}))
	})
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	// Blocks overlap (replicas not compacted yet, or with the ingesters):
	// the chained merge keeps one of each sample.
	return storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
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

func (*blocksQuerier) Close() error { return nil }

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
func (l localStore) Store(string) (BlockStore, error)           { return l.s, nil }
