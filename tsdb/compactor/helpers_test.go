package compactor

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

var nopLogger = slog.New(slog.DiscardHandler)

type sample struct {
	t int64
	v float64
}

type testSeries struct {
	lset    labels.Labels
	samples []sample
}

// seriesData is what a block holds: samples by series, sorted by time.
type seriesData map[string][]sample

// genSeries returns n series named metric with a 15s sample every step
// over [mint, maxt), values derived from series and time so that replicas
// agree.
func genSeries(prefix string, n int, mint, maxt int64) []testSeries {
	out := make([]testSeries, n)
	for i := range out {
		out[i].lset = labels.FromStrings("__name__", "up", "job", prefix, "instance", fmt.Sprintf("host-%04d", i))
		for ts := mint; ts < maxt; ts += 15_000 {
			out[i].samples = append(out[i].samples, sample{ts, float64(i)*1e6 + float64(ts/1000)})
		}
	}
	return out
}

// union merges series sets, keeping one sample per series and timestamp.
func union(sets ...[]testSeries) seriesData {
	m := map[string]map[int64]float64{}
	for _, set := range sets {
		for _, s := range set {
			k := s.lset.String()
			if m[k] == nil {
				m[k] = map[int64]float64{}
			}
			for _, smp := range s.samples {
				m[k][smp.t] = smp.v
			}
		}
	}
	out := seriesData{}
	for k, byT := range m {
		for t, v := range byT {
			out[k] = append(out[k], sample{t, v})
		}
		slices.SortFunc(out[k], func(a, b sample) int { return int(a.t - b.t) })
	}
	return out
}

func (d seriesData) numSamples() int {
	n := 0
	for _, s := range d {
		n += len(s)
	}
	return n
}

// writeBlock writes a level-1 block of [mint, maxt) into dir the way an
// ingester cuts it from its head, tagged as shipped by ingester.
func writeBlock(tb testing.TB, dir string, mint, maxt int64, ingester string, series []testSeries) string {
	tb.Helper()
	opts := tsdb.DefaultHeadOptions()
	opts.ChunkDirRoot = tb.TempDir()
	opts.ChunkRange = maxt - mint
	h, err := tsdb.NewHead(nil, nopLogger, nil, nil, opts, nil)
	require.NoError(tb, err)
	defer h.Close()
	require.NoError(tb, h.Init(math.MinInt64))
	app := h.Appender(context.Background())
	for _, s := range series {
		var ref storage.SeriesRef
		for _, smp := range s.samples {
			ref, err = app.Append(ref, s.lset, smp.t, smp.v)
			require.NoError(tb, err)
		}
	}
	require.NoError(tb, app.Commit())
	lc, err := tsdb.NewLeveledCompactor(context.Background(), nil, nopLogger, []int64{maxt - mint}, nil, nil)
	require.NoError(tb, err)
	ids, err := lc.Write(dir, tsdb.NewRangeHead(h, mint, maxt-1), mint, maxt, nil)
	require.NoError(tb, err)
	require.Len(tb, ids, 1)
	bdir := filepath.Join(dir, ids[0].String())
	m, err := readLocalMeta(bdir)
	require.NoError(tb, err)
	m.Isobar = bucketindex.Extension{Source: "ingester", Ingester: ingester}
	require.NoError(tb, writeLocalMeta(bdir, m))
	return bdir
}

// ship writes a block and uploads it as ingester would, returning its ID.
func ship(tb testing.TB, bkt bucket.Bucket, tenant string, mint, maxt int64, ingester string, series []testSeries) ulid.ULID {
	tb.Helper()
	bdir := writeBlock(tb, tb.TempDir(), mint, maxt, ingester, series)
	id := ulid.MustParse(filepath.Base(bdir))
	require.NoError(tb, uploadBlock(context.Background(), bkt, tenant, id, bdir))
	return id
}

// readBlock downloads a block and reads every sample of it back.
func readBlock(t *testing.T, bkt bucket.Reader, tenant string, id ulid.ULID) seriesData {
	t.Helper()
	dir, err := downloadBlock(t.Context(), bkt, tenant, id, t.TempDir())
	require.NoError(t, err)
	b, err := tsdb.OpenBlock(nopLogger, dir, chunkenc.NewPool(), tsdb.DefaultPostingsDecoderFactory)
	require.NoError(t, err)
	defer b.Close()
	q, err := tsdb.NewBlockQuerier(b, math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(t.Context(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	out := seriesData{}
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		it = s.Iterator(it)
		k := s.Labels().String()
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[k] = append(out[k], sample{ts, v})
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return out
}

// objects lists every object in the bucket.
func objects(t *testing.T, bkt bucket.Reader) []string {
	t.Helper()
	var out []string
	require.NoError(t, bkt.Iter(t.Context(), "", true, func(name string) error {
		out = append(out, name)
		return nil
	}))
	return out
}

func newTestCompactor(t testing.TB, bkt bucket.Bucket, opts Options, mutate func(*Config)) *Compactor {
	t.Helper()
	cfg := defaultConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg, bkt, opts, nopLogger, nil)
	require.NoError(t, err)
	return c
}

func defaultConfig(t testing.TB) Config {
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("test", flag.PanicOnError))
	cfg.Dir = t.TempDir()
	return cfg
}

func newBucket(t testing.TB) *bucket.Filesystem {
	dir, err := os.MkdirTemp("", "bkt")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	bkt, err := bucket.NewFilesystem(dir)
	require.NoError(t, err)
	return bkt
}

// clock is a settable Options.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func readIndex(t *testing.T, bkt bucket.Reader, tenant string) *bucketindex.Index {
	t.Helper()
	x, err := bucketindex.ReadIndex(t.Context(), bkt, tenant)
	require.NoError(t, err)
	return x
}

func liveBlocks(x *bucketindex.Index) []bucketindex.Block {
	var out []bucketindex.Block
	for _, b := range x.Blocks {
		if !x.Marked(b.ID) {
			out = append(out, b)
		}
	}
	return out
}
