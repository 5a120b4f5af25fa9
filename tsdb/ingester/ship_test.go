package ingester

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

func TestFlushCutsAlignedBlocksAndShipsThem(t *testing.T) {
	dir := t.TempDir()
	bkt, err := bucket.NewFilesystem(t.TempDir())
	require.NoError(t, err)
	cfg, l := testConfig(t, dir)
	cfg.ShipInterval = 0 // only Flush ships here
	o, err := limits.NewOverrides(l, nil)
	require.NoError(t, err)
	start := func() *Ingester {
		ing, err := New(cfg, o, Deps{Bucket: bkt, InstanceID: "ingester-7"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		require.NoError(t, err)
		require.NoError(t, services.StartAndAwaitRunning(context.Background(), ing))
		return ing
	}
	ing := start()
	ctx := tenant.With(context.Background(), "team-a")

	// 5 hours in order from a block-range boundary: 3 ranges, the last partial.
	const blockRange = int64(2 * time.Hour / time.Millisecond)
	base := rangeStart(t0, blockRange)
	want := 0
	for ts := base; ts < base+5*3_600_000; ts += 60_000 {
		require.NoError(t, ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			floatSeries(ts, float64(ts), "__name__", "up", "job", "a"),
			floatSeries(ts, 1, "__name__", "up", "job", "b"),
		}})))
		want += 2
	}
	require.NoError(t, ing.Flush(context.Background()))

	scan, err := bucketindex.Update(context.Background(), bkt, "team-a", nil, time.Now())
	require.NoError(t, err)
	require.Empty(t, scan.Partial)
	require.Len(t, scan.Index.Blocks, 3)
	got := uint64(0)
	for i, b := range scan.Index.Blocks {
		require.Equal(t, "ingester-7", b.Ingester)
		require.Equal(t, base+int64(i)*blockRange, rangeStart(b.MinTime, blockRange), "block %d starts in its own range", i)
		require.LessOrEqual(t, b.MaxTime, rangeStart(b.MinTime, blockRange)+blockRange, "block %d ends in its range", i)
		got += b.NumSamples
	}
	require.Equal(t, uint64(want), got)
	require.Len(t, readAll(t, ing, "team-a"), 2, "flushed data stays queryable")

	// A restart ships nothing again.
	stop(t, ing)
	ing = start()
	defer stop(t, ing)
	require.NoError(t, ing.Flush(context.Background()))
	again, err := bucketindex.Update(context.Background(), bkt, "team-a", nil, time.Now())
	require.NoError(t, err)
	require.Equal(t, scan.Index.Blocks, again.Index.Blocks)
}

func TestRangeStart(t *testing.T) {
	for _, tc := range []struct{ t, want int64 }{{0, 0}, {5, 0}, {10, 10}, {19, 10}, {-1, -10}, {-10, -10}, {-11, -20}} {
		require.Equal(t, tc.want, rangeStart(tc.t, 10), "t=%d", tc.t)
	}
}

// TestFlushLosesNoAcknowledgedSample flushes over and over while writers
// push: every sample a push acknowledged is there afterwards, in a block
// or the head. One writer keeps the head's newest time moving; the others
// write a step behind it, the samples a flush's cut reaches.
func TestFlushLosesNoAcknowledgedSample(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	cfg.ShipInterval = 0
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")
	start := time.Now().UnixMilli()

	var (
		mu    sync.Mutex
		acked = map[string][]point{}
		stopW = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			name := fmt.Sprintf(`{__name__="w%d"}`, w)
			for k := int64(0); ; k++ {
				select {
				case <-stopW:
					return
				default:
				}
				ts := start + k*10
				if w > 0 {
					ts -= 5 // behind the leader
				}
				err := ing.Push(ctx, request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(ts, float64(k), "__name__", fmt.Sprintf("w%d", w))}}))
				if err == nil {
					mu.Lock()
					acked[name] = append(acked[name], point{ts, float64(k)})
					mu.Unlock()
				}
			}
		})
	}
	flushes := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); flushes++ {
		require.NoError(t, ing.Flush(context.Background()))
		time.Sleep(time.Millisecond) // a flush makes pushes wait: let them in
	}
	close(stopW)
	wg.Wait()

	got := readAll(t, ing, "team-a")
	total := 0
	for name, want := range acked {
		have := map[point]bool{}
		for _, p := range got[name] {
			have[p] = true
		}
		for _, p := range want {
			require.True(t, have[p], "%s: acknowledged sample %v is gone after %d flushes", name, p, flushes)
		}
		total += len(want)
	}
	require.Greater(t, total, 100, "acknowledged samples")
	t.Logf("%d flushes, %d acknowledged samples, all kept", flushes, total)
}
