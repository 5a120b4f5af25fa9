package ingester

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/isobar-tsdb/isobar/pkg/shard"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

var (
	_ storage.Queryable         = (*Ingester)(nil)
	_ storage.ExemplarQueryable = (*Ingester)(nil)
)

// Querier returns a querier over [mint, maxt] of the tenant each call's
// context names.
func (i *Ingester) Querier(mint, maxt int64) (storage.Querier, error) {
	return &tenantQuerier{i: i, mint: mint, maxt: maxt}, nil
}

// tenantQuerier opens the tenant's TSDB querier on first use and holds the
// tenant open until Close, because series sets are read lazily.
type tenantQuerier struct {
	i          *Ingester
	mint, maxt int64

	tenantID string
	t        *tenantDB
	q        storage.Querier
}

func (q *tenantQuerier) querier(ctx context.Context) (storage.Querier, error) {
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, err
	}
	if q.tenantID != "" {
		if id != q.tenantID {
			return nil, fmt.Errorf("querier of tenant %q asked for tenant %q", q.tenantID, id)
		}
		return q.q, nil
	}
	if err := q.i.errNotRunning(); err != nil {
		return nil, err
	}
	q.tenantID = id
	t, err := q.i.tenant(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, nil // a tenant that never wrote has no data
	}
	inner, err := t.db.Querier(q.mint, q.maxt)
	if err != nil {
		t.inUse.RUnlock()
		return nil, fmt.Errorf("open querier of tenant %q: %w", id, err)
	}
	q.t, q.q = t, inner
	return inner, nil
}

func (q *tenantQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	inner, err := q.querier(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if inner == nil {
		return storage.EmptySeriesSet()
	}
	matchers, sh, err := shard.FromMatchers(matchers)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return inner.Select(ctx, sortSeries, shard.Hints(hints, sh), matchers...)
}

func (q *tenantQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	inner, err := q.querier(ctx)
	if err != nil || inner == nil {
		return nil, nil, err
	}
	return inner.LabelValues(ctx, name, hints, matchers...)
}

func (q *tenantQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	inner, err := q.querier(ctx)
	if err != nil || inner == nil {
		return nil, nil, err
	}
	return inner.LabelNames(ctx, hints, matchers...)
}

func (q *tenantQuerier) Close() error {
	if q.t == nil {
		return nil
	}
	err := q.q.Close()
	q.t.inUse.RUnlock()
	q.t, q.q = nil, nil
	return err
}

// ExemplarQuerier returns the exemplars of the tenant in ctx.
func (i *Ingester) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	if err := i.errNotRunning(); err != nil {
		return nil, err
	}
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, err
	}
	t, err := i.tenant(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return noExemplars{}, nil
	}
	defer t.inUse.RUnlock()
	return t.db.ExemplarQuerier(ctx)
}

type noExemplars struct{}

func (noExemplars) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return nil, nil
}

// MetricMetadata returns the metadata the tenant in ctx sent recently.
func (i *Ingester) MetricMetadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error) {
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	t, ok := i.tenants[id]
	i.mu.Unlock()
	if !ok {
		return map[string][]metadata.Metadata{}, nil
	}
	<-t.ready
	if t.openErr != nil {
		return map[string][]metadata.Metadata{}, nil
	}
	return t.meta.get(metric, limit, limitPerMetric), nil
}
