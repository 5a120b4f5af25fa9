package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/grafana/dskit/dns"
	"github.com/grafana/dskit/kv"
	"github.com/grafana/dskit/kv/memberlist"
	"github.com/grafana/dskit/modules"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/isobar-tsdb/isobar/ingest/distributor"
	"github.com/isobar-tsdb/isobar/ingest/hatracker"
	"github.com/isobar-tsdb/isobar/ingest/remotewrite"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	isolog "github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/querier/api"
	"github.com/isobar-tsdb/isobar/querier/engine"
	"github.com/isobar-tsdb/isobar/querier/frontend"
	"github.com/isobar-tsdb/isobar/querier/queryable"
	"github.com/isobar-tsdb/isobar/tsdb/ingester"
)

// Targets a process can run.
const (
	TargetAll         = "all"
	TargetDistributor = "distributor"
	TargetIngester    = "ingester"
	TargetQuerier     = "querier"
	// TargetStoreGateway serves the blocks in the bucket to queriers.
	TargetStoreGateway = "store-gateway"
	// TargetCompactor merges, deduplicates and deletes the blocks in the bucket.
	TargetCompactor = "compactor"
	// TargetQueryFrontend splits, caches and queues queries for the queriers.
	TargetQueryFrontend = "query-frontend"
	// TargetRuler evaluates the tenants' recording and alerting rules.
	TargetRuler = "ruler"

	moduleServer           = "server"
	moduleAuth             = "auth"
	moduleOverrides        = "overrides"
	moduleMemberlistKV     = "memberlist-kv"
	moduleRingStore        = "ring-store"
	moduleIngesterRing     = "ingester-ring"
	moduleIngesterPool     = "ingester-pool"
	moduleStoreGatewayRing = "store-gateway-ring"
	moduleIngesterIndex    = "ingester-index"
)

func knownTargets() []string {
	return []string{TargetAll, TargetDistributor, TargetIngester, TargetQuerier, TargetQueryFrontend, TargetStoreGateway, TargetCompactor, TargetRuler}
}

func parseTargets(s string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(knownTargets(), t) {
			return nil, fmt.Errorf("unknown -target %q: use one of %s", t, strings.Join(knownTargets(), ", "))
		}
		out = append(out, t)
	}
	return out, nil
}

// registerModules declares every module and how they depend on each other.
// The dskit module manager starts dependencies first and stops them last.
func (a *App) registerModules(mm *modules.Manager) error {
	mm.RegisterModule(moduleAuth, func() (services.Service, error) { return a.gate, nil }, modules.UserInvisibleModule)
	mm.RegisterModule(moduleServer, a.initServer, modules.UserInvisibleModule)
	mm.RegisterModule(moduleOverrides, a.initOverrides, modules.UserInvisibleModule)
	mm.RegisterModule(moduleMemberlistKV, a.initMemberlistKV, modules.UserInvisibleModule)
	mm.RegisterModule(moduleRingStore, a.initRingStore, modules.UserInvisibleModule)
	mm.RegisterModule(moduleIngesterRing, a.initIngesterRing, modules.UserInvisibleModule)
	mm.RegisterModule(moduleIngesterPool, a.initIngesterPool, modules.UserInvisibleModule)
	mm.RegisterModule(TargetIngester, a.initIngester)
	mm.RegisterModule(TargetDistributor, a.initDistributor)
	mm.RegisterModule(TargetQuerier, a.initQuerier)
	mm.RegisterModule(moduleStoreGatewayRing, a.initStoreGatewayRing, modules.UserInvisibleModule)
	mm.RegisterModule(moduleIngesterIndex, a.initIngesterIndex, modules.UserInvisibleModule)
	mm.RegisterModule(TargetStoreGateway, a.initStoreGateway)
	mm.RegisterModule(TargetCompactor, a.initCompactor)
	mm.RegisterModule(TargetQueryFrontend, a.initQueryFrontend)
	mm.RegisterModule(TargetRuler, a.initRuler)
	mm.RegisterModule(TargetAll, nil)

	deps := map[string][]string{
		moduleServer:       {moduleAuth},
		moduleRingStore:    {moduleMemberlistKV},
		moduleIngesterRing: {moduleServer, moduleRingStore},
		moduleIngesterPool: {moduleIngesterRing},
		TargetIngester:     {moduleServer, moduleOverrides, moduleRingStore, moduleIngesterRing},
		TargetAll:          {TargetDistributor, TargetIngester, TargetQuerier, TargetQueryFrontend, TargetStoreGateway, TargetCompactor, TargetRuler},
		// The ruler queries through a querier and writes through a
		// distributor of its own process.
		TargetRuler: {moduleServer, moduleOverrides, TargetQuerier, TargetDistributor},

		moduleStoreGatewayRing: {moduleServer, moduleRingStore},
		TargetStoreGateway:     {moduleServer, moduleRingStore, moduleStoreGatewayRing},
		TargetCompactor:        {moduleServer, moduleRingStore},
	}
	// With the ingester in the same process the distributor and the querier
	// use it directly, with no serialisation between them; otherwise they
	// reach the ring's ingesters over gRPC.
	reach := moduleIngesterPool
	if a.localIngester() {
		reach = TargetIngester
	}
	deps[TargetDistributor] = []string{moduleServer, moduleOverrides, reach}
	deps[moduleIngesterIndex] = []string{moduleRingStore}
	if !a.localIngester() && !a.cfg.Ring.ZoneAwareness {
		deps[TargetDistributor] = append(deps[TargetDistributor], moduleIngesterIndex)
	}
	// Likewise the store-gateway: in process with -target=all, over its
	// ring otherwise.
	stores := moduleStoreGatewayRing
	if a.localStoreGateway() {
		stores = TargetStoreGateway
	}
	deps[TargetQuerier] = []string{moduleServer, moduleOverrides, reach, stores}
	// A frontend with the querier in its process asks it directly.
	deps[TargetQueryFrontend] = []string{moduleServer, moduleOverrides}
	if a.localQuerier() {
		deps[TargetQueryFrontend] = append(deps[TargetQueryFrontend], TargetQuerier)
	}
	names := make([]string, 0, len(deps))
	for name := range deps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := mm.AddDependency(name, deps[name]...); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) initServer() (services.Service, error) {
	return a.server, nil
}

func (a *App) initOverrides() (services.Service, error) {
	o, err := limits.NewOverrides(a.cfg.Limits, a.cfg.TenantLimits)
	if err != nil {
		return nil, err
	}
	a.overrides = o
	a.reg.MustRegister(o.Collector())
	a.server.HandleOperator("GET /runtime_config", o)
	if a.cfg.RuntimeConfig.File == "" {
		return nil, nil
	}
	return limits.NewRuntimeConfig(a.cfg.RuntimeConfig, o, a.logger, a.reg)
}

// initMemberlistKV starts gossip when the ring lives in memberlist.
func (a *App) initMemberlistKV() (services.Service, error) {
	if a.cfg.Ring.KVStore.Store != "memberlist" {
		return nil, nil
	}
	reg := prometheus.WrapRegistererWithPrefix("isobar_", a.reg)
	dnsProvider := dns.NewProvider(dns.GolangResolverType, 0, isolog.GoKit(a.logger), reg)
	a.memberlistKV = memberlist.NewKVInitService(&a.cfg.Memberlist, isolog.GoKit(a.logger), dnsProvider, reg)
	return a.memberlistKV, nil
}

func (a *App) initRingStore() (services.Service, error) {
	store, err := ring.NewKV(a.cfg.Ring, a.memberlistKV, a.logger, prometheus.WrapRegistererWithPrefix("isobar_", a.reg))
	if err != nil {
		return nil, err
	}
	a.ringStore = store
	return nil, nil
}

// replicationFactor is -ring.replication-factor, or its default for the target.
func (a *App) replicationFactor() int {
	if rf := a.cfg.Ring.ReplicationFactor; rf > 0 {
		return rf
	}
	if a.cfg.Target == TargetAll {
		return 1
	}
	return 3
}

// initIngesterRing watches the ring and shows it at /ring.
func (a *App) initIngesterRing() (services.Service, error) {
	r, err := ring.NewClient(a.cfg.Ring, ring.Ingesters, a.replicationFactor(), a.ringStore, a.logger, prometheus.WrapRegistererWithPrefix("isobar_", a.reg))
	if err != nil {
		return nil, err
	}
	a.server.HandleOperator("/ring", r)
	a.ring = r
	return r, nil
}

// localQuerier reports whether this process runs the querier.
func (a *App) localQuerier() bool {
	return slices.Contains(a.targets, TargetAll) || slices.Contains(a.targets, TargetQuerier)
}

// localQueryFrontend reports whether this process runs the query-frontend.
func (a *App) localQueryFrontend() bool {
	return slices.Contains(a.targets, TargetAll) || slices.Contains(a.targets, TargetQueryFrontend)
}

// initQueryFrontend puts the frontend in front of the querier of this
// process, or of the queriers at -query-frontend.downstream-url.
func (a *App) initQueryFrontend() (services.Service, error) {
	var (
		downstream http.RoundTripper
		err        error
	)
	if a.localQuerier() {
		// The frontend has admitted the caller and names its tenant.
		downstream = frontend.HandlerTransport(onAPIPaths(a.gate.Trusted(neededRights, a.querierHandler), a.querierHandler))
	} else if downstream, err = frontend.NewQuerierTransport(a.cfg.QueryFrontend.DownstreamURLs); err != nil {
		return nil, err
	} else {
		downstream = a.gate.InternalTransport(downstream)
	}
	cfg := a.cfg.QueryFrontend
	cfg.Parser = engine.ParserOptions(a.cfg.Querier.Config)
	if a.localQuerier() {
		// The shards run in this process: more than its cores gain
		// nothing (bench/RESULTS.md: 2 shards on 2 cores beat 16).
		cfg.MaxShards = runtime.GOMAXPROCS(0)
	}
	f, err := frontend.New(cfg, downstream, a.overrides, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	f.Register(a.server.mux, "/prometheus/api/v1")
	f.Register(a.server.mux, "/api/v1")
	return f, nil
}

// localIngester reports whether this process runs the ingester.
func (a *App) localIngester() bool {
	return slices.Contains(a.targets, TargetAll) || slices.Contains(a.targets, TargetIngester)
}

// initIngesterIndex keeps a token index of the ingester ring, so the
// distributor finds each series' replicas by binary search. dskit's walk
// is kept for zone-aware rings, which the index does not model.
func (a *App) initIngesterIndex() (services.Service, error) {
	a.ingesterIndex = ring.NewIndexWatcher(a.ringStore, a.replicationFactor(), a.logger)
	return a.ingesterIndex, nil
}

// initIngesterPool holds the connections to the ring's ingesters.
func (a *App) initIngesterPool() (services.Service, error) {
	a.pool = rpc.NewIngesterPool(strings.Join(a.targets, ","), a.ring, a.cfg.IngesterClient, a.logger, a.reg)
	return a.pool, nil
}

func (a *App) initIngester() (services.Service, error) {
	ringCfg := a.cfg.Ring
	ringCfg.InstancePort = a.cfg.Server.GRPCListenPort
	if ringCfg.InstanceAddr == "" {
		ringCfg.InstanceAddr = "127.0.0.1" // only with the in-memory ring, which nobody else dials
	}
	lc, err := ring.NewLifecycler(ringCfg, ring.Ingesters, a.ringStore, filepath.Join(a.cfg.DataDir, "ring-tokens"), a.logger, prometheus.WrapRegistererWithPrefix("isobar_", a.reg))
	if err != nil {
		return nil, err
	}
	bkt, err := a.bucket("ingester")
	if err != nil {
		return nil, err
	}
	ing, err := ingester.New(a.cfg.Ingester, a.overrides, ingester.Deps{Lifecycler: lc, Bucket: bkt, InstanceID: ringCfg.InstanceID}, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	a.server.HandleOperator("POST /ingester/flush", postAction(ing.Flush))
	if a.ring != nil {
		// The lifecycler writes ACTIVE to the store; the ring this process
		// reads (and shows at /ring) learns it one watch later.
		a.readyChecks = append(a.readyChecks, func() error {
			if st, err := a.ring.GetInstanceState(ringCfg.InstanceID); err != nil || st != dskitring.ACTIVE {
				return fmt.Errorf("ingester %s not yet ACTIVE in the ring this process reads", ringCfg.InstanceID)
			}
			return nil
		})
	}
	rpc.RegisterIngesterServer(a.server.grpc, ing)
	rpc.RegisterIngesterReaderServer(a.server.grpc, ing)
	a.ingester = ing
	return ing, nil
}

func (a *App) initDistributor() (services.Service, error) {
	var pusher rpc.Pusher = a.ingester
	if !a.localIngester() {
		rp := distributor.NewRingPusher(a.ring, a.pool, a.cfg.Distributor.RemoteTimeout)
		if a.ingesterIndex != nil {
			rp.WithIndex(a.ingesterIndex, a.ring, a.cfg.Ring.HeartbeatTimeout)
		}
		pusher = rp
	}
	var ha *hatracker.Tracker
	if a.cfg.Distributor.HATracker.Enabled {
		store, err := ring.NewKVOf(a.cfg.Ring, hatracker.Codec{}, "ha-tracker", a.memberlistKV, a.logger, prometheus.WrapRegistererWithPrefix("isobar_", a.reg))
		if err != nil {
			return nil, err
		}
		if ha, err = hatracker.New(a.cfg.Distributor.HATracker, kv.PrefixClient(store, hatracker.KVPrefix), a.logger, a.reg); err != nil {
			return nil, err
		}
		a.server.HandleOperator("GET /distributor/ha_tracker", ha)
	}
	d, err := distributor.New(a.cfg.Distributor, a.overrides, pusher, ha, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	a.distributor = d
	push := remotewrite.New(d, a.logger, a.reg).WithInstanceLimits(remotewrite.InstanceLimits{
		MaxInflightRequests: a.cfg.Distributor.MaxInflightPushRequests,
		MaxInflightBytes:    a.cfg.Distributor.MaxInflightPushRequestsBytes,
	})
	a.server.mux.Handle("POST /api/v1/push", push)
	a.server.mux.Handle("POST /api/v1/write", push)
	a.server.mux.Handle("POST /otlp/v1/metrics", push.OTLP(a.overrides))
	return d, nil
}

func (a *App) initQuerier() (services.Service, error) {
	engCfg := a.cfg.Querier.Config
	engCfg.ActiveQueryLogDir = filepath.Join(a.cfg.DataDir, "querier")
	eng, tracker, err := engine.New(engCfg, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	blocks, err := a.blocksQueryable()
	if err != nil {
		return nil, err
	}
	storageCfg := a.cfg.Querier.Storage
	var prom *api.API
	if a.localIngester() {
		q := queryable.NewLimited(queryable.NewSplit(a.ingester, blocks, storageCfg.QueryIngestersWithin, storageCfg.QueryStoreAfter), a.overrides)
		prom = federatedAPI(eng, q, a.ingester, a.ingester, queryable.LocalCardinality{Ingester: a.ingester}, a.logger)
		a.querierQueryable = q
	} else {
		ingesters := queryable.NewIngesters(a.ring, a.pool)
		q := queryable.NewLimited(queryable.NewSplit(ingesters, blocks, storageCfg.QueryIngestersWithin, storageCfg.QueryStoreAfter), a.overrides)
		prom = federatedAPI(eng, q, ingesters, ingesters, ingesters, a.logger)
		a.querierQueryable = q
	}
	a.querierEngine = eng
	prom = prom.
		WithConfig(a.apiConfig())
	// With a frontend in the process, it is the front door and asks this
	// querier through an inner mux; otherwise the querier is.
	mux := a.server.mux
	if a.localQueryFrontend() {
		a.querierHandler = http.NewServeMux()
		mux = a.querierHandler
	}
	prom.Register(mux, "/prometheus/api/v1")
	prom.Register(mux, "/api/v1")
	closeTracker := func(error) error { return tracker.Close() }
	if a.storeGatewayPool != nil {
		pool := a.storeGatewayPool
		return services.NewIdleService(func(ctx context.Context) error { return services.StartAndAwaitRunning(ctx, pool) },
			func(err error) error {
				return errors.Join(services.StopAndAwaitTerminated(context.Background(), pool), closeTracker(err))
			}), nil
	}
	return services.NewIdleService(nil, closeTracker), nil
}

// federatedAPI is the querier's Prometheus API over q, answering reads
// across tenants (a|b; the gate lets them through only with
// -tenant-federation.enabled).
func federatedAPI(eng promql.QueryEngine, q storage.Queryable, exemplars storage.ExemplarQueryable, meta queryable.MetadataQuerier,
	cardinality queryable.CardinalityQuerier, logger *slog.Logger) *api.API {
	return api.New(eng, queryable.NewFederated(q), queryable.NewFederatedExemplars(exemplars), queryable.FederatedMetadata{Inner: meta}, buildInfo(), logger).
		WithCardinality(queryable.SingleTenantCardinality{Inner: cardinality})
}

// apiConfig is the querier API's configuration, with the engine's parser
// setting.
func (a *App) apiConfig() api.Config {
	c := a.cfg.Querier.API
	c.EnableExperimentalFunctions = a.cfg.Querier.EnableExperimentalFunctions
	return c
}
