package compactor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// Options are the compactor's dependencies besides its configuration. The
// zero value is valid.
type Options struct {
	// OwnsTenant says whether this compactor compacts a tenant; nil owns
	// every tenant. The caller wires it to a ring.
	OwnsTenant func(tenant string) (bool, error)
	// Retention returns a tenant's retention period, 0 for forever; nil
	// uses -compactor.retention-period for every tenant.
	Retention func(tenant string) time.Duration
	// Now returns the current time; nil is time.Now.
	Now func() time.Time
}

// Compactor merges the blocks that ingesters ship into larger,
// deduplicated blocks, applies retention and deletes blocks. It is a dskit
// service that runs a cycle over every owned tenant each
// -compactor.interval.
type Compactor struct {
	services.Service

	cfg     Config
	bkt     bucket.Bucket
	opts    Options
	logger  *slog.Logger
	metrics *metrics
	planner planner
	ranges  []int64
	pool    chunkenc.Pool
	workDir string

	locksMu sync.Mutex
	locks   map[string]chan struct{} // one-slot semaphore per tenant
}

// New returns a compactor over bkt. It needs exclusive use of cfg.Dir.
func New(cfg Config, bkt bucket.Bucket, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Compactor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.OwnsTenant == nil {
		opts.OwnsTenant = func(string) (bool, error) { return true, nil }
	}
	if opts.Retention == nil {
		def := time.Duration(cfg.RetentionPeriod)
		opts.Retention = func(string) time.Duration { return def }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ranges := cfg.BlockRanges.millis()
	c := &Compactor{
		cfg:     cfg,
		bkt:     bkt,
		opts:    opts,
		logger:  logger.With("component", "compactor"),
		metrics: newMetrics(reg),
		planner: planner{ranges: ranges, consistencyDelay: cfg.ConsistencyDelay},
		ranges:  ranges,
		pool:    chunkenc.NewPool(),
		workDir: filepath.Join(cfg.Dir, "compact"),
		locks:   map[string]chan struct{}{},
	}
	c.Service = services.NewBasicService(c.starting, c.running, c.stopping)
	return c, nil
}

// starting removes what a previous process left in the working directory.
func (c *Compactor) starting(context.Context) error {
	if err := os.RemoveAll(c.workDir); err != nil {
		return fmt.Errorf("clean compactor working dir: %w", err)
	}
	if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		return fmt.Errorf("create compactor working dir: %w", err)
	}
	return nil
}

// running runs a cycle at once and then every interval. A failed cycle is
// logged and counted; it does not stop the service.
func (c *Compactor) running(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("compaction run finished with errors", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Compactor) stopping(error) error { return nil }

// RunOnce runs one cycle over every tenant in the bucket that this
// compactor owns, -compactor.concurrency tenants at a time. A tenant that
// fails is logged and counted and does not stop the others; the returned
// error joins the failures.
func (c *Compactor) RunOnce(ctx context.Context) error {
	c.metrics.runs.Inc()
	tenants, err := bucketindex.Tenants(ctx, c.bkt)
	if err != nil {
		c.metrics.runsFailed.Inc()
		return fmt.Errorf("list tenants: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		ch   = make(chan string)
	)
	fail := func(tenant string, err error) {
		c.metrics.tenantsFailed.Inc()
		c.logger.Error("tenant compaction cycle failed", "tenant", tenant, "err", err)
		mu.Lock()
		errs = append(errs, fmt.Errorf("tenant %q: %w", tenant, err))
		mu.Unlock()
	}
	for range min(c.cfg.Concurrency, len(tenants)) {
		wg.Go(func() {
			for tenant := range ch {
				owned, err := c.opts.OwnsTenant(tenant)
				if err != nil {
					fail(tenant, fmt.Errorf("check tenant ownership: %w", err))
					continue
				}
				if !owned {
					continue
				}
				if err := c.CompactTenant(ctx, tenant); err != nil {
					fail(tenant, err)
				}
			}
		})
	}
feed:
	for _, t := range tenants {
		select {
		case ch <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		c.metrics.runsFailed.Inc()
		return err
	}
	if len(errs) > 0 {
		c.metrics.runsFailed.Inc()
		return errors.Join(errs...)
	}
	c.metrics.lastSuccessfulRun.Set(float64(c.opts.Now().Unix()))
	return nil
}

// CompactTenant runs one cycle for a tenant, whether this compactor owns it
// or not: update the bucket index, mark blocks past retention, compact,
// delete blocks whose deletion delay has passed and partial blocks, and
// write the bucket index. A compaction that fails stops the tenant's
// compactions but not the rest of the cycle. Cycles of the same tenant do
// not overlap: a second call waits for the first.
func (c *Compactor) CompactTenant(ctx context.Context, tenant string) error {
	if tenant == "" || tenant == "." || tenant == ".." || strings.ContainsAny(tenant, `/\`) {
		return fmt.Errorf("invalid tenant name %q", tenant)
	}
	unlock, err := c.lockTenant(ctx, tenant)
	if err != nil {
		return err
	}
	defer unlock()

	old, err := bucketindex.ReadIndex(ctx, c.bkt, tenant)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !bucket.IsNotFound(err) {
			// The old index only saves reading the meta.json of known
			// blocks; a broken one must not wedge the tenant.
			c.logger.Warn("cannot read bucket index, rebuilding it", "tenant", tenant, "err", err)
		}
		old = nil
	}
	scan, err := bucketindex.Update(ctx, c.bkt, tenant, old, c.opts.Now())
	if err != nil {
		return fmt.Errorf("update bucket index: %w", err)
	}
	// Written now as well as at the end: the scan is fresh, and a long
	// compaction must not leave the index stale for queriers meanwhile.
	if err := bucketindex.WriteIndex(ctx, c.bkt, tenant, scan.Index); err != nil {
		return fmt.Errorf("write bucket index: %w", err)
	}
	t := &tenantCycle{c: c, tenant: tenant, idx: scan.Index, logger: c.logger.With("tenant", tenant)}
	errs := []error{
		t.applyRetention(ctx),
		t.compact(ctx),
		t.deleteMarked(ctx),
		t.cleanupPartial(ctx, scan.Partial),
	}
	t.idx.UpdatedAt = c.opts.Now().Unix()
	if err := bucketindex.WriteIndex(ctx, c.bkt, tenant, t.idx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Compactor) lockTenant(ctx context.Context, tenant string) (func(), error) {
	c.locksMu.Lock()
	sem, ok := c.locks[tenant]
	if !ok {
		sem = make(chan struct{}, 1)
		c.locks[tenant] = sem
	}
	c.locksMu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tenantCycle is one cycle of one tenant. idx is kept up to date with
// every change made to the bucket, and written at the end.
type tenantCycle struct {
	c      *Compactor
	tenant string
	idx    *bucketindex.Index
	logger *slog.Logger
}

// live returns the blocks not marked for deletion.
func (t *tenantCycle) live() []bucketindex.Block {
	marked := make(map[ulid.ULID]struct{}, len(t.idx.DeletionMarks))
	for _, m := range t.idx.DeletionMarks {
		marked[m.ID] = struct{}{}
	}
	out := make([]bucketindex.Block, 0, len(t.idx.Blocks))
	for _, b := range t.idx.Blocks {
		if _, ok := marked[b.ID]; !ok {
			out = append(out, b)
		}
	}
	return out
}

func (t *tenantCycle) markForDeletion(ctx context.Context, id ulid.ULID, reason string) error {
	if t.idx.Marked(id) {
		return nil
	}
	now := t.c.opts.Now()
	if err := bucketindex.WriteDeletionMark(ctx, t.c.bkt, t.tenant, id, now); err != nil {
		return err
	}
	t.idx.DeletionMarks = append(t.idx.DeletionMarks, bucketindex.DeletionMark{ID: id, DeletionTime: now.Unix()})
	t.c.metrics.blocksMarked.WithLabelValues(reason).Inc()
	return nil
}

// applyRetention marks the blocks whose newest sample is older than the
// tenant's retention.
func (t *tenantCycle) applyRetention(ctx context.Context) error {
	ret := t.c.opts.Retention(t.tenant)
	if ret <= 0 {
		return nil
	}
	cutoff := t.c.opts.Now().Add(-ret).UnixMilli()
	for _, b := range t.live() {
		if b.MaxTime > cutoff {
			continue
		}
		if err := t.markForDeletion(ctx, b.ID, reasonRetention); err != nil {
			return fmt.Errorf("apply retention: %w", err)
		}
		t.logger.Info("marked block past retention for deletion", "block", b.ID, "max_time", time.UnixMilli(b.MaxTime).UTC(), "retention", model.Duration(ret))
	}
	return nil
}

// compact runs the planner's compactions one after the other until there
// is none left.
func (t *tenantCycle) compact(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		j, ok := t.c.planner.next(t.live(), t.c.opts.Now())
		if !ok {
			return nil
		}
		if err := t.runJob(ctx, j); err != nil {
			t.c.metrics.compactionsFailed.Inc()
			return fmt.Errorf("compact %d blocks of %s window starting %s: %w",
				len(j.blocks), model.Duration(time.Duration(j.rangeMs)*time.Millisecond), time.UnixMilli(j.start).UTC().Format(time.RFC3339), err)
		}
	}
}

// runJob downloads the job's blocks, merges them, uploads the result and
// marks the sources for deletion.
func (t *tenantCycle) runJob(ctx context.Context, j job) (err error) {
	start := time.Now()
	dir := filepath.Join(t.c.workDir, t.tenant)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clean working dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		return fmt.Errorf("create working dir: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove working dir: %w", rmErr))
		}
	}()

	dirs := make([]string, 0, len(j.blocks))
	for _, b := range j.blocks {
		d, err := downloadBlock(ctx, t.c.bkt, t.tenant, b.ID, filepath.Join(dir, "in"))
		if err != nil {
			return err
		}
		dirs = append(dirs, d)
	}
	lc, err := tsdb.NewLeveledCompactorWithOptions(ctx, nil, t.logger, t.c.ranges, t.c.pool, tsdb.LeveledCompactorOptions{
		MergeFunc:                   storage.NewCompactingChunkSeriesMerger(storage.ChainedSeriesMerge),
		EnableOverlappingCompaction: true,
	})
	if err != nil {
		return fmt.Errorf("create leveled compactor: %w", err)
	}
	ids, err := lc.Compact(filepath.Join(dir, "out"), dirs, nil)
	if err != nil {
		return fmt.Errorf("merge blocks: %w", err)
	}

	var out *bucketindex.Meta
	if len(ids) > 0 { // none when the sources hold no sample
		bdir := filepath.Join(dir, "out", ids[0].String())
		out, err = readLocalMeta(bdir)
		if err != nil {
			return err
		}
		out.Isobar = bucketindex.Extension{Source: SourceCompactor}
		if err := writeLocalMeta(bdir, out); err != nil {
			return err
		}
		if err := uploadBlock(ctx, t.c.bkt, t.tenant, out.ULID, bdir); err != nil {
			return err
		}
		t.idx.Blocks = append(t.idx.Blocks, bucketindex.BlockFromMeta(out, t.c.opts.Now()))
		slices.SortFunc(t.idx.Blocks, func(a, b bucketindex.Block) int { return a.ID.Compare(b.ID) })
		t.c.metrics.blocksWritten.Inc()
		t.c.metrics.samplesCompacted.Add(float64(out.Stats.NumSamples))
	}
	for _, b := range j.blocks {
		if err := t.markForDeletion(ctx, b.ID, reasonCompacted); err != nil {
			return fmt.Errorf("mark compacted source block: %w", err)
		}
	}
	t.c.metrics.compactions.Inc()
	t.c.metrics.blocksCompacted.Add(float64(len(j.blocks)))
	d := time.Since(start)
	t.c.metrics.compactionDuration.Observe(d.Seconds())

	attrs := []any{
		"range", model.Duration(time.Duration(j.rangeMs) * time.Millisecond),
		"window_start", time.UnixMilli(j.start).UTC(),
		"inputs", len(j.blocks),
		"duration", d,
	}
	if out == nil {
		t.logger.Info("compacted blocks into nothing: they hold no sample", attrs...)
		return nil
	}
	t.logger.Info("compacted blocks", append(attrs,
		"block", out.ULID, "level", out.Compaction.Level,
		"series", out.Stats.NumSeries, "samples", out.Stats.NumSamples)...)
	return nil
}

// deleteMarked deletes the blocks whose deletion mark is older than the
// deletion delay. A failed deletion is retried next cycle.
func (t *tenantCycle) deleteMarked(ctx context.Context) error {
	now := t.c.opts.Now()
	var errs []error
	var deleted []ulid.ULID
	for _, m := range t.idx.DeletionMarks {
		if now.Sub(time.Unix(m.DeletionTime, 0)) < t.c.cfg.DeletionDelay {
			continue
		}
		if err := deleteBlock(ctx, t.c.bkt, t.tenant, m.ID); err != nil {
			t.c.metrics.blockDeletionsFailed.Inc()
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		t.c.metrics.blocksDeleted.Inc()
		deleted = append(deleted, m.ID)
		t.logger.Info("deleted block", "block", m.ID, "marked_at", time.Unix(m.DeletionTime, 0).UTC())
	}
	if len(deleted) > 0 {
		t.idx.Blocks = slices.DeleteFunc(t.idx.Blocks, func(b bucketindex.Block) bool { return slices.Contains(deleted, b.ID) })
		t.idx.DeletionMarks = slices.DeleteFunc(t.idx.DeletionMarks, func(m bucketindex.DeletionMark) bool { return slices.Contains(deleted, m.ID) })
	}
	return errors.Join(errs...)
}

// cleanupPartial deletes block directories without meta.json whose newest
// object is older than -compactor.cleanup-partial-after, and the rest of
// blocks whose deletion stopped half way.
func (t *tenantCycle) cleanupPartial(ctx context.Context, partial []ulid.ULID) error {
	now := t.c.opts.Now()
	var errs []error
	for _, id := range partial {
		age, mark, err := partialAge(ctx, t.c.bkt, t.tenant, id, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("inspect partial block: %w", err))
			continue
		}
		halfDeleted := mark != nil && now.Sub(time.Unix(mark.DeletionTime, 0)) >= t.c.cfg.DeletionDelay
		if age < t.c.cfg.CleanupPartialAfter && !halfDeleted {
			continue
		}
		if err := deleteBlock(ctx, t.c.bkt, t.tenant, id); err != nil {
			t.c.metrics.blockDeletionsFailed.Inc()
			errs = append(errs, err)
			continue
		}
		t.c.metrics.partialBlocksDeleted.Inc()
		t.logger.Info("deleted partial block", "block", id, "age", age, "was_marked", mark != nil)
	}
	return errors.Join(errs...)
}
