// Package ruler evaluates every tenant's recording and alerting rules:
// one Prometheus rule manager per tenant, its queries run by the
// querier's engine over the querier's storage (or by a query-frontend,
// -ruler.query-frontend.address), its results (recording
// rules, ALERTS, ALERTS_FOR_STATE) written through the distributor like
// any remote write, its alerts sent to Alertmanager by a notifier per
// tenant. Rule groups are kept in a Store (the bucket, or a read-only
// directory) and changed through the Cortex/Mimir configuration API.
package ruler

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// Config configures the ruler.
type Config struct {
	PollInterval              time.Duration          `yaml:"poll_interval"`
	EvaluationInterval        time.Duration          `yaml:"evaluation_interval"`
	AlertmanagerURLs          flagext.StringSliceCSV `yaml:"alertmanager_url"`
	AlertmanagerSendTenant    bool                   `yaml:"alertmanager_send_tenant"`
	NotificationQueueCapacity int                    `yaml:"notification_queue_capacity"`
	NotificationTimeout       time.Duration          `yaml:"notification_timeout"`
	ResendDelay               time.Duration          `yaml:"resend_delay"`
	OutageTolerance           time.Duration          `yaml:"for_outage_tolerance"`
	ForGracePeriod            time.Duration          `yaml:"for_grace_period"`
	ExternalURL               string                 `yaml:"external_url"`
	LocalDirectory            string                 `yaml:"local_directory"`
	QueryFrontendAddress      string                 `yaml:"query_frontend_address"`
	QueryFrontendTimeout      time.Duration          `yaml:"query_frontend_timeout"`
}

// RegisterFlags registers the ruler's flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.PollInterval, "ruler.poll-interval", time.Minute, "How often the ruler reads the rule groups from storage (changes through the API apply at once on the ruler that took them).")
	f.DurationVar(&c.EvaluationInterval, "ruler.evaluation-interval", time.Minute, "Evaluation interval of rule groups that set none.")
	f.Var(&c.AlertmanagerURLs, "ruler.alertmanager-url", "Comma-separated Alertmanager base URLs (http://host:9093, or with a path prefix) to send alerts to; dns+http://name:port and dnssrv+http://_service._tcp.name resolve every poll. Empty sends none.")
	f.BoolVar(&c.AlertmanagerSendTenant, "ruler.alertmanager-send-tenant", false, "Send the tenant as X-Scope-OrgID to Alertmanager (for a multi-tenant Alertmanager).")
	f.IntVar(&c.NotificationQueueCapacity, "ruler.notification-queue-capacity", 10000, "Alerts a tenant's notifier holds for Alertmanager before it drops the oldest.")
	f.DurationVar(&c.NotificationTimeout, "ruler.notification-timeout", 10*time.Second, "Timeout of a request to Alertmanager.")
	f.DurationVar(&c.ResendDelay, "ruler.resend-delay", time.Minute, "How long a firing alert waits before it is sent to Alertmanager again.")
	f.DurationVar(&c.OutageTolerance, "ruler.for-outage-tolerance", time.Hour, "How long the ruler may have been down for a pending alert's 'for' time to be restored after it starts.")
	f.DurationVar(&c.ForGracePeriod, "ruler.for-grace-period", 10*time.Minute, "Least time left of a restored alert's 'for' wait after a restart: alerts with a 'for' at least this long never fire sooner than this after the ruler starts.")
	f.StringVar(&c.ExternalURL, "ruler.external.url", "", "URL of the ruler's users' Prometheus UI (Grafana), for the alerts' generator URL.")
	f.StringVar(&c.QueryFrontendAddress, "ruler.query-frontend.address", "", "Evaluate rule expressions through this query-frontend (host:port, or http(s)://host:port/prefix; default prefix /prometheus), so they get its splitting and sharding; a querier's address works too. Empty: the querier in this process.")
	f.DurationVar(&c.QueryFrontendTimeout, "ruler.query-frontend.timeout", 2*time.Minute, "Timeout of a rule's query through -ruler.query-frontend.address.")
	f.StringVar(&c.LocalDirectory, "ruler-storage.local.directory", "", "Read rule groups from <directory>/<tenant>/<namespace>.yaml (Prometheus rule files, for rules kept in git) instead of the bucket; the configuration API then refuses changes.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.PollInterval <= 0 || c.EvaluationInterval <= 0 || c.NotificationTimeout <= 0 || c.NotificationQueueCapacity <= 0 {
		return errors.New("-ruler.poll-interval, -ruler.evaluation-interval, -ruler.notification-timeout and -ruler.notification-queue-capacity must be positive")
	}
	if c.ExternalURL != "" {
		if _, err := url.Parse(c.ExternalURL); err != nil {
			return fmt.Errorf("-ruler.external.url: %w", err)
		}
	}
	if c.QueryFrontendAddress != "" {
		if _, err := frontendURL(c.QueryFrontendAddress); err != nil {
			return err
		}
		if c.QueryFrontendTimeout <= 0 {
			return errors.New("-ruler.query-frontend.timeout must be positive")
		}
	}
	for _, u := range c.AlertmanagerURLs {
		if _, err := parseAlertmanagerURL(u); err != nil {
			return err
		}
	}
	return nil
}

// Writer stores the ruler's results for the tenant in ctx, as a remote
// write of the same series would be stored: the distributor, in process.
type Writer interface {
	Write(ctx context.Context, req *prompb.WriteRequest) error
}

// TenantLimits answers each tenant's limits (limits.Overrides).
type TenantLimits interface {
	For(tenant string) *limits.Limits
}

// Deps are what the ruler uses of its process.
type Deps struct {
	Engine    promql.QueryEngine
	Queryable storage.Queryable // the tenant is in the context
	Writer    Writer
	Store     Store
	Limits    TenantLimits
	// Owns reports whether this ruler evaluates a group; nil: every group.
	Owns func(tenant, namespace, group string) bool
	// Ownership changes whenever Owns may answer otherwise (the rulers in
	// the ring changed); the ruler then reads its groups again. nil: never.
	Ownership func() string
	// Peers are the base URLs of the other rulers, whose groups
	// /api/v1/rules and /api/v1/alerts add to this ruler's; nil: none.
	Peers func() ([]string, error)
	// Parser parses rule expressions as the querier does.
	Parser parser.Parser
	// Transport carries requests to a query-frontend and to the other
	// rulers (with the cluster's internal credential); nil: Go's default.
	Transport http.RoundTripper
}

// Ruler is the ruler service.
type Ruler struct {
	services.Service
	cfg     Config
	deps    Deps
	logger  *slog.Logger
	metrics *metrics

	// query evaluates the rules' expressions: the engine of the process,
	// or a query-frontend.
	query rules.QueryFunc
	// peerClient asks the other rulers for their groups.
	peerClient *http.Client

	mu      sync.Mutex
	tenants map[string]*tenantRules
	syncNow chan struct{}
}

// New returns a ruler; it evaluates nothing until started.
func New(cfg Config, deps Deps, logger *slog.Logger, reg prometheus.Registerer) *Ruler {
	r := &Ruler{
		cfg:     cfg,
		deps:    deps,
		logger:  logger.With("component", "ruler"),
		metrics: newMetrics(reg),
		tenants: map[string]*tenantRules{},
		syncNow: make(chan struct{}, 1),
	}
	r.peerClient = &http.Client{Transport: deps.Transport}
	r.query = rules.EngineQueryFunc(deps.Engine, deps.Queryable)
	if cfg.QueryFrontendAddress != "" {
		endpoint, _ := frontendURL(cfg.QueryFrontendAddress) // checked by Validate
		r.query = frontendQueryFunc(&http.Client{Timeout: cfg.QueryFrontendTimeout, Transport: deps.Transport}, endpoint)
	}
	r.Service = services.NewBasicService(r.starting, r.running, r.stopping)
	return r
}

func (r *Ruler) starting(ctx context.Context) error {
	if err := r.sync(ctx); err != nil {
		// Rules that cannot be read now may be readable at the next poll;
		// the ruler still serves its API.
		r.logger.Error("read rule groups", "err", err)
	}
	return nil
}

// ownershipCheck is how often the ruler looks for a change of the rulers
// in the ring: a group a ruler left behind is taken over within it.
const ownershipCheck = time.Second

// running reads the rule groups every poll interval, at once after the API
// changed them, and when the rulers in the ring change.
func (r *Ruler) running(ctx context.Context) error {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	check := time.NewTicker(ownershipCheck)
	defer check.Stop()
	owners := r.ownership()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
			now := r.ownership()
			if now == owners {
				continue
			}
			r.logger.Info("rulers in the ring changed; reading the rule groups again", "was", owners, "now", now)
			owners = now
		case <-t.C:
		case <-r.syncNow:
		}
		if err := r.sync(ctx); err != nil {
			r.logger.Error("read rule groups", "err", err)
		}
	}
}

func (r *Ruler) ownership() string {
	if r.deps.Ownership == nil {
		return ""
	}
	return r.deps.Ownership()
}

func (r *Ruler) stopping(error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, t := range r.tenants {
		t.stop()
		delete(r.tenants, id)
	}
	return nil
}

// sync reads every tenant's rule groups and hands the groups this ruler
// owns to the tenant's rule manager, starting and stopping managers as
// tenants gain and lose groups.
func (r *Ruler) sync(ctx context.Context) error {
	start := time.Now()
	ids, err := r.deps.Store.Tenants(ctx)
	if err != nil {
		r.metrics.syncs.WithLabelValues("failed").Inc()
		return fmt.Errorf("list tenants: %w", err)
	}
	var errs []error
	want := map[string]map[string][]rulefmt.RuleGroup{}
	unread := map[string]bool{} // tenants whose groups could not be read keep what runs
	for _, id := range ids {
		if tenant.Validate(id) != nil {
			continue
		}
		groups, err := r.deps.Store.Groups(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
			unread[id] = true
			continue
		}
		owned := map[string][]rulefmt.RuleGroup{}
		for ns, gs := range groups {
			for _, g := range gs {
				if r.deps.Owns == nil || r.deps.Owns(id, ns, g.Name) {
					owned[ns] = append(owned[ns], g)
				}
			}
		}
		if len(owned) > 0 {
			want[id] = owned
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for id, t := range r.tenants {
		if _, ok := want[id]; !ok && !unread[id] {
			t.stop()
			delete(r.tenants, id)
		}
	}
	for id, groups := range want {
		t, ok := r.tenants[id]
		if !ok {
			if t, err = r.newTenant(id); err != nil {
				errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
				continue
			}
			r.tenants[id] = t
		}
		if err := t.update(groups); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
		}
	}
	r.metrics.tenants.Set(float64(len(r.tenants)))
	groups := 0
	for _, byNamespace := range want {
		for _, gs := range byNamespace {
			groups += len(gs)
		}
	}
	r.metrics.groups.Set(float64(groups))
	r.metrics.syncDuration.Observe(time.Since(start).Seconds())
	if len(errs) > 0 {
		r.metrics.syncs.WithLabelValues("failed").Inc()
		return errors.Join(errs...)
	}
	r.metrics.syncs.WithLabelValues("success").Inc()
	return nil
}

// tenantRules are one tenant's rule manager and notifier.
type tenantRules struct {
	id       string
	r        *Ruler
	manager  *rules.Manager
	notifier *notifier
	loader   *memoryLoader
	query    rules.QueryFunc
	done     chan struct{}
	cancel   context.CancelFunc
}

func (r *Ruler) newTenant(id string) (*tenantRules, error) {
	// Stopping cancels the evaluations in flight: a query waiting on a
	// query-frontend that went away would hold the stop for its timeout.
	ctx, cancel := context.WithCancel(tenant.With(context.Background(), id))
	n, err := newNotifier(id, r.cfg, r.logger)
	if err != nil {
		cancel()
		return nil, err
	}
	loader := &memoryLoader{parser: r.deps.Parser, groups: map[string]*rulefmt.RuleGroups{}}
	l := r.deps.Limits.For(id)
	offset := time.Duration(l.RulerQueryOffset)
	query := r.query
	m := rules.NewManager(&rules.ManagerOptions{
		NameValidationScheme: nameScheme(l),
		ExternalURL:          r.externalURL(),
		QueryFunc:            query,
		NotifyFunc:           rules.SendAlerts(n, r.cfg.ExternalURL),
		Context:              ctx,
		AppendableV2:         &appendable{tenantCtx: ctx, w: r.deps.Writer, failed: r.metrics.writeFailures.WithLabelValues(id)},
		Queryable:            r.deps.Queryable,
		Logger:               r.logger.With("tenant", id),
		OutageTolerance:      r.cfg.OutageTolerance,
		ForGracePeriod:       r.cfg.ForGracePeriod,
		ResendDelay:          r.cfg.ResendDelay,
		GroupLoader:          loader,
		DefaultRuleQueryOffset: func() time.Duration {
			return offset
		},
		// A group this ruler takes over (from a ruler that died, or after
		// the ring changed) continues its alerts' 'for' state.
		RestoreNewRuleGroups: true,
		Parser:               r.deps.Parser,
	})
	t := &tenantRules{id: id, r: r, manager: m, notifier: n, loader: loader, query: query, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(t.done)
		m.Run()
	}()
	n.run()
	return t, nil
}

func nameScheme(l *limits.Limits) model.ValidationScheme {
	if l.UTF8Names() {
		return model.UTF8Validation
	}
	return model.LegacyValidation
}

func (r *Ruler) externalURL() *url.URL {
	u, _ := url.Parse(r.cfg.ExternalURL) // validated
	return u
}

// update hands the manager the tenant's groups: one "file" a namespace,
// named <tenant>/<namespace> so that groups of tenants stay apart.
func (t *tenantRules) update(groups map[string][]rulefmt.RuleGroup) error {
	l := t.r.deps.Limits.For(t.id)
	files := make([]string, 0, len(groups))
	loaded := make(map[string]*rulefmt.RuleGroups, len(groups))
	for ns, gs := range groups {
		file := t.id + "/" + ns
		files = append(files, file)
		rgs := &rulefmt.RuleGroups{}
		for _, g := range gs {
			if min := time.Duration(l.RulerMinEvaluationInterval); min > 0 && g.Interval != 0 && time.Duration(g.Interval) < min {
				g.Interval = model.Duration(min)
			}
			rgs.Groups = append(rgs.Groups, g)
		}
		loaded[file] = rgs
	}
	slices.Sort(files)
	t.loader.set(loaded)
	extLabels := labels.FromMap(l.RulerExternalLabels)
	return t.manager.Update(t.r.cfg.EvaluationInterval, files, extLabels, t.r.cfg.ExternalURL, t.r.iterationFunc(t.id, t.query))
}

func (t *tenantRules) stop() {
	t.cancel()
	t.manager.Stop()
	<-t.done
	t.notifier.stop()
}

// iterationFunc evaluates a group and counts its evaluations, the
// iterations it missed (it was late by a whole interval or more) and
// their time.
//
// A group's first evaluation on this ruler (it is new, the ruler started,
// or the group moved here from another ruler) first restores its alerts'
// 'for' state from ALERTS_FOR_STATE: an alert that was firing fires from
// this evaluation on. Prometheus' manager would restore after the second
// evaluation, leaving alerts pending and out of ALERTS meanwhile, for fear
// of scrapes not in yet; a ruler reads data already stored.
func (r *Ruler) iterationFunc(id string, query rules.QueryFunc) rules.GroupEvalIterationFunc {
	evaluations := r.metrics.evaluations.WithLabelValues(id)
	missed := r.metrics.missed.WithLabelValues(id)
	externalURL := r.externalURL()
	return func(ctx context.Context, g *rules.Group, evalTimestamp time.Time) {
		last := g.GetLastEvalTimestamp()
		if !last.IsZero() {
			if n := int(evalTimestamp.Sub(last)/g.Interval()) - 1; n > 0 {
				missed.Add(float64(n))
			}
		}
		start := time.Now()
		if last.IsZero() {
			restoreAlerts(ctx, g, evalTimestamp, query, externalURL)
		}
		rules.DefaultEvalIterationFunc(ctx, g, evalTimestamp)
		evaluations.Inc()
		r.metrics.groupDuration.Observe(time.Since(start).Seconds())
	}
}

// restoreAlerts evaluates g's alerting rules without writing or sending
// anything, so that their active alerts exist, and restores those alerts'
// 'for' state.
func restoreAlerts(ctx context.Context, g *rules.Group, ts time.Time, query rules.QueryFunc, externalURL *url.URL) {
	alerting := false
	for _, rule := range g.Rules() {
		if ar, ok := rule.(*rules.AlertingRule); ok {
			alerting = true
			_, _ = ar.Eval(ctx, g.QueryOffset(), ts, query, externalURL, g.Limit())
		}
	}
	if alerting {
		g.RestoreForState(time.Now())
	}
}

// manager returns the tenant's rule manager, or nil.
func (r *Ruler) manager(id string) *rules.Manager {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tenants[id]; ok {
		return t.manager
	}
	return nil
}

// memoryLoader hands the rule manager the groups read from the store.
type memoryLoader struct {
	parser parser.Parser
	mu     sync.Mutex
	groups map[string]*rulefmt.RuleGroups
}

func (l *memoryLoader) set(groups map[string]*rulefmt.RuleGroups) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.groups = groups
}

func (l *memoryLoader) Load(identifier string, _ bool, _ model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g, ok := l.groups[identifier]
	if !ok {
		return nil, []error{fmt.Errorf("no rule groups %q", identifier)}
	}
	return g, nil
}

func (l *memoryLoader) Parse(query string) (parser.Expr, error) { return l.parser.ParseExpr(query) }

// appendable collects a rule evaluation's samples and writes them, on
// commit, through the distributor as the tenant.
type appendable struct {
	tenantCtx context.Context
	w         Writer
	failed    prometheus.Counter
}

func (a *appendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &appender{a: a, ctx: ctx}
}

type appender struct {
	a      *appendable
	ctx    context.Context
	series []prompb.TimeSeries
}

func (ap *appender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	ts := prompb.TimeSeries{Labels: make([]prompb.Label, 0, ls.Len())}
	ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
	switch {
	case fh != nil:
		ts.Histograms = []prompb.Histogram{prompb.FromFloatHistogram(t, fh)}
	case h != nil:
		ts.Histograms = []prompb.Histogram{prompb.FromIntHistogram(t, h)}
	default:
		ts.Samples = []prompb.Sample{{Timestamp: t, Value: v}}
	}
	ap.series = append(ap.series, ts)
	return 0, nil
}

func (ap *appender) Commit() error {
	if len(ap.series) == 0 {
		return nil
	}
	ctx := ap.ctx
	if id, err := tenant.From(ctx); err != nil || id == "" {
		ctx = ap.a.tenantCtx
	}
	err := ap.a.w.Write(ctx, &prompb.WriteRequest{Timeseries: ap.series})
	ap.series = nil
	if err != nil {
		ap.a.failed.Inc()
		return fmt.Errorf("write rule results: %w", err)
	}
	return nil
}

func (ap *appender) Rollback() error {
	ap.series = nil
	return nil
}
