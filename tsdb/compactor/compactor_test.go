package compactor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

const (
	h2  = int64(2 * time.Hour / time.Millisecond)
	h12 = int64(12 * time.Hour / time.Millisecond)
	day = int64(24 * time.Hour / time.Millisecond)
)

// dayStart returns the start, in ms, of the UTC day d days before now.
func dayStart(now time.Time, d int) int64 {
	return now.Add(-time.Duration(d) * 24 * time.Hour).Truncate(24 * time.Hour).UnixMilli()
}

// shipReplicas ships what RF ingesters would for [mint, mint+2h): three
// identical replicas, one that missed every 7th sample, and one that has
// an extra series. It returns the block IDs and the union of their data.
func shipReplicas(t testing.TB, bkt bucket.Bucket, tenant string, mint int64, n int) ([]ulid.ULID, []testSeries, []testSeries) {
	full := genSeries("node", n, mint, mint+h2)
	missing := make([]testSeries, len(full))
	for i, s := range full {
		missing[i].lset = s.lset
		for j, smp := range s.samples {
			if j%7 != 3 {
				missing[i].samples = append(missing[i].samples, smp)
			}
		}
	}
	extra := append(genSeries("extra", 1, mint, mint+h2), full...)
	var ids []ulid.ULID
	for i, data := range [][]testSeries{full, full, full, missing, extra} {
		ids = append(ids, ship(t, bkt, tenant, mint, mint+h2, "ingester-"+string(rune('a'+i)), data))
	}
	return ids, full, extra
}

func TestCompactReplicas(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now().Add(time.Hour)}
	mint := dayStart(clk.t, 3) + 4*h2
	sources, full, extra := shipReplicas(t, bkt, "t1", mint, 20)
	want := union(full, extra)

	reg := prometheus.NewPedanticRegistry()
	c, err := New(defaultConfig(t), bkt, Options{Now: clk.now}, nopLogger, reg)
	require.NoError(t, err)
	require.NoError(t, c.RunOnce(t.Context()))

	x := readIndex(t, bkt, "t1")
	live := liveBlocks(x)
	require.Len(t, live, 1)
	out := live[0]
	require.Equal(t, mint, out.MinTime)
	require.Equal(t, mint+h2, out.MaxTime)
	require.Equal(t, 2, out.Level)
	require.Equal(t, SourceCompactor, out.Source)
	require.ElementsMatch(t, sources, out.Sources)
	require.Equal(t, uint64(want.numSamples()), out.NumSamples)
	require.Equal(t, uint64(len(want)), out.NumSeries)
	require.Equal(t, want, readBlock(t, bkt, "t1", out.ID))

	m, err := bucketindex.ReadMeta(t.Context(), bkt, "t1", out.ID)
	require.NoError(t, err)
	require.Equal(t, bucketindex.Extension{Source: SourceCompactor}, m.Isobar)

	// Every source is marked, and the index lists them with their marks.
	require.Len(t, x.Blocks, len(sources)+1)
	require.Len(t, x.DeletionMarks, len(sources))
	for _, id := range sources {
		require.True(t, x.Marked(id), id)
		ok, err := bkt.Exists(t.Context(), bucketindex.BlockFile("t1", id, bucketindex.DeletionMarkFilename))
		require.NoError(t, err)
		require.True(t, ok)
	}
	// ...exactly as a fresh scan of the bucket sees them.
	scan, err := bucketindex.Update(t.Context(), bkt, "t1", nil, clk.t)
	require.NoError(t, err)
	require.Empty(t, scan.Partial)
	ids := func(bs []bucketindex.Block) (out []ulid.ULID) {
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	require.Equal(t, ids(scan.Index.Blocks), ids(x.Blocks))
	require.ElementsMatch(t, scan.Index.DeletionMarks, x.DeletionMarks)

	require.Equal(t, 5.0, testutil.ToFloat64(c.metrics.blocksCompacted))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.blocksWritten))
	require.Equal(t, float64(want.numSamples()), testutil.ToFloat64(c.metrics.samplesCompacted))
	require.Equal(t, 5.0, testutil.ToFloat64(c.metrics.blocksMarked.WithLabelValues(reasonCompacted)))
	require.Equal(t, float64(clk.t.Unix()), testutil.ToFloat64(c.metrics.lastSuccessfulRun))
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Positive(t, n)

	// Before the deletion delay nothing is deleted, and a cycle with
	// nothing to do changes nothing.
	before := objects(t, bkt)
	clk.advance(11 * time.Hour)
	require.NoError(t, c.RunOnce(t.Context()))
	require.Equal(t, before, objects(t, bkt))
	x2 := readIndex(t, bkt, "t1")
	require.Equal(t, x.Blocks, x2.Blocks)
	require.Equal(t, x.DeletionMarks, x2.DeletionMarks)
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.compactions))

	// After it, the sources are gone.
	clk.advance(time.Hour)
	require.NoError(t, c.RunOnce(t.Context()))
	x3 := readIndex(t, bkt, "t1")
	require.Equal(t, []bucketindex.Block{out}, x3.Blocks)
	require.Empty(t, x3.DeletionMarks)
	require.Equal(t, 5.0, testutil.ToFloat64(c.metrics.blocksDeleted))
	for _, name := range objects(t, bkt) {
		require.True(t, strings.HasPrefix(name, "t1/"+out.ID.String()+"/") || name == "t1/"+bucketindex.IndexObject, name)
	}
	// A fresh scan of the bucket agrees with the index.
	scan, err = bucketindex.Update(t.Context(), bkt, "t1", nil, clk.t)
	require.NoError(t, err)
	require.Empty(t, scan.Partial)
	require.Len(t, scan.Index.Blocks, 1)
	require.Equal(t, out.ID, scan.Index.Blocks[0].ID)
}

func TestConsistencyDelay(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now()}
	mint := dayStart(clk.t, 2)
	ids, _, _ := shipReplicas(t, bkt, "t1", mint, 2)
	c := newTestCompactor(t, bkt, Options{Now: clk.now}, nil)

	require.NoError(t, c.RunOnce(t.Context()))
	x := readIndex(t, bkt, "t1")
	require.Len(t, x.Blocks, len(ids), "replicas uploaded just now must wait")
	require.Empty(t, x.DeletionMarks)

	clk.advance(31 * time.Minute)
	require.NoError(t, c.RunOnce(t.Context()))
	x = readIndex(t, bkt, "t1")
	require.Len(t, liveBlocks(x), 1)
	require.Len(t, x.DeletionMarks, len(ids))
}

func TestCompactLargerRanges(t *testing.T) {
	for name, tc := range map[string]struct {
		windows  int           // 2h windows shipped from the start of a 12h window
		now      time.Duration // after the window's start
		wantLive int
		wantMaxt int64 // of the first live block, after the window's start
		level    int
	}{
		"full window is merged at once": {windows: 6, now: 12*time.Hour + time.Minute, wantLive: 1, wantMaxt: h12, level: 3},
		// Incomplete windows are merged once their end is older than
		// smallest range + consistency delay.
		"old partial window is merged": {windows: 3, now: 14*time.Hour + 31*time.Minute, wantLive: 1, wantMaxt: 3 * h2, level: 3},
		"recent partial window waits":  {windows: 3, now: 14*time.Hour + 29*time.Minute, wantLive: 3, wantMaxt: h2, level: 2},
	} {
		t.Run(name, func(t *testing.T) {
			bkt := newBucket(t)
			// Samples in the future, so that the blocks, uploaded now, are
			// older than the consistency delay at any test time.
			start := time.Now().Add(72 * time.Hour).Truncate(24 * time.Hour).UnixMilli()
			clk := &clock{time.UnixMilli(start).Add(tc.now)}
			var all [][]testSeries
			for w := range tc.windows {
				mint := start + int64(w)*h2
				series := genSeries("node", 3, mint, mint+h2)
				all = append(all, series)
				for r := range 3 {
					ship(t, bkt, "t1", mint, mint+h2, "ingester-"+string(rune('a'+r)), series)
				}
			}
			c := newTestCompactor(t, bkt, Options{Now: clk.now}, nil)
			require.NoError(t, c.RunOnce(t.Context()))

			x := readIndex(t, bkt, "t1")
			live := liveBlocks(x)
			require.Len(t, live, tc.wantLive)
			slices.SortFunc(live, func(a, b bucketindex.Block) int { return int(a.MinTime - b.MinTime) })
			require.Equal(t, start, live[0].MinTime)
			require.Equal(t, start+tc.wantMaxt, live[0].MaxTime)
			require.Equal(t, tc.level, live[0].Level)
			got := seriesData{}
			for _, b := range live {
				for k, s := range readBlock(t, bkt, "t1", b.ID) {
					got[k] = append(got[k], s...)
				}
			}
			require.Equal(t, union(all...), got)
			if tc.wantLive == 1 {
				require.Len(t, live[0].Sources, 3*tc.windows)
				// 3 replicas per window, and the per-window blocks.
				require.Len(t, x.DeletionMarks, 4*tc.windows)
			}

			// The 12h block is alone in its 24h window: nothing more to do.
			before := objects(t, bkt)
			clk.advance(time.Hour)
			require.NoError(t, c.RunOnce(t.Context()))
			if tc.wantLive == 1 {
				require.Equal(t, before, objects(t, bkt))
			}
		})
	}
}

func TestRetention(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now().Add(time.Hour)}
	old := dayStart(clk.t, 4)
	recent := dayStart(clk.t, 1)
	oldID := ship(t, bkt, "short", old, old+h2, "ingester-a", genSeries("n", 2, old, old+h2))
	recentID := ship(t, bkt, "short", recent, recent+h2, "ingester-a", genSeries("n", 2, recent, recent+h2))
	keptID := ship(t, bkt, "forever", old, old+h2, "ingester-a", genSeries("n", 2, old, old+h2))

	c := newTestCompactor(t, bkt, Options{
		Now: clk.now,
		Retention: func(tenant string) time.Duration {
			if tenant == "short" {
				return 72 * time.Hour
			}
			return 0
		},
	}, nil)
	require.NoError(t, c.RunOnce(t.Context()))
	x := readIndex(t, bkt, "short")
	require.True(t, x.Marked(oldID))
	require.False(t, x.Marked(recentID))
	require.Len(t, x.DeletionMarks, 1)
	require.Empty(t, readIndex(t, bkt, "forever").DeletionMarks)
	require.Equal(t, []bucketindex.Block{{ID: keptID}}[0].ID, readIndex(t, bkt, "forever").Blocks[0].ID)
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.blocksMarked.WithLabelValues(reasonRetention)))

	clk.advance(12 * time.Hour)
	require.NoError(t, c.RunOnce(t.Context()))
	x = readIndex(t, bkt, "short")
	require.Len(t, x.Blocks, 1)
	require.Equal(t, recentID, x.Blocks[0].ID)
	require.Empty(t, x.DeletionMarks)
}

func TestPartialBlocks(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now().Add(time.Hour)}
	mint := dayStart(clk.t, 2)

	// An upload that died before meta.json.
	partial := ship(t, bkt, "t1", mint, mint+h2, "ingester-a", genSeries("n", 2, mint, mint+h2))
	require.NoError(t, bkt.Delete(t.Context(), bucketindex.BlockFile("t1", partial, bucketindex.MetaFilename)))
	// A deletion that stopped after meta.json: due since its mark is old.
	halfDeleted := ship(t, bkt, "t1", mint+h2, mint+2*h2, "ingester-a", genSeries("n", 2, mint+h2, mint+2*h2))
	require.NoError(t, bucketindex.WriteDeletionMark(t.Context(), bkt, "t1", halfDeleted, clk.t.Add(-13*time.Hour)))
	require.NoError(t, bkt.Delete(t.Context(), bucketindex.BlockFile("t1", halfDeleted, bucketindex.MetaFilename)))
	// A complete block stays.
	kept := ship(t, bkt, "t1", mint+2*h2, mint+3*h2, "ingester-a", genSeries("n", 2, mint+2*h2, mint+3*h2))

	c := newTestCompactor(t, bkt, Options{Now: clk.now}, nil)
	require.NoError(t, c.RunOnce(t.Context()))
	hasDir := func(id ulid.ULID) bool {
		for _, o := range objects(t, bkt) {
			if strings.HasPrefix(o, bucketindex.BlockDir("t1", id)+"/") {
				return true
			}
		}
		return false
	}
	require.True(t, hasDir(partial), "partial block younger than cleanup-partial-after must stay")
	require.False(t, hasDir(halfDeleted))
	require.True(t, hasDir(kept))

	clk.advance(24 * time.Hour)
	require.NoError(t, c.RunOnce(t.Context()))
	require.False(t, hasDir(partial))
	require.True(t, hasDir(kept))
	require.Equal(t, 2.0, testutil.ToFloat64(c.metrics.partialBlocksDeleted))
	x := readIndex(t, bkt, "t1")
	require.Len(t, x.Blocks, 1)
	require.Equal(t, kept, x.Blocks[0].ID)
}

// failingBucket fails listing below one prefix.
type failingBucket struct {
	bucket.Bucket
	prefix string
}

func (b failingBucket) Iter(ctx context.Context, dir string, recursive bool, f func(string) error) error {
	if dir != "" && strings.HasPrefix(dir, b.prefix) {
		return errors.New("injected failure")
	}
	return b.Bucket.Iter(ctx, dir, recursive, f)
}

func TestFailingTenantDoesNotStopOthers(t *testing.T) {
	for _, concurrency := range []int{1, 3} {
		t.Run("concurrency="+string(rune('0'+concurrency)), func(t *testing.T) {
			fs := newBucket(t)
			clk := &clock{time.Now().Add(time.Hour)}
			mint := dayStart(clk.t, 2)
			for _, tenant := range []string{"a", "bad", "c"} {
				shipReplicas(t, fs, tenant, mint, 2)
			}
			c := newTestCompactor(t, failingBucket{fs, "bad/"}, Options{Now: clk.now}, func(cfg *Config) { cfg.Concurrency = concurrency })
			err := c.RunOnce(t.Context())
			require.ErrorContains(t, err, `tenant "bad"`)
			require.ErrorContains(t, err, "injected failure")
			for _, tenant := range []string{"a", "c"} {
				require.Len(t, liveBlocks(readIndex(t, fs, tenant)), 1, tenant)
			}
			require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.tenantsFailed))
			require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.runsFailed))
			require.Equal(t, 0.0, testutil.ToFloat64(c.metrics.lastSuccessfulRun))
		})
	}
}

func TestOwnsTenant(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now().Add(time.Hour)}
	mint := dayStart(clk.t, 2)
	shipReplicas(t, bkt, "mine", mint, 2)
	shipReplicas(t, bkt, "theirs", mint, 2)
	c := newTestCompactor(t, bkt, Options{Now: clk.now, OwnsTenant: func(t string) (bool, error) { return t == "mine", nil }}, nil)
	require.NoError(t, c.RunOnce(t.Context()))
	require.Len(t, liveBlocks(readIndex(t, bkt, "mine")), 1)
	_, err := bucketindex.ReadIndex(t.Context(), bkt, "theirs")
	require.True(t, bucket.IsNotFound(err), "a tenant not owned is not touched")

	// CompactTenant compacts any tenant, for the admin endpoint.
	require.NoError(t, c.CompactTenant(t.Context(), "theirs"))
	require.Len(t, liveBlocks(readIndex(t, bkt, "theirs")), 1)
	require.Error(t, c.CompactTenant(t.Context(), "../x"))
}

func TestLateReplicaIsMergedAgain(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now().Add(time.Hour)}
	mint := dayStart(clk.t, 2)
	series := genSeries("n", 3, mint, mint+h2)
	ship(t, bkt, "t1", mint, mint+h2, "ingester-a", series)
	ship(t, bkt, "t1", mint, mint+h2, "ingester-b", series)
	c := newTestCompactor(t, bkt, Options{Now: clk.now}, nil)
	require.NoError(t, c.RunOnce(t.Context()))
	first := liveBlocks(readIndex(t, bkt, "t1"))
	require.Len(t, first, 1)

	extra := genSeries("late", 1, mint, mint+h2)
	ship(t, bkt, "t1", mint, mint+h2, "ingester-c", append(extra, series...))
	clk.advance(time.Hour)
	require.NoError(t, c.RunOnce(t.Context()))
	live := liveBlocks(readIndex(t, bkt, "t1"))
	require.Len(t, live, 1)
	require.NotEqual(t, first[0].ID, live[0].ID)
	require.Len(t, live[0].Sources, 3)
	require.Equal(t, union(series, extra), readBlock(t, bkt, "t1", live[0].ID))
}

func TestService(t *testing.T) {
	bkt := newBucket(t)
	clk := &clock{time.Now().Add(time.Hour)}
	shipReplicas(t, bkt, "t1", dayStart(clk.t, 2), 2)
	c := newTestCompactor(t, bkt, Options{Now: clk.now}, nil)
	require.NoError(t, c.StartAsync(t.Context()))
	require.NoError(t, c.AwaitRunning(t.Context()))
	require.Eventually(t, func() bool { return testutil.ToFloat64(c.metrics.lastSuccessfulRun) > 0 }, 30*time.Second, 10*time.Millisecond)
	c.StopAsync()
	require.NoError(t, c.AwaitTerminated(t.Context()))
	require.Len(t, liveBlocks(readIndex(t, bkt, "t1")), 1)
}
