package shipper

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// countingBucket records the names uploaded, in order.
type countingBucket struct {
	bucket.Bucket
	mu      sync.Mutex
	uploads []string
}

func (c *countingBucket) Upload(ctx context.Context, name string, r io.Reader) error {
	c.mu.Lock()
	c.uploads = append(c.uploads, name)
	c.mu.Unlock()
	return c.Bucket.Upload(ctx, name, r)
}

// cutBlock appends samples in [mint, maxt) to a TSDB in dir and cuts them
// into a block.
func cutBlock(t *testing.T, db *tsdb.DB, mint, maxt int64) {
	t.Helper()
	app := db.Appender(context.Background())
	for ts := mint; ts < maxt; ts += 15_000 {
		for s := range 10 {
			_, err := app.Append(0, labels.FromStrings("__name__", "up", "instance", string(rune('a'+s))), ts, float64(ts))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	h := db.Head()
	require.NoError(t, db.CompactHead(tsdb.NewRangeHead(h, h.MinTime(), h.MaxTime())))
}

func TestShipOnceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	fs, err := bucket.NewFilesystem(t.TempDir())
	require.NoError(t, err)
	bkt := &countingBucket{Bucket: fs}
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	defer db.Close()
	cutBlock(t, db, 0, 7_200_000)

	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	newShipper := func() *Shipper {
		s, err := New(bkt, "team-a", dir, "ingester-1", metrics, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		return s
	}
	s := newShipper()
	n, err := s.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	blocks := db.Blocks()
	require.Len(t, blocks, 1)
	id := blocks[0].Meta().ULID
	require.True(t, s.Shipped(id))
	require.Equal(t, bucketindex.BlockFile("team-a", id, bucketindex.MetaFilename), bkt.uploads[len(bkt.uploads)-1], "meta.json goes last")

	m, err := bucketindex.ReadMeta(context.Background(), fs, "team-a", id)
	require.NoError(t, err)
	require.Equal(t, bucketindex.Extension{Source: "ingester", Ingester: "ingester-1"}, m.Isobar)
	require.Equal(t, uint64(10*480), m.Stats.NumSamples)
	for _, f := range []string{bucketindex.IndexFilename, "chunks/000001", bucketindex.TombstonesFilename} {
		ok, err := fs.Exists(context.Background(), bucketindex.BlockFile("team-a", id, f))
		require.NoError(t, err)
		require.True(t, ok, f)
	}

	// Nothing new: nothing uploaded, by this shipper or by a restarted one.
	uploads := len(bkt.uploads)
	n, err = s.Sync(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = newShipper().Sync(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, bkt.uploads, uploads)

	// Died after uploading, before recording: the block is recorded, not uploaded again.
	require.NoError(t, os.Remove(filepath.Join(dir, StateFilename)))
	s = newShipper()
	require.False(t, s.Shipped(id))
	n, err = s.Sync(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
	require.True(t, s.Shipped(id))
	require.Len(t, bkt.uploads, uploads)
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.uploads.WithLabelValues("success")))
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.uploads.WithLabelValues("already_shipped")))

	// A second block ships on its own.
	cutBlock(t, db, 7_200_000, 14_400_000)
	n, err = s.Sync(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestBlocksToDeleteKeepsUnshipped(t *testing.T) {
	dir := t.TempDir()
	fs, err := bucket.NewFilesystem(t.TempDir())
	require.NoError(t, err)
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	defer db.Close()
	cutBlock(t, db, 0, 7_200_000)
	s, err := New(fs, "t1", dir, "i", NewMetrics(nil), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	_, err = s.Sync(context.Background())
	require.NoError(t, err)
	cutBlock(t, db, 7_200_000, 14_400_000)

	blocks := db.Blocks()
	require.Len(t, blocks, 2)
	all := func([]*tsdb.Block) map[ulid.ULID]struct{} {
		return map[ulid.ULID]struct{}{blocks[0].Meta().ULID: {}, blocks[1].Meta().ULID: {}}
	}
	del := s.BlocksToDelete(all)(blocks)
	require.Equal(t, map[ulid.ULID]struct{}{blocks[0].Meta().ULID: {}}, del, "only the shipped block may go")
}

func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, StateFilename), []byte("{"), 0o644))
	_, err := New(nil, "t1", dir, "i", NewMetrics(nil), slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "parse shipper state")
}
