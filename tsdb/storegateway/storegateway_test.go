package storegateway

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/shard"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// dskit's memcached client starts a resolv.conf reloader (one
		// goroutine per client) that its Stop does not stop, and that it
		// gives no way to reach.
		goleak.IgnoreTopFunction("github.com/grafana/dskit/dns/miekgdns.(*Resolver).loop"))
}

const hour = int64(time.Hour / time.Millisecond)

// fixture is a bucket with two blocks of tenant "t1" ([0, 2h) with series
// 0-39 and [2h, 4h) with series 20-59) and one block of tenant "t2".
type fixture struct {
	bkt        *bucket.Filesystem
	early      bucketindex.Block
	late       bucketindex.Block
	other      bucketindex.Block
	earlyData  []testSeries
	lateData   []testSeries
	allT1      []testSeries
	t1Blocks   []string
	otherBlock string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	bkt, err := bucket.NewFilesystem(t.TempDir())
	require.NoError(t, err)
	f := &fixture{bkt: bkt}
	f.earlyData = genSeries(0, 40, 0, 2*hour, 15_000)
	f.lateData = genSeries(20, 60, 2*hour, 4*hour, 15_000)
	f.early = buildBlock(t, bkt, "t1", f.earlyData)
	f.late = buildBlock(t, bkt, "t1", f.lateData)
	f.other = buildBlock(t, bkt, "t2", genSeries(100, 105, 0, hour, 15_000))
	writeIndex(t, bkt, "t1", &bucketindex.Index{Blocks: []bucketindex.Block{f.early, f.late}})
	writeIndex(t, bkt, "t2", &bucketindex.Index{Blocks: []bucketindex.Block{f.other}})
	f.allT1 = append(slices.Clone(f.earlyData), f.lateData...)
	f.t1Blocks = []string{f.early.ID.String(), f.late.ID.String()}
	f.otherBlock = f.other.ID.String()
	return f
}

func blockFiles(t *testing.T, dir, tenantID string, id ulid.ULID) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, tenantID, id.String()))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSyncDownloadsOwnedIndexesAndDropsDisowned(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	var mu sync.Mutex
	disowned := map[ulid.ULID]bool{f.late.ID: true}
	owns := func(_ string, id ulid.ULID) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return !disowned[id], nil
	}
	sg, reg := newStoreGateway(t, testConfig(t, dir), f.bkt, Options{OwnsBlock: owns})
	require.NoError(t, sg.SyncOnce(context.Background()))

	require.Equal(t, []string{"index", "meta.json"}, blockFiles(t, dir, "t1", f.early.ID), "only index and meta.json are downloaded")
	require.Equal(t, []string{"index", "meta.json"}, blockFiles(t, dir, "t2", f.other.ID))
	require.Nil(t, blockFiles(t, dir, "t1", f.late.ID), "a block owned by another store-gateway is not downloaded")
	require.Equal(t, 2.0, testutil.ToFloat64(sg.metrics.blocksLoaded))
	require.Equal(t, 0.0, testutil.ToFloat64(sg.metrics.blocksOpen), "indexes open lazily")
	require.Positive(t, testutil.ToFloat64(sg.metrics.indexBytes))

	// Ownership moves: the early block goes, the late one comes.
	mu.Lock()
	disowned = map[ulid.ULID]bool{f.early.ID: true}
	mu.Unlock()
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Nil(t, blockFiles(t, dir, "t1", f.early.ID), "a disowned block is dropped from disk")
	require.Equal(t, []string{"index", "meta.json"}, blockFiles(t, dir, "t1", f.late.ID))

	// Marked for deletion: a loaded block stays, for queriers whose copy of
	// the bucket index predates the mark; one not loaded is not loaded.
	mu.Lock()
	disowned = map[ulid.ULID]bool{}
	mu.Unlock()
	marks := []bucketindex.DeletionMark{{ID: f.early.ID, DeletionTime: time.Now().Unix()}, {ID: f.late.ID, DeletionTime: time.Now().Unix()}}
	writeIndex(t, f.bkt, "t1", &bucketindex.Index{Blocks: []bucketindex.Block{f.early, f.late}, DeletionMarks: marks})
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Equal(t, []string{"index", "meta.json"}, blockFiles(t, dir, "t1", f.late.ID), "a loaded block stays while marked")
	require.Nil(t, blockFiles(t, dir, "t1", f.early.ID), "a marked block is not loaded")

	// Gone from the index: dropped.
	writeIndex(t, f.bkt, "t1", &bucketindex.Index{})
	writeIndex(t, f.bkt, "t2", &bucketindex.Index{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Nil(t, blockFiles(t, dir, "t1", f.late.ID))
	require.Nil(t, blockFiles(t, dir, "t2", f.other.ID))
	require.Equal(t, 0.0, testutil.ToFloat64(sg.metrics.blocksLoaded))
	require.Equal(t, 0.0, testutil.ToFloat64(sg.metrics.syncFailures))
	n, err := testutil.GatherAndCount(reg, "isobar_store_gateway_syncs_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestSyncKeepsBlocksOfTenantWithUnreadableIndex(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	sg, _ := newStoreGateway(t, testConfig(t, dir), f.bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Len(t, sg.heldBlocks("t1"), 2)

	require.NoError(t, f.bkt.Upload(context.Background(), "t1/"+bucketindex.IndexObject, bytesReader("not gzip")))
	err := sg.SyncOnce(context.Background())
	require.ErrorContains(t, err, `bucket index of tenant "t1"`)
	require.Len(t, sg.heldBlocks("t1"), 2, "a transient failure must not drop blocks")
	require.Equal(t, 1.0, testutil.ToFloat64(sg.metrics.syncFailures))
}

func TestSeriesReturnsExactlyTheSamplesWritten(t *testing.T) {
	f := newFixture(t)
	sg, _ := newStoreGateway(t, testConfig(t, t.TempDir()), f.bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)

	name := labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric")
	for _, tc := range []struct {
		name       string
		mint, maxt int64
		ms         []*labels.Matcher
	}{
		{name: "everything", mint: 0, maxt: 4 * hour, ms: []*labels.Matcher{name}},
		{name: "range cutting chunks in both blocks", mint: hour + 7*60_000 + 3, maxt: 3*hour - 11*60_000, ms: []*labels.Matcher{name}},
		{name: "only the late block", mint: 2*hour + 1, maxt: 5 * hour, ms: []*labels.Matcher{name}},
		{name: "regex", mint: 0, maxt: 4 * hour, ms: []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "job", "job-[01]")}},
		{name: "negative regex and not-equal", mint: 30 * 60_000, maxt: 3 * hour, ms: []*labels.Matcher{
			name,
			labels.MustNewMatcher(labels.MatchNotRegexp, "instance", "i-0002.*"),
			labels.MustNewMatcher(labels.MatchNotEqual, "job", "job-2"),
		}},
		{name: "no match", mint: 0, maxt: 4 * hour, ms: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "nope")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := query(t, c, "t1", f.t1Blocks, tc.mint, tc.maxt, tc.ms...)
			require.NoError(t, err)
			want := expect(f.allT1, tc.mint, tc.maxt, tc.ms...)
			require.Equal(t, len(want), len(res.series))
			for k, v := range want {
				require.Equal(t, v, res.series[k], "samples of %s", k)
			}
			require.True(t, slices.IsSortedFunc(res.order, labels.Compare), "series are sorted by labels")
		})
	}

	// Series in both blocks come once, with chunks of both.
	res, err := query(t, c, "t1", f.t1Blocks, 0, 4*hour, labels.MustNewMatcher(labels.MatchEqual, "instance", "i-00025"))
	require.NoError(t, err)
	require.Len(t, res.order, 1)
	require.Len(t, res.series[res.order[0].String()], 2*int(2*hour/15_000))

	// Another tenant's block is not found under this tenant.
	_, err = query(t, c, "t1", []string{f.otherBlock}, 0, 4*hour, name)
	require.Equal(t, []string{f.otherBlock}, rpc.MissingBlocks(err))
	res, err = query(t, c, "t2", []string{f.otherBlock}, 0, 4*hour, name)
	require.NoError(t, err)
	require.Len(t, res.series, 5)
}

// TestSeriesOfAShard answers a query-frontend's shard matcher with the
// series whose labels hash to the shard: the shards of a query hold each
// of its series exactly once.
func TestSeriesOfAShard(t *testing.T) {
	f := newFixture(t)
	sg, _ := newStoreGateway(t, testConfig(t, t.TempDir()), f.bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)

	name := labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric")
	want := expect(f.allT1, 0, 4*hour, name)
	const shards = 4
	seen := map[string]int{}
	for i := range uint64(shards) {
		res, err := query(t, c, "t1", f.t1Blocks, 0, 4*hour, name, shard.Shard{Index: i, Count: shards}.Matcher())
		require.NoError(t, err)
		require.NotEmpty(t, res.order, "shard %d of %d", i, shards)
		require.Less(t, len(res.order), len(want), "shard %d holds a part", i)
		for _, lset := range res.order {
			require.Equal(t, i, labels.StableHash(lset)%shards, "%s is in shard %d", lset, i)
			require.Equal(t, want[lset.String()], res.series[lset.String()], "samples of %s", lset)
			seen[lset.String()]++
		}
	}
	require.Len(t, seen, len(want))
	for k, n := range seen {
		require.Equal(t, 1, n, "%s in %d shards", k, n)
	}
}

func TestSeriesFailsForBlocksNotHeld(t *testing.T) {
	f := newFixture(t)
	owns := func(_ string, id ulid.ULID) (bool, error) { return id != f.late.ID, nil }
	sg, _ := newStoreGateway(t, testConfig(t, t.TempDir()), f.bkt, Options{OwnsBlock: owns})
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)

	unknown := ulid.MustNew(1, nil).String()
	_, err := query(t, c, "t1", []string{f.early.ID.String(), f.late.ID.String(), unknown}, 0, 4*hour, labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric"))
	require.Error(t, err)
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err))
	require.ElementsMatch(t, []string{f.late.ID.String(), unknown}, rpc.MissingBlocks(err))
	require.Contains(t, err.Error(), f.late.ID.String())
	require.Contains(t, err.Error(), unknown)

	ctx := tenant.With(context.Background(), "t1")
	_, err = c.LabelNames(ctx, &rpc.BlocksLabelsRequest{BlockIDs: []string{unknown}})
	require.Equal(t, []string{unknown}, rpc.MissingBlocks(err))

	_, err = query(t, c, "t1", []string{"not-a-ulid"}, 0, 1)
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	_, err = query(t, c, "t1", nil, 0, 1)
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	require.Equal(t, 0, sg.openBlocks(), "failed calls leave nothing open")
}

func TestOpenReadersAreBoundedAndReopen(t *testing.T) {
	bkt, err := bucket.NewFilesystem(t.TempDir())
	require.NoError(t, err)
	const nBlocks, maxOpen = 7, 2
	var blocks []bucketindex.Block
	var data [][]testSeries
	for i := 0; i < nBlocks; i++ {
		d := genSeries(i*5, i*5+5, int64(i)*hour, int64(i+1)*hour, 60_000)
		data = append(data, d)
		blocks = append(blocks, buildBlock(t, bkt, "t", d))
	}
	writeIndex(t, bkt, "t", &bucketindex.Index{Blocks: blocks})
	cfg := testConfig(t, t.TempDir())
	cfg.MaxOpenBlocks = maxOpen
	sg, _ := newStoreGateway(t, cfg, bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)

	maxSeen := 0
	name := labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric")
	for round := 0; round < 3; round++ {
		for i, b := range blocks {
			res, err := query(t, c, "t", []string{b.ID.String()}, 0, int64(nBlocks)*hour, name)
			require.NoError(t, err)
			require.Equal(t, expect(data[i], 0, int64(nBlocks)*hour), res.series, "block %d, round %d", i, round)
			maxSeen = max(maxSeen, sg.openBlocks())
			require.LessOrEqual(t, sg.openBlocks(), maxOpen)
		}
	}
	t.Logf("queried %d blocks 3 times with -store-gateway.max-open-blocks=%d: at most %d index readers open", nBlocks, maxOpen, maxSeen)
	require.Equal(t, maxOpen, maxSeen)

	// One query over more blocks than the limit works; the extra readers
	// close when it ends.
	var ids []string
	var all []testSeries
	for i, b := range blocks {
		ids = append(ids, b.ID.String())
		all = append(all, data[i]...)
	}
	res, err := query(t, c, "t", ids, 0, int64(nBlocks)*hour, name)
	require.NoError(t, err)
	require.Equal(t, expect(all, 0, int64(nBlocks)*hour), res.series)
	require.Equal(t, maxOpen, sg.openBlocks())
	require.Equal(t, float64(maxOpen), testutil.ToFloat64(sg.metrics.blocksOpen))

	// Concurrent queries: every one succeeds, and the limit holds after.
	var wg sync.WaitGroup
	errs := make(chan error, 4*nBlocks)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, b := range blocks {
				res, err := query(t, c, "t", []string{b.ID.String()}, 0, int64(nBlocks)*hour, name)
				if err == nil && len(res.series) != len(data[i]) {
					err = os.ErrInvalid
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, sg.openBlocks(), maxOpen)
}

func TestRestartReusesLocalIndexFiles(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	cb := newCountingBucket(f.bkt)
	sg, _ := newStoreGateway(t, testConfig(t, dir), cb, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Equal(t, 6, cb.blockGets(), "index and meta.json of 3 blocks")
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Equal(t, 6, cb.blockGets(), "a second sync downloads nothing")
	require.NoError(t, sg.stopping(nil))

	// A leftover temporary file and a stray block are cleaned up.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t1", f.early.ID.String(), ".tmp-index123"), []byte("x"), 0o644))
	stray := filepath.Join(dir, "t1", ulid.MustNew(5, nil).String())
	require.NoError(t, os.MkdirAll(stray, 0o755))

	cb2 := newCountingBucket(f.bkt)
	sg2, _ := newStoreGateway(t, testConfig(t, dir), cb2, Options{})
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), sg2))
	t.Cleanup(func() { require.NoError(t, services.StopAndAwaitTerminated(context.Background(), sg2)) })
	require.Equal(t, 0, cb2.blockGets(), "a restart reuses the index files on disk")
	require.Len(t, sg2.heldBlocks("t1"), 2)
	require.Equal(t, []string{"index", "meta.json"}, blockFiles(t, dir, "t1", f.early.ID))
	require.NoDirExists(t, stray)

	// A corrupt local index is downloaded again.
	require.NoError(t, sg2.stopping(nil))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t1", f.late.ID.String(), "index"), []byte("garbage"), 0o644))
	cb3 := newCountingBucket(f.bkt)
	sg3, _ := newStoreGateway(t, testConfig(t, dir), cb3, Options{})
	require.NoError(t, sg3.SyncOnce(context.Background()))
	require.Equal(t, 2, cb3.blockGets())
	res, err := query(t, serve(t, sg3), "t1", f.t1Blocks, 0, 4*hour, labels.MustNewMatcher(labels.MatchRegexp, "job", ".+"))
	require.NoError(t, err)
	require.Equal(t, expect(f.allT1, 0, 4*hour), res.series)
}

func TestChunkCacheHitsOnRepeatedQuery(t *testing.T) {
	f := newFixture(t)
	cb := newCountingBucket(f.bkt)
	sg, _ := newStoreGateway(t, testConfig(t, t.TempDir()), cb, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)
	m := labels.MustNewMatcher(labels.MatchEqual, "job", "job-1")

	first, err := query(t, c, "t1", f.t1Blocks, 0, 4*hour, m)
	require.NoError(t, err)
	reads := cb.rangeReads()
	require.Positive(t, reads)
	require.Less(t, reads, first.chunks/10, "chunk reads are coalesced: %d reads for %d chunks", reads, first.chunks)
	require.Equal(t, 0.0, testutil.ToFloat64(sg.metrics.cacheHits))
	require.Equal(t, float64(first.chunks), testutil.ToFloat64(sg.metrics.cacheMisses))

	second, err := query(t, c, "t1", f.t1Blocks, 0, 4*hour, m)
	require.NoError(t, err)
	require.Equal(t, first.series, second.series)
	require.Equal(t, reads, cb.rangeReads(), "the second query reads nothing from the bucket")
	require.Equal(t, float64(first.chunks), testutil.ToFloat64(sg.metrics.cacheHits))
	require.Positive(t, testutil.ToFloat64(sg.metrics.cacheBytes))

	// Without a cache every query reads the bucket.
	cfg := testConfig(t, t.TempDir())
	cfg.ChunkCacheSize = 0
	cb2 := newCountingBucket(f.bkt)
	sg2, _ := newStoreGateway(t, cfg, cb2, Options{})
	require.NoError(t, sg2.SyncOnce(context.Background()))
	c2 := serve(t, sg2)
	for range 2 {
		res, err := query(t, c2, "t1", f.t1Blocks, 0, 4*hour, m)
		require.NoError(t, err)
		require.Equal(t, first.series, res.series)
	}
	require.Equal(t, 2*reads, cb2.rangeReads())
}

func TestLabelNamesAndValues(t *testing.T) {
	f := newFixture(t)
	sg, _ := newStoreGateway(t, testConfig(t, t.TempDir()), f.bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)
	ctx := tenant.With(context.Background(), "t1")
	req := func(name string, limit int, ms ...*labels.Matcher) *rpc.BlocksLabelsRequest {
		return &rpc.BlocksLabelsRequest{
			LabelsRequest: rpc.LabelsRequest{Start: 0, End: 4 * hour, Name: name, Limit: limit, Matchers: rpc.ToLabelMatchers(ms)},
			BlockIDs:      f.t1Blocks,
		}
	}

	names, err := c.LabelNames(ctx, req("", 0))
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "instance", "job"}, names)
	names, err = c.LabelNames(ctx, req("", 0, labels.MustNewMatcher(labels.MatchEqual, "job", "nope")))
	require.NoError(t, err)
	require.Empty(t, names)
	names, err = c.LabelNames(ctx, req("", 0, labels.MustNewMatcher(labels.MatchEqual, "job", "job-0")))
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "instance", "job"}, names)

	values, err := c.LabelValues(ctx, req("job", 0))
	require.NoError(t, err)
	require.Equal(t, []string{"job-0", "job-1", "job-2"}, values)
	values, err = c.LabelValues(ctx, req("instance", 0))
	require.NoError(t, err)
	require.Len(t, values, 60, "instances of both blocks, once each")
	require.True(t, slices.IsSorted(values))
	values, err = c.LabelValues(ctx, req("instance", 0, labels.MustNewMatcher(labels.MatchEqual, "job", "job-1")))
	require.NoError(t, err)
	require.Len(t, values, 20)
	values, err = c.LabelValues(ctx, req("instance", 3, labels.MustNewMatcher(labels.MatchRegexp, "instance", "i-0005.")))
	require.NoError(t, err)
	require.Equal(t, []string{"i-00050", "i-00051", "i-00052"}, values)

	// Only blocks overlapping the time range count.
	r := req("instance", 0)
	r.Start, r.End = 0, hour
	values, err = c.LabelValues(ctx, r)
	require.NoError(t, err)
	require.Len(t, values, 40)
}

func TestChunkRecordFormat(t *testing.T) {
	b := &block{blockKey: blockKey{"t", ulid.MustNew(1, nil)}}
	require.Equal(t, "t/"+b.id.String()+"/chunks/000001", segmentName(b, 0))
	require.Equal(t, "t/"+b.id.String()+"/chunks/000003", segmentName(b, 2))

	// uvarint length 2, encoding 1, data, CRC32C over encoding and data.
	rec := []byte{2, 1, 0xaa, 0xbb}
	crc := crcOf([]byte{1, 0xaa, 0xbb})
	rec = append(rec, byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc))
	total, ok, err := chunkLen(rec)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, len(rec), total)
	body, err := decodeChunk(rec)
	require.NoError(t, err)
	require.Equal(t, []byte{1, 0xaa, 0xbb}, body)
	rec[2] ^= 1
	_, err = decodeChunk(rec)
	require.ErrorContains(t, err, "checksum mismatch")
	_, ok, err = chunkLen([]byte{0x80})
	require.NoError(t, err)
	require.False(t, ok, "cut inside the length field")
	_, _, err = chunkLen([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	require.Error(t, err, "longer than any chunk")
}

func TestConfigValidate(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	require.NoError(t, cfg.Validate())
	require.Equal(t, 5*time.Minute, cfg.SyncInterval)
	require.Equal(t, 256, cfg.MaxOpenBlocks)
	require.Equal(t, int64(256<<20), cfg.ChunkCacheSize)
	bad := cfg
	bad.MaxOpenBlocks = 0
	require.ErrorContains(t, bad.Validate(), "max-open-blocks")
	bad = cfg
	bad.Dir = ""
	require.Error(t, bad.Validate())
	_, err := New(bad, nil, Options{}, nil, nil)
	require.Error(t, err)
}

func TestChunksLongerThanTheGuessAreReadWhole(t *testing.T) {
	f := newFixture(t)
	cfg := testConfig(t, t.TempDir())
	cfg.ChunkCacheSize = 0
	cb := newCountingBucket(f.bkt)
	sg, _ := newStoreGateway(t, cfg, cb, Options{})
	// One byte past the last chunk's start: the range ends inside its
	// length field, and then inside its data.
	sg.chunkGuess = 1
	require.NoError(t, sg.SyncOnce(context.Background()))
	c := serve(t, sg)
	m := labels.MustNewMatcher(labels.MatchRegexp, "instance", "i-0001.|i-0003.")
	for _, r := range [][2]int64{{0, 4 * hour}, {hour + 1, 3*hour - 1}} {
		res, err := query(t, c, "t1", f.t1Blocks, r[0], r[1], m)
		require.NoError(t, err)
		require.Equal(t, expect(f.allT1, r[0], r[1], m), res.series)
	}
}

func TestDroppedBlockStaysReadableUntilReleased(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	owned := true
	var mu sync.Mutex
	owns := func(_ string, id ulid.ULID) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return owned || id != f.early.ID, nil
	}
	sg, _ := newStoreGateway(t, testConfig(t, dir), f.bkt, Options{OwnsBlock: owns})
	require.NoError(t, sg.SyncOnce(context.Background()))
	ctx := tenant.With(context.Background(), "t1")
	q, err := sg.querier(ctx, []string{f.early.ID.String()}, 0, 2*hour)
	require.NoError(t, err)
	require.Equal(t, 1, sg.openBlocks())

	mu.Lock()
	owned = false
	mu.Unlock()
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Nil(t, blockFiles(t, dir, "t1", f.early.ID), "files go at once")
	require.Equal(t, 1, sg.openBlocks(), "the reader in use stays open")

	// The query in flight still reads its block.
	ss := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "job-0"))
	n := 0
	for ss.Next() {
		n++
	}
	require.NoError(t, ss.Err())
	require.Equal(t, 14, n)
	require.NoError(t, q.Close())
	require.Equal(t, 0, sg.openBlocks(), "the last release closes the dropped block's reader")

	_, err = sg.querier(ctx, []string{f.early.ID.String()}, 0, 2*hour)
	require.Equal(t, []string{f.early.ID.String()}, rpc.MissingBlocks(err))
}

func TestServiceSyncsPeriodically(t *testing.T) {
	f := newFixture(t)
	writeIndex(t, f.bkt, "t1", &bucketindex.Index{Blocks: []bucketindex.Block{f.early}})
	cfg := testConfig(t, t.TempDir())
	cfg.SyncInterval = 20 * time.Millisecond
	sg, _ := newStoreGateway(t, cfg, f.bkt, Options{})
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), sg))
	require.Len(t, sg.heldBlocks("t1"), 1, "the first sync runs before the service is running")

	writeIndex(t, f.bkt, "t1", &bucketindex.Index{Blocks: []bucketindex.Block{f.early, f.late}})
	require.Eventually(t, func() bool { return len(sg.heldBlocks("t1")) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, services.StopAndAwaitTerminated(context.Background(), sg))
}

// TestBlocksNewerThanTheLastSyncLoadOnDemand: a querier that read a newer
// bucket index than the store-gateway's last sync asks for a block the
// store-gateway has not loaded: it loads it there and then, even one
// already marked for deletion, and answers.
func TestBlocksNewerThanTheLastSyncLoadOnDemand(t *testing.T) {
	f := newFixture(t)
	writeIndex(t, f.bkt, "t1", &bucketindex.Index{Blocks: []bucketindex.Block{f.early}})
	sg, _ := newStoreGateway(t, testConfig(t, t.TempDir()), f.bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	require.Equal(t, []ulid.ULID{f.early.ID}, sg.heldBlocks("t1"))
	c := serve(t, sg)

	writeIndex(t, f.bkt, "t1", &bucketindex.Index{
		Blocks:        []bucketindex.Block{f.early, f.late},
		DeletionMarks: []bucketindex.DeletionMark{{ID: f.late.ID, DeletionTime: time.Now().Unix()}},
	})
	m := labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric")
	res, err := query(t, c, "t1", f.t1Blocks, 0, 4*hour, m)
	require.NoError(t, err)
	require.Equal(t, expect(f.allT1, 0, 4*hour, m), res.series)
	require.Equal(t, 1.0, testutil.ToFloat64(sg.metrics.blocksLoadedOnDemand))

	// A block the index does not list is still an error.
	unknown := ulid.MustNew(1, nil).String()
	_, err = query(t, c, "t1", []string{unknown}, 0, 4*hour, m)
	require.Equal(t, []string{unknown}, rpc.MissingBlocks(err))
}
