// Package ring sets up the ingesters' hash ring: its key-value store
// (in-memory for a single process, memberlist gossip for a cluster, or
// consul and etcd through dskit), the lifecycler that puts an ingester in
// the ring with tokens kept on disk, and the token of a series.
package ring

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/grafana/dskit/kv"
	"github.com/grafana/dskit/kv/codec"
	"github.com/grafana/dskit/kv/consul"
	"github.com/grafana/dskit/kv/memberlist"
	dskitring "github.com/grafana/dskit/ring"
	"github.com/prometheus/client_golang/prometheus"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
)

// Names of the ingester ring in the key-value store.
const (
	IngesterRingName = "ingester"
	IngesterRingKey  = "ring"
)

// Kind names one hash ring in the key-value store: every ring of a cluster
// shares the store under its own key.
type Kind struct {
	Name string // in metrics and logs
	Key  string // in the key-value store
	// Quorum: members that stop heartbeating still count in replica sets, so
	// that a lost quorum shows (ingesters). Without it the unhealthy are
	// left out (store-gateways, compactors: any healthy replica will do).
	Quorum bool
}

// The rings of a cluster.
var (
	Ingesters     = Kind{Name: IngesterRingName, Key: IngesterRingKey, Quorum: true}
	StoreGateways = Kind{Name: "store-gateway", Key: "store-gateway"}
	Compactors    = Kind{Name: "compactor", Key: "compactor"}
	Rulers        = Kind{Name: "ruler", Key: "ruler"}
)

// StoreInMemory is the store of a single process: a ring nobody else sees.
const StoreInMemory = "inmemory"

// Config configures the ingester ring, for the ingesters that join it and
// for the distributors and queriers that read it.
type Config struct {
	KVStore           kv.Config     `yaml:"kvstore"`
	ReplicationFactor int           `yaml:"replication_factor"`
	HeartbeatPeriod   time.Duration `yaml:"heartbeat_period"`
	HeartbeatTimeout  time.Duration `yaml:"heartbeat_timeout"`
	NumTokens         int           `yaml:"num_tokens"`
	InstanceID        string        `yaml:"instance_id"`
	InstanceAddr      string        `yaml:"instance_addr"`
	InstancePort      int           `yaml:"-"` // the gRPC port, set by the app
	Zone              string        `yaml:"zone"`
	ZoneAwareness     bool          `yaml:"zone_awareness_enabled"`
}

// RegisterFlags registers the ring flags.
func (c *Config) RegisterFlags(f *flag.FlagSet, hostname string) {
	c.KVStore.RegisterFlagsWithPrefix("ring.", "collectors/", f)
	c.KVStore.Store = StoreInMemory
	f.IntVar(&c.ReplicationFactor, "ring.replication-factor", 0, "How many ingesters hold each series. 0 means 1 with -target=all and 3 otherwise.")
	f.DurationVar(&c.HeartbeatPeriod, "ring.heartbeat-period", 15*time.Second, "How often an ingester renews its entry in the ring.")
	f.DurationVar(&c.HeartbeatTimeout, "ring.heartbeat-timeout", time.Minute, "An ingester whose entry is older than this is unhealthy.")
	f.IntVar(&c.NumTokens, "ring.num-tokens", 512, "Tokens an ingester takes in the ring; more spread series more evenly.")
	f.StringVar(&c.InstanceID, "ring.instance-id", hostname, "This instance's name in the ring; it must be unique and stable across restarts.")
	f.StringVar(&c.InstanceAddr, "ring.instance-addr", "", "Address other members dial to reach this instance. Required with a shared ring store.")
	f.StringVar(&c.Zone, "ring.zone", "", "Availability zone of this ingester.")
	f.BoolVar(&c.ZoneAwareness, "ring.zone-awareness-enabled", false, "Place the replicas of each series in different zones (-ring.zone of the ingesters); set it on distributors and queriers.")
}

// Validate checks the ring configuration.
func (c *Config) Validate() error {
	switch {
	case c.ReplicationFactor < 0:
		return fmt.Errorf("-ring.replication-factor must not be negative")
	case c.NumTokens <= 0:
		return fmt.Errorf("-ring.num-tokens must be positive")
	case c.InstanceID == "":
		return errors.New("-ring.instance-id must be set")
	case c.HeartbeatPeriod <= 0 || c.HeartbeatTimeout <= c.HeartbeatPeriod:
		return fmt.Errorf("-ring.heartbeat-timeout (%s) must be longer than -ring.heartbeat-period (%s)", c.HeartbeatTimeout, c.HeartbeatPeriod)
	}
	return nil
}

// NewKV returns the ring's key-value client. An in-memory store belongs to
// this call alone, so several rings can live in one process (tests).
func NewKV(c Config, memberlistKV *memberlist.KVInitService, logger *slog.Logger, reg prometheus.Registerer) (kv.Client, error) {
	return NewKVOf(c, dskitring.GetCodec(), IngesterRingName, memberlistKV, logger, reg)
}

// NewKVOf returns a client of the ring's key-value store for values of
// another codec (memberlist must know it), named name in its metrics.
func NewKVOf(c Config, cd codec.Codec, name string, memberlistKV *memberlist.KVInitService, logger *slog.Logger, reg prometheus.Registerer) (kv.Client, error) {
	kvCfg := c.KVStore
	if kvCfg.Store == StoreInMemory {
		client, _ := consul.NewInMemoryClient(cd, isolog.GoKit(logger), reg)
		return client, nil
	}
	if memberlistKV != nil {
		kvCfg.MemberlistKV = memberlistKV.GetMemberlistKV
	}
	client, err := kv.NewClient(kvCfg, cd, kv.RegistererWithKVName(reg, name), isolog.GoKit(logger))
	if err != nil {
		return nil, fmt.Errorf("create %s %s store: %w", kvCfg.Store, name, err)
	}
	return client, nil
}

// NewClient returns a ring client that watches the members of ring kind in store.
func NewClient(c Config, kind Kind, replicationFactor int, store kv.Client, logger *slog.Logger, reg prometheus.Registerer) (*dskitring.Ring, error) {
	rc := dskitring.Config{
		HeartbeatTimeout:     c.HeartbeatTimeout,
		ReplicationFactor:    replicationFactor,
		ZoneAwarenessEnabled: c.ZoneAwareness,
	}
	strategy := dskitring.NewIgnoreUnhealthyInstancesReplicationStrategy()
	if kind.Quorum {
		strategy = dskitring.NewDefaultReplicationStrategy()
	}
	r, err := dskitring.NewWithStoreClientAndStrategy(rc, kind.Name, kind.Key, store, strategy, reg, isolog.GoKit(logger))
	if err != nil {
		return nil, fmt.Errorf("create %s ring client: %w", kind.Name, err)
	}
	return r, nil
}

// NewLifecycler returns what puts this instance in ring kind: ACTIVE with
// NumTokens tokens, the same ones after a restart (tokensFile), LEAVING and
// then gone when it stops. Members that stop heartbeating are forgotten after
// ten heartbeat timeouts.
func NewLifecycler(c Config, kind Kind, store kv.Client, tokensFile string, logger *slog.Logger, reg prometheus.Registerer) (*dskitring.BasicLifecycler, error) {
	kl := isolog.GoKit(logger)
	var delegate dskitring.BasicLifecyclerDelegate = dskitring.NewInstanceRegisterDelegate(dskitring.ACTIVE, c.NumTokens)
	delegate = dskitring.NewTokensPersistencyDelegate(tokensFile, dskitring.ACTIVE, delegate, kl)
	delegate = dskitring.NewLeaveOnStoppingDelegate(delegate, kl)
	delegate = dskitring.NewAutoForgetDelegate(10*c.HeartbeatTimeout, delegate, kl)
	lc, err := dskitring.NewBasicLifecycler(dskitring.BasicLifecyclerConfig{
		ID:                  c.InstanceID,
		Addr:                fmt.Sprintf("%s:%d", c.InstanceAddr, c.InstancePort),
		Zone:                c.Zone,
		HeartbeatPeriod:     c.HeartbeatPeriod,
		HeartbeatTimeout:    c.HeartbeatTimeout,
		TokensObservePeriod: 0,
		NumTokens:           c.NumTokens,
		RingTokenGenerator:  newSeededTokenGenerator(c.InstanceID),
	}, kind.Name, kind.Key, store, delegate, kl, reg)
	if err != nil {
		return nil, fmt.Errorf("create %s lifecycler: %w", kind.Name, err)
	}
	return lc, nil
}

// Token is where a tenant's series sits on the ring. enc is the series'
// labels in the stringlabels encoding the ingester hashes too.
func Token(tenantID string, enc []byte) uint32 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(tenantID)
	_, _ = d.Write([]byte{0xff})
	_, _ = d.Write(enc)
	h := d.Sum64()
	return uint32(h) ^ uint32(h>>32)
}

// seededTokenGenerator draws an instance's tokens from a generator seeded
// by its ID: the ring a set of instances forms is the same every time, so
// its balance can be measured once and relied on.
type seededTokenGenerator struct{ rng *rand.Rand }

func newSeededTokenGenerator(instanceID string) *seededTokenGenerator {
	s := xxhash.Sum64String(instanceID)
	return &seededTokenGenerator{rng: rand.New(rand.NewPCG(s, s^0x9E3779B97F4A7C15))}
}

func (g *seededTokenGenerator) GenerateTokens(n int, taken []uint32) dskitring.Tokens {
	used := make(map[uint32]struct{}, len(taken)+n)
	for _, t := range taken {
		used[t] = struct{}{}
	}
	tokens := make([]uint32, 0, n)
	for len(tokens) < n {
		t := g.rng.Uint32()
		if _, ok := used[t]; ok {
			continue
		}
		used[t] = struct{}{}
		tokens = append(tokens, t)
	}
	slices.Sort(tokens)
	return tokens
}

func (*seededTokenGenerator) CanJoin(map[string]dskitring.InstanceDesc) error { return nil }
func (*seededTokenGenerator) CanJoinEnabled() bool                            { return false }

// BlockToken is where a tenant's block sits on the store-gateway ring
// (and, with no block, where the tenant sits on the compactor ring).
func BlockToken(tenantID, blockID string) uint32 { return keyToken(tenantID, blockID) }

// RuleGroupToken is where a tenant's rule group sits on the ruler ring.
func RuleGroupToken(tenantID, namespace, group string) uint32 {
	return keyToken(tenantID, namespace, group)
}

// keyToken hashes the parts of a key, each after the first behind a 0xff
// byte, which no UTF-8 string holds.
func keyToken(parts ...string) uint32 {
	var d xxhash.Digest
	d.Reset()
	for i, p := range parts {
		if i > 0 {
			_, _ = d.Write([]byte{0xff})
		}
		_, _ = d.WriteString(p)
	}
	h := d.Sum64()
	return uint32(h) ^ uint32(h>>32)
}
