package app

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/grafana/dskit/modules"
	"github.com/grafana/dskit/services"

	"github.com/isobar-tsdb/isobar/ingest/distributor"
	"github.com/isobar-tsdb/isobar/ingest/remotewrite"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/querier/api"
	"github.com/isobar-tsdb/isobar/querier/engine"
	"github.com/isobar-tsdb/isobar/tsdb/ingester"
)

// Targets a process can run.
const (
	TargetAll         = "all"
	TargetDistributor = "distributor"
	TargetIngester    = "ingester"
	TargetQuerier     = "querier"

	moduleServer    = "server"
	moduleOverrides = "overrides"
)

// runnable are the targets that work today. A distributor, ingester or
// querier alone needs the ring and the gRPC contract between processes.
var runnable = []string{TargetAll}

func knownTargets() []string {
	return []string{TargetAll, TargetDistributor, TargetIngester, TargetQuerier}
}

func parseTargets(s string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(knownTargets(), t) {
			return nil, fmt.Errorf("unknown -target %q: use one of %s", t, strings.Join(knownTargets(), ", "))
		}
		if !slices.Contains(runnable, t) {
			return nil, fmt.Errorf("-target %q cannot run on its own yet: components in separate processes need the ingester ring, which this version does not have; use -target=all", t)
		}
		out = append(out, t)
	}
	return out, nil
}

// registerModules declares every module and how they depend on each other.
// The dskit module manager starts dependencies first and stops them last.
func (a *App) registerModules(mm *modules.Manager) error {
	mm.RegisterModule(moduleServer, a.initServer, modules.UserInvisibleModule)
	mm.RegisterModule(moduleOverrides, a.initOverrides, modules.UserInvisibleModule)
	mm.RegisterModule(TargetIngester, a.initIngester)
	mm.RegisterModule(TargetDistributor, a.initDistributor)
	mm.RegisterModule(TargetQuerier, a.initQuerier)
	mm.RegisterModule(TargetAll, nil)

	deps := map[string][]string{
		TargetIngester: {moduleServer, moduleOverrides},
		// In one process the distributor hands requests to the ingester
		// directly, with no serialisation between them.
		TargetDistributor: {moduleServer, moduleOverrides, TargetIngester},
		TargetQuerier:     {moduleServer, TargetIngester},
		TargetAll:         {TargetDistributor, TargetIngester, TargetQuerier},
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
	return nil, nil
}

func (a *App) initIngester() (services.Service, error) {
	ing, err := ingester.New(a.cfg.Ingester, a.overrides, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	a.ingester = ing
	return ing, nil
}

func (a *App) initDistributor() (services.Service, error) {
	d, err := distributor.New(a.cfg.Distributor, a.overrides, a.ingester, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	push := remotewrite.New(d, a.logger, a.reg)
	a.server.mux.Handle("POST /api/v1/push", push)
	a.server.mux.Handle("POST /api/v1/write", push)
	return d, nil
}

func (a *App) initQuerier() (services.Service, error) {
	eng := engine.New(a.cfg.Querier, a.logger, a.reg)
	prom := api.New(eng, a.ingester, a.ingester, a.ingester, buildInfo(), a.logger).
		WithConfig(api.Config{EnableExperimentalFunctions: a.cfg.Querier.EnableExperimentalFunctions})
	prom.Register(a.server.mux, "/prometheus/api/v1")
	prom.Register(a.server.mux, "/api/v1")
	return services.NewIdleService(nil, nil), nil
}
