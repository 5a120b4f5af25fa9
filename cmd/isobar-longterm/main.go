// Command longterm measures long-term storage: it writes a realistic
// private-cloud workload into RF ingester TSDBs as they would receive it
// (same samples on every replica), ships their 2-hour blocks to a
// filesystem bucket, runs the compactor over them, and reports the bytes
// per sample left in the bucket, the compactor's throughput, and the
// latency of the same queries over the whole range answered by an
// ingester's TSDB and by a store-gateway over the bucket.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/isobar-tsdb/isobar/bench/workload"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
	"github.com/isobar-tsdb/isobar/tsdb/compactor"
	"github.com/isobar-tsdb/isobar/tsdb/shipper"
)

// Result is what one run measured.
type Result struct {
	Series            int           `json:"series"`
	Hours             int           `json:"hours"`
	Replicas          int           `json:"replicas"`
	ScrapeInterval    string        `json:"scrape_interval"`
	Samples           uint64        `json:"samples"`
	ShippedBytes      int64         `json:"shipped_bytes"`
	CompactedBlocks   int           `json:"compacted_blocks"`
	CompactedBytes    int64         `json:"compacted_bytes"`
	ChunkBytes        int64         `json:"chunk_bytes"`
	IndexBytes        int64         `json:"index_bytes"`
	BytesPerSample    float64       `json:"bytes_per_sample"`
	ChunkBytesPerSamp float64       `json:"chunk_bytes_per_sample"`
	CompactSeconds    float64       `json:"compact_seconds"`
	CompactSamplesSec float64       `json:"compactor_input_samples_per_second"`
	Queries           []QueryResult `json:"queries"`
	StoreGateway      MemoryResult  `json:"store_gateway_memory"`
}

// QueryResult is the latency of one query from one source: the first run
// (cold: for the store-gateway, chunks come from the bucket) and the median
// of the runs after it.
type QueryResult struct {
	Source       string  `json:"source"`
	Query        string  `json:"query"`
	Series       int     `json:"series"`
	FirstSeconds float64 `json:"first_seconds"`
	WarmSeconds  float64 `json:"warm_median_seconds"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "longterm:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, progress io.Writer) error {
	fs := flag.NewFlagSet("longterm", flag.ContinueOnError)
	series := fs.Int("series", 5000, "series of the workload")
	hours := fs.Int("hours", 24, "hours of samples")
	replicas := fs.Int("replicas", 3, "ingesters holding each series (replication factor)")
	scrape := fs.Duration("scrape-interval", 15*time.Second, "time between samples of a series")
	seed := fs.Int64("seed", 1, "workload seed")
	dir := fs.String("dir", "", "work directory (default: a temporary one, removed at the end)")
	queryRuns := fs.Int("query-runs", 5, "times each query runs against each source")
	if err := fs.Parse(args); err != nil {
		return err
	}
	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "isobar-longterm-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	bkt, err := bucket.NewFilesystem(filepath.Join(work, "bucket"))
	if err != nil {
		return err
	}
	g := workload.New(workload.Config{Series: *series, Seed: *seed})
	lsets := make([]labels.Labels, g.Len())
	for i := range lsets {
		b := labels.NewScratchBuilder(0)
		for _, l := range g.Series(i) {
			b.Add(l.Name, l.Value)
		}
		lsets[i] = b.Labels()
	}
	const blockRange = int64(2 * time.Hour / time.Millisecond)
	end := time.Now().UnixMilli() / blockRange * blockRange
	start := end - int64(*hours)*int64(time.Hour/time.Millisecond)
	step := scrape.Milliseconds()
	res := Result{Series: g.Len(), Hours: *hours, Replicas: *replicas, ScrapeInterval: scrape.String()}

	var ingesterDB *tsdb.DB
	metrics := shipper.NewMetrics(nil)
	for r := range *replicas {
		opts := tsdb.DefaultOptions()
		opts.MinBlockDuration, opts.MaxBlockDuration = blockRange, blockRange
		opts.RetentionDuration = math.MaxInt64 / 2
		tdir := filepath.Join(work, fmt.Sprintf("ingester-%d", r), "bench")
		db, err := tsdb.Open(tdir, logger, nil, opts, nil)
		if err != nil {
			return err
		}
		for w := start; w < end; w += blockRange {
			app := db.Appender(ctx)
			for ts := w; ts < w+blockRange; ts += step {
				for i, ls := range lsets {
					// Scrapes of different targets are spread over the interval.
					t := ts + int64(i%int(step/1000))*1000
					if _, err := app.Append(0, ls, t, g.Value(i, t)); err != nil {
						return fmt.Errorf("append: %w", err)
					}
				}
			}
			if err := app.Commit(); err != nil {
				return err
			}
			h := db.Head()
			if err := db.CompactHead(tsdb.NewRangeHead(h, w, w+blockRange-1)); err != nil {
				return err
			}
			fmt.Fprintf(progress, "\ringester %d/%d: %3.0f%% of %dh written", r+1, *replicas, 100*float64(w+blockRange-start)/float64(end-start), *hours)
		}
		sh, err := shipper.New(bkt, "bench", tdir, fmt.Sprintf("ingester-%d", r), metrics, logger)
		if err != nil {
			return err
		}
		if _, err := sh.Sync(ctx); err != nil {
			return err
		}
		if r > 0 {
			if err := db.Close(); err != nil {
				return err
			}
			continue
		}
		// The first ingester keeps its TSDB open: it answers the same
		// queries as the store-gateway.
		defer db.Close()
		ingesterDB = db
	}
	fmt.Fprintln(progress)
	shipped, err := treeSize(ctx, bkt, "bench/", nil)
	if err != nil {
		return err
	}
	res.ShippedBytes = shipped

	// Before compaction the bucket holds every replica's 2-hour blocks: many
	// blocks for a store-gateway to load, few to have open.
	scan, err := bucketindex.Update(ctx, bkt, "bench", nil, time.Now())
	if err != nil {
		return err
	}
	if err := bucketindex.WriteIndex(ctx, bkt, "bench", scan.Index); err != nil {
		return err
	}
	mem, err := storeGatewayMemory(ctx, bkt, filepath.Join(work, "store-gateway-memory"), logger)
	if err != nil {
		return err
	}
	res.StoreGateway = mem
	fmt.Fprintf(progress, "store-gateway: %d blocks loaded, %.0f heap bytes each; %.0f more each while open (index files %.0f bytes each, mmapped); heap after all were closed again: %d bytes\n",
		mem.Blocks, mem.HeapPerLoadedBlock, mem.HeapPerOpenBlock, mem.IndexBytesPerBlock, mem.HeapAfterLRUCloseBytes)

	cfg := compactor.Config{Dir: filepath.Join(work, "compactor"), Interval: time.Hour, ConsistencyDelay: 0, DeletionDelay: 0,
		CleanupPartialAfter: time.Hour, Concurrency: 1,
		BlockRanges: compactor.DurationList{2 * time.Hour, 12 * time.Hour, 24 * time.Hour}}
	c, err := compactor.New(cfg, bkt, compactor.Options{Now: func() time.Time { return time.UnixMilli(end).Add(48 * time.Hour) }}, logger, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(progress, "compacting...")
	t0 := time.Now()
	if err := c.CompactTenant(ctx, "bench"); err != nil {
		return err
	}
	res.CompactSeconds = time.Since(t0).Seconds()

	x, err := bucketindex.ReadIndex(ctx, bkt, "bench")
	if err != nil {
		return err
	}
	for _, b := range x.Queryable(math.MinInt64, math.MaxInt64) {
		res.CompactedBlocks++
		res.Samples += b.NumSamples
		size, err := treeSize(ctx, bkt, bucketindex.BlockDir("bench", b.ID)+"/", func(name string, n int64) {
			switch {
			case strings.Contains(name, "/chunks/"):
				res.ChunkBytes += n
			case strings.HasSuffix(name, "/index"):
				res.IndexBytes += n
			}
		})
		if err != nil {
			return err
		}
		res.CompactedBytes += size
	}
	res.BytesPerSample = float64(res.CompactedBytes) / float64(res.Samples)
	res.ChunkBytesPerSamp = float64(res.ChunkBytes) / float64(res.Samples)
	res.CompactSamplesSec = float64(res.Samples) * float64(*replicas) / res.CompactSeconds
	fmt.Fprintf(progress, "%d samples, %d compacted blocks: %.3f bytes/sample (chunks %.3f, index %.3f); compactor %.0f input samples/s\n",
		res.Samples, res.CompactedBlocks, res.BytesPerSample, res.ChunkBytesPerSamp, float64(res.IndexBytes)/float64(res.Samples), res.CompactSamplesSec)

	qs, err := compareQueries(ctx, g, bkt, ingesterDB, filepath.Join(work, "store-gateway"), start, end, *queryRuns, progress, logger)
	if err != nil {
		return err
	}
	res.Queries = qs
	return json.NewEncoder(stdout).Encode(res)
}

// treeSize sums the sizes of the objects under prefix.
func treeSize(ctx context.Context, bkt bucket.Reader, prefix string, each func(name string, size int64)) (int64, error) {
	var total int64
	err := bkt.Iter(ctx, prefix, true, func(name string) error {
		a, err := bkt.Attributes(ctx, name)
		if err != nil {
			return err
		}
		total += a.Size
		if each != nil {
			each(name, a.Size)
		}
		return nil
	})
	return total, err
}
