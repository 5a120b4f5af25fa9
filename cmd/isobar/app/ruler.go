package app

import (
	"context"
	"fmt"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/isobar-tsdb/isobar/ingest/distributor"
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
	r := ruler.New(a.cfg.Ruler, ruler.Deps{
		Engine:    a.querierEngine,
		Queryable: a.querierQueryable,
		Writer:    distributorWriter{a.distributor},
		Store:     store,
		Limits:    a.overrides,
		Parser:    parser.NewParser(engine.ParserOptions(a.cfg.Querier.Config)),
	}, a.logger, a.reg)
	r.Register(a.server.mux)
	return r, nil
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
