package queryable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// fakeStore stands in for a store-gateway: it holds some blocks, each a
// TSDB, and answers for all requested blocks or none.
type fakeStore struct {
	blocks map[string]*tsdb.DB
	fail   error
	// failAfter, if set, fails the stream after that many frames.
	failAfter int
	mu        sync.Mutex
	asked     [][]string
}

func (s *fakeStore) Series(ctx context.Context, req *rpc.BlocksQuery, recv func(*prompb.ChunkedReadResponse) error) error {
	s.mu.Lock()
	s.asked = append(s.asked, req.BlockIDs)
	s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	var missing []string
	var qs []storage.ChunkQuerier
	for _, id := range req.BlockIDs {
		db, ok := s.blocks[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		q, err := db.ChunkQuerier(req.Query.StartTimestampMs, req.Query.EndTimestampMs)
		if err != nil {
			return err
		}
		qs = append(qs, q)
	}
	if len(missing) > 0 {
		return rpc.BlocksNotHeld("team-a", len(req.BlockIDs), missing)
	}
	q := storage.NewMergeChunkQuerier(qs, nil, storage.NewCompactingChunkSeriesMerger(storage.ChainedSeriesMerge))
	defer q.Close()
	sent := 0
	return rpc.ServeChunkQuery(ctx, q, req.Query, func(f *prompb.ChunkedReadResponse) error {
		if s.failAfter > 0 && sent == s.failAfter {
			return rpc.Errorf(rpc.CauseUnavailable, "store-gateway restarted")
		}
		sent++
		return overTheWire(recv)(f)
	})
}

// overTheWire hands send a copy of each frame, as gRPC would: the frames
// of rpc.ServeChunkQuery are reused once sent.
func overTheWire(send func(*prompb.ChunkedReadResponse) error) func(*prompb.ChunkedReadResponse) error {
	return func(f *prompb.ChunkedReadResponse) error {
		b, err := f.Marshal()
		if err != nil {
			return err
		}
		var received prompb.ChunkedReadResponse
		if err := received.Unmarshal(b); err != nil {
			return err
		}
		return send(&received)
	}
}

func (s *fakeStore) LabelNames(context.Context, *rpc.BlocksLabelsRequest) ([]string, error) {
	return []string{"__name__"}, s.fail
}

func (s *fakeStore) LabelValues(context.Context, *rpc.BlocksLabelsRequest) ([]string, error) {
	return []string{"up"}, s.fail
}

type fakeStores struct {
	replicas map[ulid.ULID][]string
	stores   map[string]*fakeStore
}

func (f *fakeStores) Replicas(_ string, id ulid.ULID) ([]string, error) { return f.replicas[id], nil }
func (f *fakeStores) Store(name string) (BlockStore, error)             { return f.stores[name], nil }

type fixedFinder []bucketindex.Block

func (f fixedFinder) Blocks(_ context.Context, _ string, mint, maxt int64) ([]bucketindex.Block, error) {
	var out []bucketindex.Block
	for _, b := range f {
		if b.Overlaps(mint, maxt) {
			out = append(out, b)
		}
	}
	return out, nil
}

// blockDB is a TSDB holding up{job=...} every 15s in [from, to].
func blockDB(t *testing.T, from, to int64, jobs ...string) *tsdb.DB {
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	app := db.Appender(context.Background())
	for ts := from; ts <= to; ts += 15_000 {
		for _, j := range jobs {
			_, err := app.Append(0, labels.FromStrings("__name__", "up", "job", j), ts, float64(ts/15_000))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	return db
}

func timesBetween(from, to int64) []int64 {
	var out []int64
	for ts := from; ts <= to; ts += 15_000 {
		out = append(out, ts)
	}
	return out
}

func TestBlocksRetryReplicasAndNeverReturnHoles(t *testing.T) {
	idA, idB := ulid.MustNew(1, nil), ulid.MustNew(2, nil)
	const hour = int64(time.Hour / time.Millisecond)
	dbA := blockDB(t, t0, t0+2*hour-15_000, "a")
	dbB := blockDB(t, t0+2*hour, t0+4*hour, "a", "b")
	finder := fixedFinder{
		{ID: idA, MinTime: t0, MaxTime: t0 + 2*hour},
		{ID: idB, MinTime: t0 + 2*hour, MaxTime: t0 + 4*hour + 1},
	}
	for _, tc := range []struct {
		name     string
		stores   map[string]*fakeStore
		replicas map[ulid.ULID][]string
		wantErr  string
	}{{
		name: "first replica down",
		stores: map[string]*fakeStore{
			"sg1": {fail: rpc.Errorf(rpc.CauseUnavailable, "connection refused")},
			"sg2": {blocks: map[string]*tsdb.DB{idA.String(): dbA, idB.String(): dbB}},
		},
		replicas: map[ulid.ULID][]string{idA: {"sg1", "sg2"}, idB: {"sg2", "sg1"}},
	}, {
		name: "first replica has not loaded the block yet",
		stores: map[string]*fakeStore{
			"sg1": {blocks: map[string]*tsdb.DB{idB.String(): dbB}},
			"sg2": {blocks: map[string]*tsdb.DB{idA.String(): dbA}},
		},
		replicas: map[ulid.ULID][]string{idA: {"sg1", "sg2"}, idB: {"sg1", "sg2"}},
	}, {
		name: "no replica holds a block",
		stores: map[string]*fakeStore{
			"sg1": {blocks: map[string]*tsdb.DB{idB.String(): dbB}},
			"sg2": {fail: errors.New("boom")},
		},
		replicas: map[ulid.ULID][]string{idA: {"sg1", "sg2"}, idB: {"sg1", "sg2"}},
		wantErr:  "1 blocks of tenant \"team-a\" could not be queried",
	}, {
		name:     "a bad query is not retried",
		stores:   map[string]*fakeStore{"sg1": {fail: rpc.Errorf(rpc.CauseBadData, "bad regexp")}, "sg2": {}},
		replicas: map[ulid.ULID][]string{idA: {"sg1", "sg2"}, idB: {"sg1", "sg2"}},
		wantErr:  "bad regexp",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := NewBlocks(finder, &fakeStores{replicas: tc.replicas, stores: tc.stores}).Querier(math.MinInt64, math.MaxInt64)
			require.NoError(t, err)
			ss := q.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
			if tc.wantErr != "" {
				require.False(t, ss.Next())
				require.ErrorContains(t, ss.Err(), tc.wantErr)
				if tc.name == "a bad query is not retried" {
					require.Empty(t, tc.stores["sg2"].asked)
				}
				return
			}
			require.Equal(t, map[string][]int64{
				`{__name__="up", job="a"}`: timesBetween(t0, t0+4*hour),
				`{__name__="up", job="b"}`: timesBetween(t0+2*hour, t0+4*hour),
			}, samplesOf(t, ss))
		})
	}
}

func TestSplitAsksEachSourceForItsWindow(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	now := t0 + 24*hour
	// The ingesters hold the last 14h, the bucket everything but the last 2h;
	// where both hold data it must count once.
	ingesters := blockDB(t, now-14*hour, now, "a")
	id := ulid.MustNew(1, nil)
	store := &fakeStore{blocks: map[string]*tsdb.DB{id.String(): blockDB(t, t0, now-2*hour, "a")}}
	blocks := NewBlocks(fixedFinder{{ID: id, MinTime: t0, MaxTime: now - 2*hour + 1}}, &fakeStores{
		replicas: map[ulid.ULID][]string{id: {"sg"}}, stores: map[string]*fakeStore{"sg": store},
	})
	for _, tc := range []struct {
		name                        string
		ingestersWithin, storeAfter time.Duration
		from, to                    int64
		wantStoreAsked              bool
	}{
		{"both, overlapping", 13 * time.Hour, 0, t0, now, true},
		{"recent only: the store is not asked", 13 * time.Hour, 12 * time.Hour, now - hour, now, false},
		{"old only: from the store", 13 * time.Hour, 12 * time.Hour, t0, t0 + hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store.asked = nil
			s := NewSplit(ingesters, blocks, tc.ingestersWithin, tc.storeAfter)
			s.now = func() time.Time { return time.UnixMilli(now) }
			q, err := s.Querier(tc.from, tc.to)
			require.NoError(t, err)
			defer q.Close()
			got := samplesOf(t, q.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "a")))
			require.Equal(t, map[string][]int64{`{__name__="up", job="a"}`: timesBetween(tc.from, tc.to)}, got)
			require.Equal(t, tc.wantStoreAsked, len(store.asked) > 0)
		})
	}
}

// xorChunk is a chunk of a sample every 15s in [from, to], valued its time.
func xorChunk(t *testing.T, from, to int64) prompb.Chunk {
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	require.NoError(t, err)
	for ts := from; ts <= to; ts += 15_000 {
		app.Append(0, ts, float64(ts))
	}
	return prompb.Chunk{MinTimeMs: from, MaxTimeMs: to, Type: prompb.Chunk_XOR, Data: c.Bytes()}
}

// TestOverlappingChunksOfOneSeriesMerge: a store-gateway sends the chunks of
// overlapping blocks (replicas not yet compacted) as one series; every
// sample must come once, in order.
func TestOverlappingChunksOfOneSeriesMerge(t *testing.T) {
	chunk := func(from, to int64) prompb.Chunk { return xorChunk(t, from, to) }
	series := []*prompb.ChunkedSeries{{
		Labels: []prompb.Label{{Name: "__name__", Value: "up"}},
		// Three replicas of [0, 120s], and one of them also has [135s, 180s].
		Chunks: []prompb.Chunk{chunk(0, 120_000), chunk(0, 120_000), chunk(0, 120_000), chunk(135_000, 180_000)},
	}}
	got := samplesOf(t, storage.NewSeriesSetFromChunkSeriesSet(&chunkSeriesSet{next: frames(series), cur: -1}))
	require.Equal(t, map[string][]int64{`{__name__="up"}`: timesBetween(0, 180_000)}, got)
}

// An index the compactor has not written for longer than the stale period
// fails the query (503) instead of answering without newer blocks; a fresh
// one, or a tenant without one, is fine.
func TestBucketIndexFinderRefusesAStaleIndex(t *testing.T) {
	bkt, err := bucket.NewFilesystem(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	written := time.Unix(1_700_000_000, 0)
	require.NoError(t, bucketindex.WriteIndex(ctx, bkt, "team-a", &bucketindex.Index{Version: bucketindex.IndexVersion, UpdatedAt: written.Unix()}))

	for _, tc := range []struct {
		name    string
		tenant  string
		now     time.Time
		wantErr bool
	}{
		{name: "fresh", tenant: "team-a", now: written.Add(59 * time.Minute)},
		{name: "stale", tenant: "team-a", now: written.Add(61 * time.Minute), wantErr: true},
		{name: "no index yet", tenant: "team-b", now: written.Add(24 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewBucketIndexFinder(bkt, time.Minute, time.Hour)
			f.now = func() time.Time { return tc.now }
			_, err := f.Blocks(ctx, tc.tenant, 0, math.MaxInt64)
			if !tc.wantErr {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err))
			require.Contains(t, err.Error(), "-querier.bucket-index-max-stale-period")
		})
	}
}

// A store-gateway that fails in the middle of its stream is replaced by
// the blocks' next replica, which carries on after the last series given:
// every series once, every sample.
func TestBlocksFailOverMidStream(t *testing.T) {
	idA, idB := ulid.MustNew(1, nil), ulid.MustNew(2, nil)
	const hour = int64(time.Hour / time.Millisecond)
	var jobs []string
	for i := range 3000 {
		jobs = append(jobs, fmt.Sprintf("%05d-%s", i, strings.Repeat("x", 1000))) // several frames
	}
	dbA := blockDB(t, t0, t0+15_000, jobs...)
	dbB := blockDB(t, t0+2*hour, t0+2*hour+15_000, jobs...)
	held := map[string]*tsdb.DB{idA.String(): dbA, idB.String(): dbB}
	stores := map[string]*fakeStore{"sg1": {blocks: held, failAfter: 1}, "sg2": {blocks: held}}
	finder := fixedFinder{{ID: idA, MinTime: t0, MaxTime: t0 + 2*hour}, {ID: idB, MinTime: t0 + 2*hour, MaxTime: t0 + 4*hour}}
	q, err := NewBlocks(finder, &fakeStores{
		replicas: map[ulid.ULID][]string{idA: {"sg1", "sg2"}, idB: {"sg1", "sg2"}},
		stores:   stores,
	}).Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	got := samplesOf(t, q.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")))
	require.Len(t, got, len(jobs))
	for name, ts := range got {
		require.Equal(t, []int64{t0, t0 + 15_000, t0 + 2*hour, t0 + 2*hour + 15_000}, ts, name)
	}
	require.Len(t, stores["sg1"].asked, 1)
	require.Len(t, stores["sg2"].asked, 1, "the blocks were asked again of the other replica")
}

// frames returns a next function over frames already received.
func frames(fs ...[]*prompb.ChunkedSeries) func() ([]*prompb.ChunkedSeries, bool, error) {
	return func() ([]*prompb.ChunkedSeries, bool, error) {
		if len(fs) == 0 {
			return nil, false, nil
		}
		f := fs[0]
		fs = fs[1:]
		return f, true, nil
	}
}

// Sources send chunks whole: the merge gives only the samples in the range
// the querier was asked for, whether a series' chunks overlap or not.
func TestMergeTrimsWholeChunksToTheRange(t *testing.T) {
	chunk := func(from, to int64) prompb.Chunk { return xorChunk(t, from, to) }
	for _, tc := range []struct {
		name     string
		replicas [][]prompb.Chunk
	}{
		{"replicas agree", [][]prompb.Chunk{{chunk(0, 120_000), chunk(135_000, 300_000)}, {chunk(0, 120_000), chunk(135_000, 300_000)}}},
		{"replicas overlap", [][]prompb.Chunk{{chunk(0, 120_000), chunk(135_000, 300_000)}, {chunk(0, 300_000)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sets []storage.ChunkSeriesSet
			for _, chks := range tc.replicas {
				sets = append(sets, &chunkSeriesSet{next: frames([]*prompb.ChunkedSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "up"}}, Chunks: chks}}), cur: -1})
			}
			got := samplesOf(t, mergeReplicas(sets, 30_000, 150_000))
			require.Equal(t, map[string][]int64{`{__name__="up"}`: timesBetween(30_000, 150_000)}, got)
		})
	}
}

// reusingStore sends its frames as rpc.ServeChunkQuery does: one frame
// object, emptied and refilled for the next.
type reusingStore struct{ fakeStore }

func (*reusingStore) Series(_ context.Context, _ *rpc.BlocksQuery, recv func(*prompb.ChunkedReadResponse) error) error {
	frame := &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{{}}}
	for _, name := range []string{"first", "second"} {
		*frame.ChunkedSeries[0] = prompb.ChunkedSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}, Chunks: []prompb.Chunk{{MinTimeMs: 1, MaxTimeMs: 2}}}
		if err := recv(frame); err != nil {
			return err
		}
		clear(frame.ChunkedSeries[0].Labels)
	}
	return nil
}

// The store-gateway of this process reuses a frame once sent; the querier
// keeps frames until merged: LocalStore hands it copies.
func TestLocalStoreKeepsCopiesOfReusedFrames(t *testing.T) {
	store, err := LocalStore(&reusingStore{}).Store("local")
	require.NoError(t, err)
	var kept []*prompb.ChunkedReadResponse
	require.NoError(t, store.Series(ctxA, &rpc.BlocksQuery{}, func(f *prompb.ChunkedReadResponse) error {
		kept = append(kept, f)
		return nil
	}))
	require.Len(t, kept, 2)
	require.Equal(t, "first", kept[0].ChunkedSeries[0].Labels[0].Value)
	require.Equal(t, "second", kept[1].ChunkedSeries[0].Labels[0].Value)
}
