package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/grafana/dskit/kv"
	"github.com/grafana/dskit/kv/memberlist"
	"github.com/grafana/dskit/modules"
	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/isobar-tsdb/isobar/ingest/distributor"
	"github.com/isobar-tsdb/isobar/pkg/auth"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	isolog "github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/querier/api"
	"github.com/isobar-tsdb/isobar/tsdb/ingester"
	"github.com/isobar-tsdb/isobar/tsdb/storegateway"
)

// Version is the release of this build.
const Version = "0.1.0-dev"

// App is one Isobar process: the modules its targets need, wired together.
type App struct {
	cfg    *Config
	logger *slog.Logger
	reg    *prometheus.Registry
	server *Server
	gate   *auth.Gate

	overrides    *limits.Overrides
	memberlistKV *memberlist.KVInitService
	ringStore    kv.Client
	ring         *dskitring.Ring
	pool         *client.Pool
	ingester     *ingester.Ingester
	// ingesterIndex is the token index of the ingester ring (distributors
	// of a cluster without zone awareness).
	ingesterIndex *ring.IndexWatcher

	// querierHandler serves the querier's API to a frontend in the same
	// process.
	querierHandler *http.ServeMux

	// distributor, querierEngine and querierQueryable are what the ruler
	// uses of its process.
	distributor      *distributor.Distributor
	querierEngine    promql.QueryEngine
	querierQueryable storage.Queryable

	storeGatewayRing *dskitring.Ring
	storeGatewayPool *client.Pool
	storeGateway     *storegateway.StoreGateway

	targets  []string
	services map[string]services.Service
	// readyChecks hold what else /ready waits for once every module runs.
	readyChecks []func() error
}

// New builds the modules of cfg.Target; nothing runs until Run.
func New(cfg *Config, logger *slog.Logger) (*App, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := buildInfo()
	promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name:        "isobar_build_info",
		Help:        "Build of the running binary; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	}).Set(1)

	a := &App{cfg: cfg, logger: logger, reg: reg}
	serverCreds, clientCreds, err := cfg.InternalGRPCTLS.Credentials()
	if err != nil {
		return nil, err
	}
	cfg.IngesterClient.Credentials, cfg.StoreGatewayClient.Credentials = clientCreds, clientCreds
	if a.gate, err = auth.NewGate(cfg.Auth, cfg.MultitenancyEnabled, logger, reg); err != nil {
		return nil, err
	}
	a.server = newServer(cfg.Server, serverCreds, a.gate, logger, reg)
	targets, err := parseTargets(cfg.Target)
	if err != nil {
		return nil, err
	}
	a.targets = targets
	mm := modules.NewManager(isolog.GoKit(logger))
	if err := a.registerModules(mm); err != nil {
		return nil, fmt.Errorf("register modules: %w", err)
	}
	a.services, err = mm.InitModuleServices(targets...)
	if err != nil {
		return nil, fmt.Errorf("initialise modules: %w", err)
	}
	a.server.mux.HandleFunc("GET /ready", a.ready)
	return a, nil
}

// Run starts every module and runs until ctx is cancelled or a module fails,
// then stops them all, dependents first.
func (a *App) Run(ctx context.Context) error {
	list := make([]services.Service, 0, len(a.services))
	for _, s := range a.services {
		list = append(list, s)
	}
	mgr, err := services.NewManager(list...)
	if err != nil {
		return fmt.Errorf("create service manager: %w", err)
	}
	failed := make(chan error, 1)
	mgr.AddListener(services.NewManagerListener(nil, nil, func(s services.Service) {
		select {
		case failed <- s.FailureCase():
		default:
		}
	}))
	if err := mgr.StartAsync(context.Background()); err != nil {
		return fmt.Errorf("start services: %w", err)
	}
	a.logger.Info("Isobar starting", "version", Version, "target", a.cfg.Target)

	var runErr error
	select {
	case <-ctx.Done():
		a.logger.Info("shutting down")
	case runErr = <-failed:
		a.logger.Error("a module failed; shutting down", "err", runErr)
	}
	mgr.StopAsync()
	if err := mgr.AwaitStopped(context.Background()); err != nil {
		runErr = errors.Join(runErr, err)
	}
	a.logger.Info("stopped")
	return runErr
}

// ready answers 200 once every module runs (for an ingester that means its
// WAL has been replayed) and every ready check passes.
func (a *App) ready(w http.ResponseWriter, _ *http.Request) {
	var notRunning []string
	for name, s := range a.services {
		if st := s.State(); st != services.Running {
			notRunning = append(notRunning, fmt.Sprintf("%s: %s", name, st))
		}
	}
	if len(notRunning) > 0 {
		sort.Strings(notRunning)
		http.Error(w, "not ready: "+strings.Join(notRunning, ", "), http.StatusServiceUnavailable)
		return
	}
	for _, check := range a.readyChecks {
		if err := check(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// ServerAddr is the HTTP server's address, once it listens.
func (a *App) ServerAddr() string { return a.server.Addr() }

func buildInfo() api.BuildInfo {
	bi := api.BuildInfo{Version: Version, Branch: "main", GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				bi.Revision = s.Value
			case "vcs.time":
				bi.BuildDate = s.Value
			}
		}
	}
	return bi
}
