package ingester

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

var _ rpc.IngesterReaderServer = (*Ingester)(nil)

// QueryStream sends the tenant's series matching req with their chunks.
func (i *Ingester) QueryStream(ctx context.Context, req *prompb.Query, send func(*prompb.ChunkedReadResponse) error) error {
	if err := i.errNotRunning(); err != nil {
		return err
	}
	id, err := tenant.From(ctx)
	if err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	t, err := i.tenant(ctx, id, false)
	if err != nil || t == nil {
		return err // no tenant: no series
	}
	defer t.inUse.RUnlock()
	q, err := t.db.ChunkQuerier(req.StartTimestampMs, req.EndTimestampMs)
	if err != nil {
		return fmt.Errorf("open chunk querier of tenant %q: %w", id, err)
	}
	defer q.Close()
	return rpc.ServeChunkQuery(ctx, q, req, send)
}

// LabelNames returns the tenant's label names.
func (i *Ingester) LabelNames(ctx context.Context, req *rpc.LabelsRequest) ([]string, error) {
	return i.labels(ctx, req, func(q storage.Querier, h *storage.LabelHints) ([]string, error) {
		ms, err := rpc.FromLabelMatchers(req.Matchers)
		if err != nil {
			return nil, rpc.Errorf(rpc.CauseBadData, "%v", err)
		}
		names, _, err := q.LabelNames(ctx, h, ms...)
		return names, err
	})
}

// LabelValues returns the tenant's values of req.Name.
func (i *Ingester) LabelValues(ctx context.Context, req *rpc.LabelsRequest) ([]string, error) {
	return i.labels(ctx, req, func(q storage.Querier, h *storage.LabelHints) ([]string, error) {
		ms, err := rpc.FromLabelMatchers(req.Matchers)
		if err != nil {
			return nil, rpc.Errorf(rpc.CauseBadData, "%v", err)
		}
		values, _, err := q.LabelValues(ctx, req.Name, h, ms...)
		return values, err
	})
}

func (i *Ingester) labels(ctx context.Context, req *rpc.LabelsRequest, f func(storage.Querier, *storage.LabelHints) ([]string, error)) ([]string, error) {
	q, err := i.Querier(req.Start, req.End)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return f(q, &storage.LabelHints{Limit: req.Limit})
}

// QueryExemplars returns the tenant's exemplars matching req.
func (i *Ingester) QueryExemplars(ctx context.Context, req *rpc.ExemplarsRequest) (*rpc.ExemplarsResponse, error) {
	eq, err := i.ExemplarQuerier(ctx)
	if err != nil {
		return nil, err
	}
	return rpc.ServeExemplars(eq, req)
}

// QueryMetadata returns the tenant's metric metadata that req selects.
func (i *Ingester) QueryMetadata(ctx context.Context, req *rpc.MetadataRequest) (*rpc.MetadataResponse, error) {
	found, err := i.MetricMetadata(ctx, req.Metric, req.Limit, req.LimitPerMetric)
	if err != nil {
		return nil, err
	}
	return rpc.NewMetadataResponse(found), nil
}

// Cardinality answers req about the tenant's head; a tenant without one
// has no series.
func (i *Ingester) Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error) {
	if err := i.errNotRunning(); err != nil {
		return nil, err
	}
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	t, err := i.tenant(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return &rpc.CardinalityResponse{}, nil
	}
	defer t.inUse.RUnlock()
	return rpc.ServeCardinality(ctx, t.db.Head(), t.headChunks(), req)
}

// headChunks is the tenant's count of head chunks in memory, as its TSDB
// exports it.
func (t *tenantDB) headChunks() uint64 {
	mfs, err := t.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_tsdb_head_chunks" && len(mf.GetMetric()) == 1 {
			return uint64(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return 0
}
