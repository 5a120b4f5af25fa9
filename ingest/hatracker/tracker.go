// Package hatracker elects, for each HA pair of Prometheus servers (a
// cluster of a tenant), the one replica whose samples are stored. The
// elections live in a key-value store that every distributor shares (the
// ring's: memberlist gossip in a cluster, memory in one process), so all
// distributors keep the same replica; another replica is elected once the
// elected one has sent nothing for the failover timeout.
package hatracker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/grafana/dskit/kv"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Config configures the tracker.
type Config struct {
	Enabled         bool          `yaml:"enabled"`
	UpdateTimeout   time.Duration `yaml:"update_timeout"`
	FailoverTimeout time.Duration `yaml:"failover_timeout"`
	ForgetAfter     time.Duration `yaml:"forget_after"`
}

// RegisterFlags registers the tracker's flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.BoolVar(&c.Enabled, "distributor.ha-tracker.enable", false, "Deduplicate the samples of HA pairs of Prometheus servers, for the tenants whose ha_accept_samples limit is true: of the series carrying both the ha_cluster_label and the ha_replica_label, only those of each cluster's elected replica are stored, without the replica label.")
	f.DurationVar(&c.UpdateTimeout, "distributor.ha-tracker.update-timeout", 15*time.Second, "How often, at most, the time the elected replica last sent is written to the store shared by the distributors (plus up to 10% jitter).")
	f.DurationVar(&c.FailoverTimeout, "distributor.ha-tracker.failover-timeout", 30*time.Second, "How long the elected replica of a cluster may send nothing before another one's samples elect it. Must exceed the update timeout by at least a tenth of it.")
	f.DurationVar(&c.ForgetAfter, "distributor.ha-tracker.forget-after", 30*time.Minute, "A cluster none of whose replicas sent for this long no longer counts toward ha_max_clusters nor shows on /distributor/ha_tracker.")
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.UpdateTimeout <= 0 {
		return errors.New("-distributor.ha-tracker.update-timeout must be positive")
	}
	if c.ForgetAfter < c.FailoverTimeout {
		return fmt.Errorf("-distributor.ha-tracker.forget-after (%s) must be at least the failover timeout (%s)", c.ForgetAfter, c.FailoverTimeout)
	}
	if c.FailoverTimeout < c.UpdateTimeout+c.UpdateTimeout/10 {
		return fmt.Errorf("-distributor.ha-tracker.failover-timeout (%s) must be at least the update timeout (%s) plus its 10%% jitter", c.FailoverTimeout, c.UpdateTimeout)
	}
	return nil
}

// KVPrefix is where the elections live in the key-value store.
const KVPrefix = "ha-tracker/"

// Decision is what becomes of a replica's samples.
type Decision int

const (
	// Accept: the replica is the elected one; store its samples.
	Accept Decision = iota
	// Drop: another replica is elected; drop these samples.
	Drop
	// TooManyClusters: the tenant has its maximum of clusters already.
	TooManyClusters
)

// Tracker keeps the elections of every tenant's clusters.
type Tracker struct {
	services.Service
	cfg    Config
	store  kv.Client
	logger *slog.Logger
	now    func() time.Time

	mu        sync.RWMutex
	elections map[string]map[string]Election // tenant → cluster →

	electedChanges *prometheus.CounterVec
	kvFailures     prometheus.Counter
}

// New returns a tracker over store, a key-value client made with Codec.
func New(cfg Config, store kv.Client, logger *slog.Logger, reg prometheus.Registerer) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{
		cfg:       cfg,
		store:     store,
		logger:    logger.With("component", "ha-tracker"),
		now:       time.Now,
		elections: map[string]map[string]Election{},
		electedChanges: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_ha_elected_replica_changes_total",
			Help: "Times a cluster's elected replica changed (the first election included), seen by this distributor, by tenant and cluster.",
		}, []string{"tenant", "cluster"}),
		kvFailures: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "isobar_distributor_ha_kv_failures_total",
			Help: "Elections that could not be written to the key-value store (the samples were refused with a 5xx, to be sent again).",
		}),
	}
	t.Service = services.NewBasicService(t.starting, t.running, nil)
	return t, nil
}

func key(tenant, cluster string) string { return tenant + "/" + cluster }

// splitKey undoes key: tenant IDs hold no '/', cluster names may.
func splitKey(k string) (tenant, cluster string, ok bool) {
	return strings.Cut(k, "/")
}

func (t *Tracker) starting(ctx context.Context) error {
	keys, err := t.store.List(ctx, "")
	if err != nil {
		return fmt.Errorf("list HA elections: %w", err)
	}
	for _, k := range keys {
		v, err := t.store.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("read HA election %s: %w", k, err)
		}
		t.remember(k, v)
	}
	return nil
}

func (t *Tracker) running(ctx context.Context) error {
	t.store.WatchPrefix(ctx, "", func(k string, v any) bool {
		t.remember(k, v)
		return true
	})
	return nil
}

// remember caches an election the store holds.
func (t *Tracker) remember(k string, v any) {
	e, ok := v.(*Election)
	tenant, cluster, okKey := splitKey(k)
	if !ok || e == nil || !okKey {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setLocked(tenant, cluster, *e)
}

// setLocked caches e unless the cache holds a newer election already.
func (t *Tracker) setLocked(tenant, cluster string, e Election) {
	clusters := t.elections[tenant]
	if clusters == nil {
		clusters = map[string]Election{}
		t.elections[tenant] = clusters
	}
	if old, ok := clusters[cluster]; ok && !old.olderThan(e) {
		return
	}
	clusters[cluster] = e
}

// Decide says whether samples the replica of the tenant's cluster sent
// now are stored. It elects the replica when the cluster has none or when
// the elected one has sent nothing for the failover timeout, and records
// that the elected one sent when the store's record is older than the
// update timeout. maxClusters (0: no limit) bounds the clusters of the
// tenant. The replica's name is returned with Drop: the elected one.
func (t *Tracker) Decide(ctx context.Context, tenant, cluster, replica string, maxClusters int) (Decision, string, error) {
	now := t.now().UnixMilli()
	t.mu.RLock()
	e, known := t.elections[tenant][cluster]
	t.mu.RUnlock()
	if known {
		switch {
		case e.Replica == replica && now-e.ReceivedAt < t.updateAfter():
			return Accept, "", nil
		case e.Replica != replica && now-e.ReceivedAt < t.cfg.FailoverTimeout.Milliseconds():
			return Drop, e.Replica, nil
		}
	} else if maxClusters > 0 && t.activeClusters(tenant, now) >= maxClusters {
		return TooManyClusters, "", nil
	}

	var result Election
	changed := false
	err := t.store.CAS(ctx, key(tenant, cluster), func(in any) (any, bool, error) {
		cur, _ := in.(*Election)
		switch {
		case cur != nil && cur.Replica != replica && now-cur.ReceivedAt < t.cfg.FailoverTimeout.Milliseconds():
			result = *cur // another replica, still sending
			return nil, false, nil
		case cur != nil && cur.Replica == replica && now-cur.ReceivedAt < t.updateAfter():
			result = *cur // another distributor recorded it meanwhile
			return nil, false, nil
		case cur != nil && cur.Replica == replica:
			result = *cur
			result.ReceivedAt = now
		default:
			result = Election{Replica: replica, ReceivedAt: now, ElectedAt: now}
			changed = true
		}
		out := result
		return &out, true, nil
	})
	if err != nil {
		t.kvFailures.Inc()
		return Drop, "", fmt.Errorf("record the elected replica of HA cluster %q: %w", cluster, err)
	}
	t.mu.Lock()
	t.setLocked(tenant, cluster, result)
	t.mu.Unlock()
	if changed {
		t.electedChanges.WithLabelValues(tenant, cluster).Inc()
		t.logger.Info("replica elected", "tenant", tenant, "cluster", cluster, "replica", replica, "previous", e.Replica)
	}
	if result.Replica != replica {
		return Drop, result.Replica, nil
	}
	return Accept, "", nil
}

// activeClusters counts the tenant's clusters that sent within the forget
// period.
func (t *Tracker) activeClusters(tenant string, now int64) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, e := range t.elections[tenant] {
		if now-e.ReceivedAt < t.cfg.ForgetAfter.Milliseconds() {
			n++
		}
	}
	return n
}

// updateAfter is how old the store's record of the elected replica's last
// sample may get: the update timeout plus up to a tenth of it, so that the
// distributors of a busy cluster do not all write at once.
func (t *Tracker) updateAfter() int64 {
	u := t.cfg.UpdateTimeout.Milliseconds()
	return u + rand.Int64N(u/10+1)
}

// Status is one cluster's election, for the status page.
type Status struct {
	Tenant, Cluster string
	Election
}

// Elections returns the elections of the clusters that sent within the
// forget period.
func (t *Tracker) Elections() []Status {
	now := t.now().UnixMilli()
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Status
	for tenant, clusters := range t.elections {
		for cluster, e := range clusters {
			if now-e.ReceivedAt < t.cfg.ForgetAfter.Milliseconds() {
				out = append(out, Status{Tenant: tenant, Cluster: cluster, Election: e})
			}
		}
	}
	return out
}
