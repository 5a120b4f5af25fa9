// Package ingester stores each tenant's series in its own Prometheus TSDB
// (head, WAL and 2-hour blocks under the data dir), answers queries over
// them, and closes the heads of tenants that stopped writing.
package ingester

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
	"golang.org/x/sync/errgroup"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/shipper"
)

// Config configures the ingester.
type Config struct {
	// Dir holds one TSDB directory per tenant; set from -data.dir.
	Dir                  string         `yaml:"-"`
	BlockRange           time.Duration  `yaml:"block_range"`
	Retention            model.Duration `yaml:"retention_period"`
	WALCompression       bool           `yaml:"wal_compression"`
	CloseIdleTenantAfter time.Duration  `yaml:"close_idle_tenant_after"`
	MetadataRetainPeriod time.Duration  `yaml:"metadata_retain_period"`
	StripeSize           int            `yaml:"stripe_size"`
	IsolationEnabled     bool           `yaml:"isolation_enabled"`
	CreatedTimestampZero bool           `yaml:"created_timestamp_zero_ingestion"`
	OpenConcurrency      int            `yaml:"open_concurrency"`
	ShipInterval         time.Duration  `yaml:"ship_interval"`
	MaxTenants           int            `yaml:"max_tenants"`
	MaxSeries            int64          `yaml:"max_series"`
}

// RegisterFlags registers the ingester flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.BlockRange, "ingester.block-range", 2*time.Hour, "Time range of the blocks cut from a tenant's head.")
	c.Retention = model.Duration(15 * 24 * time.Hour)
	f.Var(&c.Retention, "ingester.retention-period", "How long blocks are kept on local disk.")
	f.BoolVar(&c.WALCompression, "ingester.wal-compression", true, "Compress the WAL with snappy.")
	f.DurationVar(&c.CloseIdleTenantAfter, "ingester.close-idle-tenant-after", time.Hour, "Flush and close the head of a tenant that received no write for this long. 0 keeps heads open.")
	f.DurationVar(&c.MetadataRetainPeriod, "ingester.metadata-retain-period", 10*time.Minute, "Forget metric metadata not received again for this long.")
	f.IntVar(&c.StripeSize, "ingester.stripe-size", 16384, "Number of lock stripes of each tenant's series map (power of two): more for tenants with millions of series, fewer for many small tenants.")
	f.BoolVar(&c.CreatedTimestampZero, "ingester.created-timestamp-zero-ingestion", false, "Store a 0 sample at the created (start) timestamp that a remote write 2.0 sender gives a counter's samples, as Prometheus' created-timestamp-zero-ingestion does, so that rate() sees a counter's first increase.")
	f.BoolVar(&c.IsolationEnabled, "ingester.isolation-enabled", false, "Hide the samples of a push from queries until all of it is appended. Costs CPU on every append and memory for every series.")
	f.IntVar(&c.OpenConcurrency, "ingester.open-concurrency", 4, "How many tenants' WALs are replayed at once on start.")
	f.DurationVar(&c.ShipInterval, "ingester.ship-interval", time.Minute, "How often new blocks are looked for and shipped to the bucket. 0 ships none.")
	f.Int64Var(&c.MaxSeries, "ingester.instance-limits.max-series", 0, "Series this ingester holds in memory over all its tenants (each costs memory: size it to the RAM, about 4-8 KiB a series); a sample that would create one more is refused as retryable (503), the rest of the push is stored. 0 means no limit.")
	f.IntVar(&c.MaxTenants, "ingester.instance-limits.max-tenants", 10_000, "Tenants whose TSDB this ingester holds open at once (each costs memory); a write that would open one more is answered 503. 0 means no limit.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.BlockRange < time.Minute:
		return fmt.Errorf("-ingester.block-range must be at least 1m, is %s", c.BlockRange)
	case time.Duration(c.Retention) < c.BlockRange:
		return fmt.Errorf("-ingester.retention-period (%s) must be at least -ingester.block-range (%s)", c.Retention, c.BlockRange)
	case c.StripeSize <= 0 || c.StripeSize&(c.StripeSize-1) != 0:
		return fmt.Errorf("-ingester.stripe-size must be a power of two, is %d", c.StripeSize)
	case c.OpenConcurrency <= 0:
		return fmt.Errorf("-ingester.open-concurrency must be positive")
	case c.ShipInterval < 0:
		return fmt.Errorf("-ingester.ship-interval must not be negative")
	}
	return nil
}

// Ingester holds the tenants' TSDBs.
type Ingester struct {
	services.Service

	cfg       Config
	overrides *limits.Overrides
	logger    *slog.Logger
	now       func() time.Time

	mu      sync.Mutex
	tenants map[string]*tenantDB
	// series counts the series of every tenant's head, against
	// -ingester.instance-limits.max-series.
	series instanceSeries

	metrics  *metrics
	scratch  sync.Pool
	requests sync.Pool // *rwproto.Request for PushBody

	// lifecycler puts the ingester in the ring once its WAL is replayed;
	// nil when it runs without a ring.
	lifecycler services.Service
	// bkt receives the blocks the tenants' heads are cut into; nil ships none.
	bkt         bucket.Bucket
	instanceID  string
	shipMetrics *shipper.Metrics
}

// Deps are what the ingester works with besides its configuration.
type Deps struct {
	// Lifecycler puts the ingester in the ring once its WAL is replayed;
	// nil when it runs without a ring.
	Lifecycler services.Service
	// Bucket receives the tenants' blocks; nil keeps them local only.
	Bucket bucket.Bucket
	// InstanceID names the ingester in the meta.json of the blocks it ships.
	InstanceID string
}

// tenantDB is one tenant's TSDB and what the ingester keeps beside it.
type tenantDB struct {
	id   string
	db   *tsdb.DB
	reg  *prometheus.Registry
	refs *refCache
	meta *metadataStore
	// shipper uploads the tenant's blocks; nil without a bucket.
	shipper *shipper.Shipper

	// ready is closed when opening finished; openErr says how.
	ready   chan struct{}
	openErr error

	// inUse is held shared by every push and query, and exclusively to close.
	inUse sync.RWMutex
	// appending is held shared by a push from its appender's creation to
	// its commit, and exclusively while a flush cuts the head: a sample
	// committed while the cut was written would be truncated with it.
	appending sync.RWMutex
	closed    bool
	lastPush  atomic.Int64

	// applied holds the limits its TSDB runs with; limitsMu orders
	// applying new ones.
	limitsMu sync.Mutex
	applied  tsdbLimits
}

// tsdbLimits are the per-tenant limits a tenant's TSDB itself enforces.
type tsdbLimits struct {
	outOfOrderWindow model.Duration
	maxExemplars     int
}

func tsdbLimitsOf(l *limits.Limits) tsdbLimits {
	return tsdbLimits{outOfOrderWindow: l.OutOfOrderTimeWindow, maxExemplars: l.MaxExemplars}
}

// New returns an ingester; it opens the tenants found on disk when started,
// and then starts the lifecycler, if any, to join the ring.
func New(cfg Config, overrides *limits.Overrides, deps Deps, logger *slog.Logger, reg prometheus.Registerer) (*Ingester, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	i := &Ingester{
		cfg:       cfg,
		overrides: overrides,
		logger:    logger.With("component", "ingester"),
		now:       time.Now,
		tenants:   map[string]*tenantDB{},
		scratch:   newScratchPool(),
		requests:  sync.Pool{New: func() any { return &rwproto.Request{} }},

		lifecycler: deps.Lifecycler,
		bkt:        deps.Bucket,
		instanceID: deps.InstanceID,
	}
	i.series.max = cfg.MaxSeries
	i.metrics = newMetrics(reg, i)
	if i.bkt != nil {
		i.shipMetrics = shipper.NewMetrics(reg)
	}
	i.Service = services.NewBasicService(i.starting, i.running, i.stopping)
	overrides.OnChange(func() {
		for _, t := range i.openTenants() {
			i.applyLimits(t)
		}
	})
	return i, nil
}

// applyLimits gives t's TSDB the tenant's out-of-order window and exemplar
// storage size in force, if they changed: a tenant's limits change while
// it is open (the runtime configuration file).
func (i *Ingester) applyLimits(t *tenantDB) {
	t.inUse.RLock()
	defer t.inUse.RUnlock()
	if t.closed {
		return
	}
	t.limitsMu.Lock()
	defer t.limitsMu.Unlock()
	want := tsdbLimitsOf(i.overrides.For(t.id))
	if want == t.applied {
		return
	}
	// The TSDB sets up its out-of-order log unguarded by what commits
	// read it: no push may be between appender and commit meanwhile.
	t.appending.Lock()
	defer t.appending.Unlock()
	cfg := &config.Config{StorageConfig: config.StorageConfig{
		TSDBConfig:      &config.TSDBConfig{OutOfOrderTimeWindow: time.Duration(want.outOfOrderWindow).Milliseconds()},
		ExemplarsConfig: &config.ExemplarsConfig{MaxExemplars: int64(want.maxExemplars)},
	}}
	if err := t.db.ApplyConfig(cfg); err != nil {
		i.logger.Error("could not apply new limits to tenant", "tenant", t.id, "out_of_order_time_window", want.outOfOrderWindow, "max_exemplars", want.maxExemplars, "err", err)
		return
	}
	i.logger.Info("new limits applied to tenant", "tenant", t.id, "out_of_order_time_window", want.outOfOrderWindow, "max_exemplars", want.maxExemplars)
	t.applied = want
}

// starting replays the WAL of every tenant on disk: the ingester is not
// ready, and takes no writes, until every acknowledged sample is back.
func (i *Ingester) starting(ctx context.Context) error {
	if err := os.MkdirAll(i.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("create tsdb dir: %w", err)
	}
	entries, err := os.ReadDir(i.cfg.Dir)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	start := i.now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(i.cfg.OpenConcurrency)
	for _, e := range entries {
		if !e.IsDir() || tenant.Validate(e.Name()) != nil {
			continue
		}
		id := e.Name()
		g.Go(func() error {
			t, err := i.tenant(gctx, id, true)
			if err != nil {
				return fmt.Errorf("open tenant %q: %w", id, err)
			}
			t.inUse.RUnlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	i.logger.Info("tenants opened", "tenants", len(entries), "duration", i.now().Sub(start))
	if i.lifecycler != nil {
		// Only now, with every acknowledged sample back, may writes come.
		// The lifecycler outlives starting: stopping ends it, after which
		// the instance has left the ring.
		if err := i.lifecycler.StartAsync(context.Background()); err != nil {
			return fmt.Errorf("join the ring: %w", err)
		}
		if err := i.lifecycler.AwaitRunning(ctx); err != nil {
			return fmt.Errorf("join the ring: %w", err)
		}
	}
	return nil
}

func (i *Ingester) running(ctx context.Context) error {
	t := time.NewTicker(idleCheckInterval(i.cfg.CloseIdleTenantAfter))
	defer t.Stop()
	var shipTick <-chan time.Time
	if i.bkt != nil && i.cfg.ShipInterval > 0 {
		st := time.NewTicker(i.cfg.ShipInterval)
		defer st.Stop()
		shipTick = st.C
		// Blocks cut before a crash, and not shipped then, go now.
		i.shipAll(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			i.housekeeping(ctx)
		case <-shipTick:
			i.shipAll(ctx)
		}
	}
}

// shipAll ships the new blocks of every open tenant.
func (i *Ingester) shipAll(ctx context.Context) {
	for _, t := range i.openTenants() {
		if ctx.Err() != nil {
			return
		}
		if err := i.ship(ctx, t); err != nil {
			i.logger.Error("ship blocks", "tenant", t.id, "err", err)
		}
	}
}

func (i *Ingester) ship(ctx context.Context, t *tenantDB) error {
	if t.shipper == nil {
		return nil
	}
	_, err := t.shipper.Sync(ctx)
	return err
}

// openTenants returns the tenants whose TSDB opened successfully.
func (i *Ingester) openTenants() []*tenantDB {
	i.mu.Lock()
	tenants := make([]*tenantDB, 0, len(i.tenants))
	for _, t := range i.tenants {
		tenants = append(tenants, t)
	}
	i.mu.Unlock()
	out := tenants[:0]
	for _, t := range tenants {
		select {
		case <-t.ready:
			if t.openErr == nil {
				out = append(out, t)
			}
		default: // still opening
		}
	}
	return out
}

// Flush cuts the whole head of every tenant into blocks, one per block
// range, and ships them. Operators call it before scaling an ingester
// down; tests call it to get blocks without waiting hours.
func (i *Ingester) Flush(ctx context.Context) error {
	if err := i.errNotRunning(); err != nil {
		return err
	}
	var errs []error
	for _, t := range i.openTenants() {
		t.inUse.RLock()
		if t.closed {
			t.inUse.RUnlock()
			continue
		}
		t.appending.Lock()
		err := flushHead(ctx, t.db, i.cfg.BlockRange.Milliseconds())
		t.appending.Unlock()
		t.inUse.RUnlock()
		if err == nil {
			err = i.ship(ctx, t)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("flush tenant %q: %w", t.id, err))
		}
	}
	return errors.Join(errs...)
}

func idleCheckInterval(idle time.Duration) time.Duration {
	if idle > 0 && idle/4 < time.Minute {
		return max(idle/4, time.Second)
	}
	return time.Minute
}

// stopping leaves the ring, so distributors send elsewhere, then closes
// every head, which syncs its WAL.
func (i *Ingester) stopping(_ error) error {
	var errs []error
	if i.lifecycler != nil {
		if err := services.StopAndAwaitTerminated(context.Background(), i.lifecycler); err != nil {
			errs = append(errs, fmt.Errorf("leave the ring: %w", err))
		}
	}
	i.mu.Lock()
	tenants := make([]*tenantDB, 0, len(i.tenants))
	for _, t := range i.tenants {
		tenants = append(tenants, t)
	}
	i.mu.Unlock()
	for _, t := range tenants {
		<-t.ready
		if err := i.closeTenant(t, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tenant returns the tenant's open TSDB, opening it if needed. With create
// false, a tenant that has no directory yet is not created and nil is returned.
// The caller must release the returned tenant with t.inUse.RUnlock.
func (i *Ingester) tenant(ctx context.Context, id string, create bool) (*tenantDB, error) {
	for {
		i.mu.Lock()
		t, ok := i.tenants[id]
		if !ok {
			if !create {
				if _, err := os.Stat(filepath.Join(i.cfg.Dir, id)); err != nil {
					i.mu.Unlock()
					return nil, nil
				}
			}
			t = &tenantDB{id: id, ready: make(chan struct{})}
			i.tenants[id] = t
			i.mu.Unlock()
			t.openErr = i.open(t)
			close(t.ready)
			if t.openErr == nil {
				i.applyLimits(t) // limits changed while it opened
			}
			if t.openErr != nil {
				i.mu.Lock()
				delete(i.tenants, id)
				i.mu.Unlock()
				return nil, t.openErr
			}
		} else {
			i.mu.Unlock()
		}
		select {
		case <-t.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if t.openErr != nil {
			return nil, t.openErr
		}
		t.inUse.RLock()
		if !t.closed {
			return t, nil
		}
		t.inUse.RUnlock() // closed meanwhile for being idle: open it again
	}
}

// admitTenant refuses a write that would open one tenant more than
// -ingester.instance-limits.max-tenants. Tenants found on disk at start
// are opened whatever their number: their WALs hold acknowledged data.
func (i *Ingester) admitTenant(id string) error {
	if i.cfg.MaxTenants <= 0 {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, open := i.tenants[id]; open || len(i.tenants) < i.cfg.MaxTenants {
		return nil
	}
	return rpc.Errorf(rpc.CauseUnavailable, "this ingester holds %d tenants open, its limit (-ingester.instance-limits.max-tenants): tenant %q is not opened", len(i.tenants), id)
}

func (i *Ingester) open(t *tenantDB) error {
	l := i.overrides.For(t.id)
	t.refs = newRefCache()
	t.meta = newMetadataStore()
	t.reg = prometheus.NewRegistry()
	t.lastPush.Store(i.now().UnixNano())
	tracker := newSeriesTracker(t.id, func() *limits.Limits { return i.overrides.For(t.id) }, &i.series, t.refs, i.metrics.activeSeries.WithLabelValues(t.id))

	opts := tsdb.DefaultOptions()
	opts.MinBlockDuration = i.cfg.BlockRange.Milliseconds()
	opts.MaxBlockDuration = i.cfg.BlockRange.Milliseconds()
	opts.RetentionDuration = time.Duration(i.cfg.Retention).Milliseconds()
	opts.OutOfOrderTimeWindow = time.Duration(l.OutOfOrderTimeWindow).Milliseconds()
	// Exemplar storage exists even when the limit is 0, so that a new
	// limit can size it while the tenant is open.
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = int64(l.MaxExemplars)
	t.applied = tsdbLimitsOf(l)
	opts.StripeSize = i.cfg.StripeSize
	opts.SeriesLifecycleCallback = tracker
	opts.EnableOverlappingCompaction = false
	opts.EnableSharding = true // query sharding: 8 bytes a series for its label hash
	opts.IsolationDisabled = !i.cfg.IsolationEnabled
	opts.EnableSTAsZeroSample = i.cfg.CreatedTimestampZero
	opts.WALCompression = compression.None
	if i.cfg.WALCompression {
		opts.WALCompression = compression.Snappy
	}
	dir := filepath.Join(i.cfg.Dir, t.id)
	var opened atomic.Pointer[tsdb.DB]
	if i.bkt != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create tsdb dir of tenant %q: %w", t.id, err)
		}
		sh, err := shipper.New(i.bkt, t.id, dir, i.instanceID, i.shipMetrics, i.logger)
		if err != nil {
			return fmt.Errorf("tenant %q: %w", t.id, err)
		}
		t.shipper = sh
		// Local retention deletes a block only once it is in the bucket.
		// Open itself reloads blocks before db is set: nothing is deleted then.
		opts.BlocksToDelete = sh.BlocksToDelete(func(blocks []*tsdb.Block) map[ulid.ULID]struct{} {
			db := opened.Load()
			if db == nil {
				return map[ulid.ULID]struct{}{}
			}
			return tsdb.DefaultBlocksToDelete(db)(blocks)
		})
	}
	db, err := tsdb.Open(dir, i.logger.With("tenant", t.id), t.reg, opts, nil)
	if err != nil {
		i.metrics.activeSeries.DeleteLabelValues(t.id)
		return fmt.Errorf("open tsdb of tenant %q: %w", t.id, err)
	}
	opened.Store(db)
	t.db = db
	i.logger.Debug("tenant opened", "tenant", t.id, "series", db.Head().NumSeries())
	return nil
}

// housekeeping closes idle tenants and forgets stale metadata.
func (i *Ingester) housekeeping(ctx context.Context) {
	now := i.now()
	i.mu.Lock()
	tenants := make([]*tenantDB, 0, len(i.tenants))
	for _, t := range i.tenants {
		tenants = append(tenants, t)
	}
	i.mu.Unlock()
	for _, t := range tenants {
		if ctx.Err() != nil {
			return
		}
		select {
		case <-t.ready:
		default:
			continue // still opening
		}
		if t.openErr != nil {
			continue
		}
		t.meta.purge(now.Add(-i.cfg.MetadataRetainPeriod))
		idle := now.Sub(time.Unix(0, t.lastPush.Load()))
		if i.cfg.CloseIdleTenantAfter > 0 && idle > i.cfg.CloseIdleTenantAfter {
			if err := i.closeTenant(t, true); err != nil {
				i.logger.Error("close idle tenant", "tenant", t.id, "err", err)
			}
		}
	}
}

// closeTenant closes a tenant's TSDB. When idle, its head is first compacted
// into a block so the next open replays nothing, and a tenant in use is left
// alone.
func (i *Ingester) closeTenant(t *tenantDB, idle bool) error {
	if idle {
		if !t.inUse.TryLock() {
			return nil
		}
	} else {
		t.inUse.Lock()
	}
	defer t.inUse.Unlock()
	if t.closed {
		return nil
	}
	if idle {
		if err := flushHead(context.Background(), t.db, i.cfg.BlockRange.Milliseconds()); err != nil {
			return fmt.Errorf("flush head of tenant %q: %w", t.id, err)
		}
		// A closed tenant ships nothing until it opens again, so it stays
		// open until its blocks are in the bucket.
		if err := i.ship(context.Background(), t); err != nil {
			return fmt.Errorf("ship blocks of idle tenant %q: %w", t.id, err)
		}
	}
	t.closed = true
	i.mu.Lock()
	if i.tenants[t.id] == t {
		delete(i.tenants, t.id)
	}
	i.mu.Unlock()
	i.metrics.deleteTenant(t.id)
	if i.shipMetrics != nil {
		i.shipMetrics.DeleteTenant(t.id)
	}
	if err := t.db.Close(); err != nil {
		return fmt.Errorf("close tsdb of tenant %q: %w", t.id, err)
	}
	i.logger.Info("tenant closed", "tenant", t.id, "idle", idle)
	return nil
}

// flushHead writes everything in the head, in-order and out-of-order, to
// blocks, one per aligned block range, as the TSDB itself cuts them: the
// compactor groups blocks by those ranges.
func flushHead(ctx context.Context, db *tsdb.DB, blockRange int64) error {
	h := db.Head()
	for h.NumSeries() > 0 && h.MinTime() <= h.MaxTime() {
		mint := h.MinTime()
		end := rangeStart(mint, blockRange) + blockRange
		if err := db.CompactHead(tsdb.NewRangeHead(h, mint, min(end-1, h.MaxTime()))); err != nil {
			return err
		}
		if h.MinTime() <= mint {
			break // nothing was cut; never loop
		}
	}
	return db.CompactOOOHead(ctx)
}

// rangeStart is the start of the aligned block range holding t.
func rangeStart(t, blockRange int64) int64 {
	if t >= 0 {
		return t - t%blockRange
	}
	return -((-t + blockRange - 1) / blockRange) * blockRange
}

// errNotRunning answers writes and reads before the WAL replay finished.
func (i *Ingester) errNotRunning() error {
	if s := i.State(); s != services.Running {
		return rpc.Errorf(rpc.CauseUnavailable, "ingester is %s, not yet running: its WAL replay has not finished", s)
	}
	return nil
}

// Tenants lists the tenants with an open TSDB.
func (i *Ingester) Tenants() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	ids := make([]string, 0, len(i.tenants))
	for id := range i.tenants {
		ids = append(ids, id)
	}
	return ids
}
