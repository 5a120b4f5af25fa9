// Package distributor is the write path's front: it validates each series of
// a decoded remote-write request against its tenant's limits, applies the
// tenant's ingestion rate limit and hands the valid series to the ingesters.
package distributor

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/isobar-tsdb/isobar/ingest/hatracker"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/validation"
)

// Config configures the distributor.
type Config struct {
	MaxRecvMsgSize      int           `yaml:"max_recv_msg_size"`
	MaxSeriesPerRequest int           `yaml:"max_series_per_request"`
	ForgetIdleTenant    time.Duration `yaml:"forget_idle_tenant_after"`
	RemoteTimeout       time.Duration `yaml:"remote_timeout"`
	// Instance limits: what one distributor process holds at once.
	MaxInflightPushRequests      int   `yaml:"max_inflight_push_requests"`
	MaxInflightPushRequestsBytes int64 `yaml:"max_inflight_push_requests_bytes"`

	HATracker hatracker.Config `yaml:"ha_tracker"`
}

// RegisterFlags registers the distributor flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&c.MaxRecvMsgSize, "distributor.max-recv-msg-size", 100<<20, "Maximum size in bytes of a remote-write request, compressed and decompressed.")
	f.IntVar(&c.MaxSeriesPerRequest, "distributor.max-series-per-request", 100_000, "Maximum number of series in one remote-write request.")
	f.DurationVar(&c.RemoteTimeout, "distributor.remote-timeout", 5*time.Second, "How long a push to one ingester may take.")
	f.IntVar(&c.MaxInflightPushRequests, "distributor.instance-limits.max-inflight-push-requests", 2000, "Push requests this process handles at once; more are answered 503 (retried) before they cost memory. 0 means no limit.")
	f.Int64Var(&c.MaxInflightPushRequestsBytes, "distributor.instance-limits.max-inflight-push-requests-bytes", 1<<30, "Compressed bytes of the push requests this process handles at once (as declared, or as read); more are answered 503. 0 means no limit.")
	f.DurationVar(&c.ForgetIdleTenant, "distributor.forget-idle-tenant-after", 15*time.Minute, "Drop the rate limiter and the per-tenant metrics of a tenant that sent nothing for this long.")
	c.HATracker.RegisterFlags(f)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.MaxRecvMsgSize <= 0 || c.MaxSeriesPerRequest <= 0 || c.ForgetIdleTenant <= 0 {
		return fmt.Errorf("-distributor.max-recv-msg-size, -distributor.max-series-per-request and -distributor.forget-idle-tenant-after must be positive")
	}
	return c.HATracker.Validate()
}

// Distributor validates, rate-limits and forwards remote writes.
type Distributor struct {
	services.Service

	cfg       Config
	overrides *limits.Overrides
	pusher    rpc.Pusher
	ha        *hatracker.Tracker
	logger    *slog.Logger
	now       func() time.Time

	mu       sync.Mutex
	limiters map[string]*tenantLimiter

	receivedSamples   *prometheus.CounterVec
	receivedExemplars *prometheus.CounterVec
	discardedSamples  *prometheus.CounterVec
	discardedExempl   *prometheus.CounterVec
	dedupedSamples    *prometheus.CounterVec
}

type tenantLimiter struct {
	limiter  *rate.Limiter
	rate     float64
	burst    int
	lastSeen time.Time
}

// New returns a distributor that stores through pusher.
// ha, if not nil, deduplicates the samples of HA pairs.
func New(cfg Config, overrides *limits.Overrides, pusher rpc.Pusher, ha *hatracker.Tracker, logger *slog.Logger, reg prometheus.Registerer) (*Distributor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Distributor{
		cfg:       cfg,
		overrides: overrides,
		pusher:    pusher,
		ha:        ha,
		logger:    logger.With("component", "distributor"),
		now:       time.Now,
		limiters:  map[string]*tenantLimiter{},
		receivedSamples: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_received_samples_total",
			Help: "Samples (floats and histograms) received, before validation, by tenant.",
		}, []string{"tenant"}),
		receivedExemplars: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_received_exemplars_total",
			Help: "Exemplars received, before validation, by tenant.",
		}, []string{"tenant"}),
		discardedSamples: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_discarded_samples_total",
			Help: "Samples the distributor rejected, by tenant and reason (label problems are counted by the ingester).",
		}, []string{"tenant", "reason"}),
		dedupedSamples: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_deduplicated_samples_total",
			Help: "Samples dropped for coming from a replica of an HA cluster that is not its elected one, by tenant and cluster.",
		}, []string{"tenant", "cluster"}),
		discardedExempl: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_discarded_exemplars_total",
			Help: "Exemplars dropped by validation, by tenant.",
		}, []string{"tenant"}),
	}
	d.Service = services.NewTimerService(time.Minute, d.starting, d.forgetIdleTenants, d.stopping)
	return d, nil
}

// forgetIdleTenants drops what the distributor keeps per tenant for tenants
// that stopped writing.
func (d *Distributor) forgetIdleTenants(context.Context) error {
	cutoff := d.now().Add(-d.cfg.ForgetIdleTenant)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, tl := range d.limiters {
		if tl.lastSeen.After(cutoff) {
			continue
		}
		delete(d.limiters, id)
		for _, v := range []*prometheus.CounterVec{d.receivedSamples, d.receivedExemplars, d.discardedExempl} {
			v.DeleteLabelValues(id)
		}
		d.discardedSamples.DeletePartialMatch(prometheus.Labels{"tenant": id})
	}
	return nil
}

// RecvLimits are the decode limits for the tenant's requests.
func (d *Distributor) RecvLimits(tenantID string) (maxBytes int, dec rwproto.Limits) {
	return d.cfg.MaxRecvMsgSize, rwproto.Limits{
		MaxSeries:          d.cfg.MaxSeriesPerRequest,
		MaxLabelsPerSeries: d.overrides.For(tenantID).MaxLabelNamesPerSeries,
	}
}

// starting starts the HA tracker, if any: it reads the elections before the
// first push.
func (d *Distributor) starting(ctx context.Context) error {
	if d.ha == nil {
		return nil
	}
	return services.StartAndAwaitRunning(ctx, d.ha)
}

func (d *Distributor) stopping(error) error {
	if d.ha == nil {
		return nil
	}
	return services.StopAndAwaitTerminated(context.Background(), d.ha)
}

// Push validates req, drops its invalid series, and stores the rest. The
// valid series are stored even when the returned error reports invalid ones.
func (d *Distributor) Push(ctx context.Context, req *rwproto.Request) error {
	tenantID, err := tenant.From(ctx)
	if err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	l := d.overrides.For(tenantID)
	received, exemplars := 0, 0
	for i := range req.Timeseries {
		received += len(req.Timeseries[i].Samples) + len(req.Timeseries[i].Histograms)
		exemplars += len(req.Timeseries[i].Exemplars)
	}
	lim := d.limiter(tenantID, l)
	d.receivedSamples.WithLabelValues(tenantID).Add(float64(received))
	if exemplars > 0 {
		d.receivedExemplars.WithLabelValues(tenantID).Add(float64(exemplars))
	}

	var (
		invalid invalidSeries
		deduped haDeduped
	)
	if d.ha != nil && l.AcceptHASamples {
		if deduped, err = d.dedupe(ctx, tenantID, l, req, &invalid); err != nil {
			return err
		}
	}
	d.validate(tenantID, l, req, &invalid)
	d.validMetadata(l, req)

	// Metadata costs like a sample: a metadata-only flood is limited too.
	valid := req.NumSamples()
	if cost := valid + len(req.Metadata); cost > 0 && !lim.AllowN(d.now(), cost) {
		d.discardedSamples.WithLabelValues(tenantID, "rate_limited").Add(float64(valid))
		return rpc.Errorf(rpc.CauseTenantLimit,
			"ingestion rate limit of %g samples/s with burst %d exceeded by a request of %d samples and %d metadata (-distributor.ingestion-rate-limit, -distributor.ingestion-burst-size)",
			l.IngestionRate, l.IngestionBurstSize, valid, len(req.Metadata))
	}

	var pushErr error
	if len(req.Timeseries) > 0 || len(req.Metadata) > 0 {
		pushErr = d.pusher.Push(ctx, req)
	}
	if pushErr == nil && invalid.count == 0 && deduped.samples > 0 && len(req.Timeseries) == 0 {
		return deduped.err() // nothing stored: the sender hears why
	}
	return combine(pushErr, invalid)
}

// invalidSeries summarises the series validation rejected.
type invalidSeries struct {
	count int
	first *validation.Error
}

func (inv *invalidSeries) add(err *validation.Error) {
	inv.count++
	if inv.first == nil {
		inv.first = err
	}
}

// validate checks the samples of each series, moves the valid series of req
// to its front and truncates it to them, so the rest of the path sees only
// valid series; the others are added to inv. Labels are checked by the
// ingester when it meets a series for the first time.
func (d *Distributor) validate(tenantID string, l *limits.Limits, req *rwproto.Request, inv *invalidSeries) {
	nowMs := d.now().UnixMilli()
	kept := 0
	droppedExemplars := 0
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		dropped, err := validation.Samples(l, ts, nowMs)
		droppedExemplars += dropped
		if err == nil && dropped > 0 && len(ts.Labels) == ts.NumLabels {
			// Ingesters get a series' bytes, which still hold the
			// dropped exemplars: they must get what is left instead,
			// encoded again when forwarded. (A series with more labels
			// than were kept is refused by them whole, as by the single
			// binary.)
			ts.Raw = nil
		}
		if err != nil {
			inv.add(err)
			d.discardedSamples.WithLabelValues(tenantID, string(err.Reason)).Add(float64(len(ts.Samples) + len(ts.Histograms)))
			continue
		}
		if kept != i {
			// Swap rather than copy so the rejected element keeps its own
			// slices for reuse by the next request.
			req.Timeseries[kept], req.Timeseries[i] = req.Timeseries[i], req.Timeseries[kept]
		}
		kept++
	}
	req.Timeseries = req.Timeseries[:kept]
	if droppedExemplars > 0 {
		d.discardedExempl.WithLabelValues(tenantID).Add(float64(droppedExemplars))
	}
}

// validMetadata drops metadata without a family name or with oversized text.
func (d *Distributor) validMetadata(l *limits.Limits, req *rwproto.Request) {
	kept := req.Metadata[:0]
	for _, m := range req.Metadata {
		if m.MetricFamilyName == "" || len(m.MetricFamilyName) > l.MaxMetadataLength ||
			len(m.Help) > l.MaxMetadataLength || len(m.Unit) > l.MaxMetadataLength {
			continue
		}
		kept = append(kept, m)
	}
	req.Metadata = kept
}

func (d *Distributor) limiter(tenantID string, l *limits.Limits) *rate.Limiter {
	d.mu.Lock()
	defer d.mu.Unlock()
	tl, ok := d.limiters[tenantID]
	if !ok || tl.rate != l.IngestionRate || tl.burst != l.IngestionBurstSize {
		tl = &tenantLimiter{limiter: rate.NewLimiter(rate.Limit(l.IngestionRate), l.IngestionBurstSize), rate: l.IngestionRate, burst: l.IngestionBurstSize}
		d.limiters[tenantID] = tl
	}
	tl.lastSeen = d.now()
	return tl.limiter
}

// combine reports a storage failure first: a sender must retry it, and the
// invalid series will be reported again on the retry.
func combine(pushErr error, inv invalidSeries) error {
	if pushErr != nil {
		if inv.count == 0 || rpc.CauseOf(pushErr) != rpc.CauseBadData {
			return pushErr
		}
		return rpc.Errorf(rpc.CauseBadData, "%s; and %d series failed validation, the first: %v", pushErr, inv.count, inv.first)
	}
	if inv.count == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d series failed validation and were not stored (the other series of the request were); the first: ", inv.count)
	b.WriteString(inv.first.Error())
	return rpc.Errorf(rpc.CauseBadData, "%s", b.String())
}
