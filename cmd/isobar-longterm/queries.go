package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/isobar-tsdb/isobar/bench/workload"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/querier/engine"
	"github.com/isobar-tsdb/isobar/querier/queryable"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
	"github.com/isobar-tsdb/isobar/tsdb/storegateway"
)

// compareQueries runs the same PromQL over [start, end) against the
// ingester's TSDB and against a store-gateway serving the bucket, both in
// this process.
func compareQueries(ctx context.Context, g *workload.Generator, bkt bucket.Reader, db *tsdb.DB, sgDir string, start, end int64, runs int, progress io.Writer, logger *slog.Logger) ([]QueryResult, error) {
	sg, err := storegateway.New(storegateway.Config{Dir: sgDir, SyncInterval: time.Hour, MaxOpenBlocks: 256, ChunkCacheSize: 256 << 20, SyncConcurrency: 4},
		bkt, storegateway.Options{}, logger, nil)
	if err != nil {
		return nil, err
	}
	if err := services.StartAndAwaitRunning(ctx, sg); err != nil {
		return nil, err
	}
	defer services.StopAndAwaitTerminated(context.Background(), sg) //nolint:errcheck
	sources := []struct {
		name string
		q    storage.Queryable
	}{
		{"ingester TSDB", db},
		{"store-gateway", queryable.NewBlocks(queryable.NewBucketIndexFinder(bkt, time.Hour, 0), queryable.LocalStore(sg))},
	}
	eng, _, err := engine.New(engine.Config{Timeout: 10 * time.Minute, MaxSamples: 1 << 30, LookbackDelta: 5 * time.Minute}, logger, nil)
	if err != nil {
		return nil, err
	}
	counter, job := commonest(g)
	queries := []string{
		fmt.Sprintf(`sum by (job) (rate(%s[5m]))`, counter),
		fmt.Sprintf(`count by (instance) ({job=%q})`, job),
	}
	ctx = tenant.With(ctx, "bench")
	var out []QueryResult
	for _, qs := range queries {
		for _, src := range sources {
			r := QueryResult{Source: src.name, Query: qs}
			var warm []float64
			for i := range runs {
				q, err := eng.NewRangeQuery(ctx, src.q, nil, qs, time.UnixMilli(start), time.UnixMilli(end-1), time.Minute)
				if err != nil {
					return nil, err
				}
				t0 := time.Now()
				res := q.Exec(ctx)
				d := time.Since(t0).Seconds()
				if res.Err != nil {
					q.Close()
					return nil, fmt.Errorf("%s on %s: %w", qs, src.name, res.Err)
				}
				m, _ := res.Matrix()
				r.Series = len(m)
				q.Close()
				if i == 0 {
					r.FirstSeconds = d
				} else {
					warm = append(warm, d)
				}
			}
			slices.Sort(warm)
			if len(warm) > 0 {
				r.WarmSeconds = warm[len(warm)/2]
			}
			fmt.Fprintf(progress, "%-14s %-60s %4d series: first %.3fs, then %.3fs\n", src.name, qs, r.Series, r.FirstSeconds, r.WarmSeconds)
			out = append(out, r)
		}
	}
	return out, nil
}

// commonest returns the metric name of the most frequent counter-looking
// family (name ending in _total) and the most frequent job.
func commonest(g *workload.Generator) (string, string) {
	names, jobs := map[string]int{}, map[string]int{}
	for i := range g.Len() {
		if n := g.MetricName(i); len(n) > 6 && n[len(n)-6:] == "_total" {
			names[n]++
		}
		jobs[g.Job(i)]++
	}
	return argmax(names), argmax(jobs)
}

func argmax(m map[string]int) string {
	best, n := "", -1
	for k, v := range m {
		if v > n || v == n && k < best {
			best, n = k, v
		}
	}
	return best
}

// MemoryResult is what a store-gateway's memory costs per block it could
// serve (loaded: index on local disk, nothing open) and per block open.
type MemoryResult struct {
	Blocks                 int     `json:"blocks"`
	HeapPerLoadedBlock     float64 `json:"heap_bytes_per_loaded_block"`
	HeapPerOpenBlock       float64 `json:"heap_bytes_per_open_block"`
	IndexBytesPerBlock     float64 `json:"index_file_bytes_per_block"`
	MaxOpenBlocks          int     `json:"max_open_blocks"`
	HeapAfterLRUCloseBytes int64   `json:"heap_after_lru_close_bytes"`
}

// storeGatewayMemory loads every block of the bucket in a store-gateway,
// then queries them one after the other, and measures the Go heap at each
// step. The index files themselves are mmapped, outside the heap.
func storeGatewayMemory(ctx context.Context, bkt bucket.Reader, dir string, logger *slog.Logger) (MemoryResult, error) {
	var r MemoryResult
	const maxOpen = 8
	sg, err := storegateway.New(storegateway.Config{Dir: dir, SyncInterval: time.Hour, MaxOpenBlocks: maxOpen, ChunkCacheSize: 0, SyncConcurrency: 4},
		bkt, storegateway.Options{}, logger, nil)
	if err != nil {
		return r, err
	}
	before := heapInuse()
	if err := services.StartAndAwaitRunning(ctx, sg); err != nil {
		return r, err
	}
	defer services.StopAndAwaitTerminated(context.Background(), sg) //nolint:errcheck
	loaded := heapInuse()
	x, err := bucketindexRead(ctx, bkt)
	if err != nil {
		return r, err
	}
	r.Blocks = len(x)
	r.MaxOpenBlocks = maxOpen
	q := queryable.NewBlocks(queryable.NewBucketIndexFinder(bkt, time.Hour, 0), queryable.LocalStore(sg))
	// One block at a time: the LRU keeps at most maxOpen open.
	var peak int64
	for _, b := range x {
		qr, err := q.Querier(b.MinTime, b.MaxTime-1)
		if err != nil {
			return r, err
		}
		ss := qr.Select(tenant.With(ctx, "bench"), false, nil, labelsAll())
		for ss.Next() {
		}
		if err := ss.Err(); err != nil {
			return r, err
		}
		qr.Close()
		peak = max(peak, heapInuse())
	}
	r.HeapAfterLRUCloseBytes = heapInuse() - before
	r.HeapPerLoadedBlock = float64(loaded-before) / float64(r.Blocks)
	r.HeapPerOpenBlock = float64(peak-loaded) / float64(min(maxOpen, r.Blocks))
	var indexBytes int64
	for _, b := range x {
		a, err := bkt.Attributes(ctx, "bench/"+b.ID.String()+"/index")
		if err != nil {
			return r, err
		}
		indexBytes += a.Size
	}
	r.IndexBytesPerBlock = float64(indexBytes) / float64(r.Blocks)
	return r, nil
}

func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func labelsAll() *labels.Matcher { return labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+") }

func bucketindexRead(ctx context.Context, bkt bucket.Reader) ([]bucketindex.Block, error) {
	x, err := bucketindex.ReadIndex(ctx, bkt, "bench")
	if err != nil {
		return nil, err
	}
	return x.Blocks, nil
}
