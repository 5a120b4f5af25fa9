package queryable

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// TenantLabel names, in an answer across tenants, the tenant each series
// came from (the Cortex and Mimir convention).
const TenantLabel = "__tenant_id__"

// Federated answers a query whose tenant is several, a|b|c, by asking
// inner once per tenant and merging: each series gets TenantLabel, and a
// matcher on TenantLabel chooses the tenants asked. A single tenant goes to
// inner as it is.
type Federated struct{ inner storage.Queryable }

// NewFederated returns inner answering across tenants.
func NewFederated(inner storage.Queryable) *Federated { return &Federated{inner: inner} }

var _ storage.Queryable = (*Federated)(nil)

// Querier implements storage.Queryable.
func (f *Federated) Querier(mint, maxt int64) (storage.Querier, error) {
	return &federatedQuerier{f: f, mint: mint, maxt: maxt, byTenant: map[string]storage.Querier{}}, nil
}

type federatedQuerier struct {
	f          *Federated
	mint, maxt int64

	mu sync.Mutex
	// byTenant holds one querier of inner per tenant: inner's queriers
	// learn their tenant from their first call.
	byTenant map[string]storage.Querier
}

// tenants returns the tenants of ctx when there are several, nil for one.
func tenants(ctx context.Context) ([]string, error) {
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(id, "|") {
		return nil, nil
	}
	ids := strings.Split(id, "|")
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// scope returns the tenants a request across tenants names, or, for a
// request of one tenant, that tenant's querier.
func (q *federatedQuerier) scope(ctx context.Context) (ids []string, single storage.Querier, err error) {
	if ids, err = tenants(ctx); err != nil || ids != nil {
		return ids, nil, err
	}
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, nil, err
	}
	single, err = q.querierOf(id)
	return nil, single, err
}

func (q *federatedQuerier) querierOf(id string) (storage.Querier, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if inner := q.byTenant[id]; inner != nil {
		return inner, nil
	}
	inner, err := q.f.inner.Querier(q.mint, q.maxt)
	if err != nil {
		return nil, err
	}
	q.byTenant[id] = inner
	return inner, nil
}

// chosen splits matchers into the tenants they leave of ids and the
// matchers for inner.
func chosen(ids []string, matchers []*labels.Matcher) ([]string, []*labels.Matcher) {
	var rest []*labels.Matcher
	keep := slices.Clone(ids)
	for _, m := range matchers {
		if m.Name != TenantLabel {
			rest = append(rest, m)
			continue
		}
		keep = slices.DeleteFunc(keep, func(id string) bool { return !m.Matches(id) })
	}
	return keep, rest
}

func (q *federatedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	ids, single, err := q.scope(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if single != nil {
		return single.Select(ctx, sortSeries, hints, matchers...)
	}
	ids, rest := chosen(ids, matchers)
	if len(rest) == 0 {
		// A selector of the tenant label alone would select every series
		// of every tenant: PromQL refuses such selectors, so does this.
		return storage.ErrSeriesSet(fmt.Errorf("a selector across tenants needs a matcher on a label other than %s", TenantLabel))
	}
	sets := make([]storage.SeriesSet, 0, len(ids))
	for _, id := range ids {
		inner, err := q.querierOf(id)
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		// The merge needs every set sorted; adding the same label to every
		// series of a set keeps it sorted.
		set := inner.Select(tenant.With(ctx, id), true, hints, rest...)
		sets = append(sets, &tenantSeriesSet{SeriesSet: set, tenant: id})
	}
	return storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
}

// tenantSeriesSet adds TenantLabel to each series of one tenant's set.
type tenantSeriesSet struct {
	storage.SeriesSet
	tenant string
	b      labels.Builder
}

func (s *tenantSeriesSet) At() storage.Series {
	series := s.SeriesSet.At()
	s.b.Reset(series.Labels())
	s.b.Set(TenantLabel, s.tenant)
	return &labelledSeries{Series: series, lset: s.b.Labels()}
}

type labelledSeries struct {
	storage.Series
	lset labels.Labels
}

func (s *labelledSeries) Labels() labels.Labels { return s.lset }

func (q *federatedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ids, single, err := q.scope(ctx)
	if err != nil {
		return nil, nil, err
	}
	if single != nil {
		return single.LabelValues(ctx, name, hints, matchers...)
	}
	ids, rest := chosen(ids, matchers)
	if name == TenantLabel {
		return ids, nil, nil
	}
	return q.union(ctx, ids, hints, func(inner storage.Querier, ctx context.Context) ([]string, annotations.Annotations, error) {
		return inner.LabelValues(ctx, name, hints, rest...)
	})
}

func (q *federatedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ids, single, err := q.scope(ctx)
	if err != nil {
		return nil, nil, err
	}
	if single != nil {
		return single.LabelNames(ctx, hints, matchers...)
	}
	ids, rest := chosen(ids, matchers)
	names, warnings, err := q.union(ctx, ids, hints, func(inner storage.Querier, ctx context.Context) ([]string, annotations.Annotations, error) {
		return inner.LabelNames(ctx, hints, rest...)
	})
	if err != nil || len(ids) == 0 {
		return names, warnings, err
	}
	i, found := slices.BinarySearch(names, TenantLabel)
	if !found {
		names = slices.Insert(names, i, TenantLabel)
	}
	return names, warnings, nil
}

// union asks each tenant and returns the sorted union of the answers,
// at most hints.Limit of them.
func (q *federatedQuerier) union(ctx context.Context, ids []string, hints *storage.LabelHints,
	ask func(storage.Querier, context.Context) ([]string, annotations.Annotations, error)) ([]string, annotations.Annotations, error) {
	var (
		all      []string
		warnings annotations.Annotations
	)
	for _, id := range ids {
		inner, err := q.querierOf(id)
		if err != nil {
			return nil, nil, err
		}
		vals, ws, err := ask(inner, tenant.With(ctx, id))
		if err != nil {
			return nil, nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		warnings.Merge(ws)
		all = append(all, vals...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if hints != nil && hints.Limit > 0 && len(all) > hints.Limit {
		all = all[:hints.Limit]
	}
	return all, warnings, nil
}

func (q *federatedQuerier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	for _, inner := range q.byTenant {
		if err := inner.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close the tenants' queriers: %v", errs)
	}
	return nil
}

// FederatedExemplars answers exemplar queries across tenants as Federated
// answers series.
type FederatedExemplars struct{ inner storage.ExemplarQueryable }

// NewFederatedExemplars returns inner answering across tenants.
func NewFederatedExemplars(inner storage.ExemplarQueryable) FederatedExemplars {
	return FederatedExemplars{inner: inner}
}

// ExemplarQuerier implements storage.ExemplarQueryable.
func (f FederatedExemplars) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	ids, err := tenants(ctx)
	if err != nil || ids == nil {
		return f.inner.ExemplarQuerier(ctx)
	}
	return federatedExemplarQuerier{ctx: ctx, inner: f.inner, ids: ids}, nil
}

type federatedExemplarQuerier struct {
	ctx   context.Context
	inner storage.ExemplarQueryable
	ids   []string
}

func (q federatedExemplarQuerier) Select(start, end int64, matchers ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	// Each tenant answers the matcher sets that its ID passes.
	var out []exemplar.QueryResult
	for _, id := range q.ids {
		var sets [][]*labels.Matcher
		for _, ms := range matchers {
			if kept, rest := chosen([]string{id}, ms); len(kept) == 1 {
				sets = append(sets, rest)
			}
		}
		if len(sets) == 0 {
			continue
		}
		eq, err := q.inner.ExemplarQuerier(tenant.With(q.ctx, id))
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		res, err := eq.Select(start, end, sets...)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		for _, r := range res {
			b := labels.NewBuilder(r.SeriesLabels)
			r.SeriesLabels = b.Set(TenantLabel, id).Labels()
			out = append(out, r)
		}
	}
	return out, nil
}

// MetadataQuerier returns metric metadata for the tenant in ctx (the
// querier API's).
type MetadataQuerier interface {
	MetricMetadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error)
}

// FederatedMetadata answers metadata across tenants: the union of each
// tenant's.
type FederatedMetadata struct{ Inner MetadataQuerier }

// MetricMetadata implements MetadataQuerier.
func (f FederatedMetadata) MetricMetadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error) {
	ids, err := tenants(ctx)
	if err != nil || ids == nil {
		return f.Inner.MetricMetadata(ctx, metric, limit, limitPerMetric)
	}
	out := map[string][]metadata.Metadata{}
	for _, id := range ids {
		m, err := f.Inner.MetricMetadata(tenant.With(ctx, id), metric, limit, limitPerMetric)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", id, err)
		}
		for name, ms := range m {
			for _, md := range ms {
				if !slices.Contains(out[name], md) && (limitPerMetric <= 0 || len(out[name]) < limitPerMetric) {
					out[name] = append(out[name], md)
				}
			}
		}
	}
	if limit > 0 && len(out) > limit {
		names := slices.Sorted(maps.Keys(out))
		for _, name := range names[limit:] {
			delete(out, name)
		}
	}
	return out, nil
}

// CardinalityQuerier answers the cardinality endpoints for the tenant in
// ctx (the querier API's).
type CardinalityQuerier interface {
	Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error)
}

// SingleTenantCardinality refuses the cardinality endpoints across tenants:
// their counts and top lists do not add up from the tenants' own.
type SingleTenantCardinality struct{ Inner CardinalityQuerier }

// Cardinality implements CardinalityQuerier.
func (c SingleTenantCardinality) Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error) {
	if ids, err := tenants(ctx); err == nil && ids != nil {
		return nil, fmt.Errorf("cardinality is answered for one tenant at a time, not across %d", len(ids))
	}
	return c.Inner.Cardinality(ctx, req)
}
