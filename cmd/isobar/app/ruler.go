package app

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/isobar-tsdb/isobar/ingest/distributor"
	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/querier/engine"
	"github.com/isobar-tsdb/isobar/querier/ruler"
)

// initRuler evaluates the tenants' rules with this process's querier and
// writes their results through its distributor.
func (a *App) initRuler() (services.Service, error) {
	var store ruler.Store
	if dir := a.cfg.Ruler.LocalDirectory; dir != "" {
		store = ruler.NewDirStore(dir)
	} else {
		bkt, err := a.bucket("ruler")
		if err != nil {
			return nil, err
		}
		store = ruler.NewBucketStore(bkt)
	}
	deps := ruler.Deps{
		Engine:    a.querierEngine,
		Queryable: a.querierQueryable,
		Writer:    distributorWriter{a.distributor},
		Store:     store,
		Limits:    a.overrides,
		Parser:    parser.NewParser(engine.ParserOptions(a.cfg.Querier.Config)),
		Transport: a.gate.InternalTransport(nil),
	}
	if !a.ringed() {
		r := ruler.New(a.cfg.Ruler, deps, a.logger, a.reg)
		r.Register(a.server.mux)
		return r, nil
	}
	// Rulers share the groups: each group belongs to the one ACTIVE ruler
	// owning its token. A ruler's ring entry holds its HTTP address, where
	// the others ask for its groups' state.
	if err := a.ensureDataDir(); err != nil {
		return nil, err
	}
	reg := prometheus.WrapRegistererWithPrefix("isobar_", a.reg)
	rc, err := ring.NewClient(a.cfg.Ring, ring.Rulers, 1, a.ringStore, a.logger, reg)
	if err != nil {
		return nil, err
	}
	a.server.HandleOperator("/ruler/ring", rc)
	id := a.cfg.Ring.InstanceID
	deps.Owns = func(tenantID, namespace, group string) bool {
		return ringOwner(rc, ring.RuleGroupToken(tenantID, namespace, group)) == id
	}
	deps.Ownership = func() string { return rulerOwnership(rc) }
	deps.Peers = func() ([]string, error) {
		rs, err := rc.GetAllHealthy(activeOnly)
		if err != nil {
			return nil, err
		}
		var peers []string
		for _, in := range rs.Instances {
			if in.Id != id {
				peers = append(peers, "http://"+in.Addr)
			}
		}
		return peers, nil
	}
	r := ruler.New(a.cfg.Ruler, deps, a.logger, a.reg)
	r.Register(a.server.mux)
	var l *dskitring.BasicLifecycler
	lc := services.NewIdleService(func(context.Context) error {
		// The HTTP port is known once the server listens (it may be 0).
		ringCfg := a.cfg.Ring
		_, port, err := net.SplitHostPort(a.server.Addr())
		if err != nil {
			return fmt.Errorf("the ruler's HTTP address %q: %w", a.server.Addr(), err)
		}
		if ringCfg.InstancePort, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("the ruler's HTTP port %q: %w", port, err)
		}
		if l, err = ring.NewLifecycler(ringCfg, ring.Rulers, a.ringStore, filepath.Join(a.cfg.DataDir, "ruler-tokens"), a.logger, reg); err != nil {
			return err
		}
		if err := services.StartAndAwaitRunning(context.Background(), rc); err != nil {
			return err
		}
		return services.StartAndAwaitRunning(context.Background(), l)
	}, func(error) error {
		var err error
		if l != nil {
			err = services.StopAndAwaitTerminated(context.Background(), l)
		}
		if rerr := services.StopAndAwaitTerminated(context.Background(), rc); rerr != nil && err == nil {
			err = rerr
		}
		return err
	})
	return a.joinThen(lc, rc, id, r), nil
}

// rulerOwnership names the healthy ACTIVE rulers: when it changes, groups
// may have changed hands.
func rulerOwnership(r *dskitring.Ring) string {
	rs, err := r.GetAllHealthy(activeOnly)
	if err != nil {
		return "none: " + err.Error()
	}
	ids := make([]string, 0, len(rs.Instances))
	for _, in := range rs.Instances {
		ids = append(ids, in.Id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// distributorWriter hands the ruler's results to the distributor as the
// bytes of a remote write, so that they take the path of every write:
// the same decoding, validation, limits and replication.
type distributorWriter struct{ d *distributor.Distributor }

func (w distributorWriter) Write(ctx context.Context, req *prompb.WriteRequest) error {
	id, err := tenant.From(ctx)
	if err != nil {
		return err
	}
	b, err := req.Marshal()
	if err != nil {
		return fmt.Errorf("encode rule results: %w", err)
	}
	_, lim := w.d.RecvLimits(id)
	var r rwproto.Request
	if err := r.Unmarshal(b, lim); err != nil {
		return fmt.Errorf("decode rule results: %w", err)
	}
	return w.d.Push(ctx, &r)
}
