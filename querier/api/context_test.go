package api

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
)

// tenantKey is the context key the test middleware stores the tenant under.
type tenantKey struct{}

// contextProbe counts calls that did not see the tenant in their context,
// and queriers opened and closed.
type contextProbe struct {
	missing, opened, closed atomic.Int64
}

func (p *contextProbe) check(ctx context.Context) {
	if ctx.Value(tenantKey{}) != "tenant-1" {
		p.missing.Add(1)
	}
}

type probeQueryable struct {
	storage.Queryable
	probe *contextProbe
}

func (q probeQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	q.probe.opened.Add(1)
	return probeQuerier{Querier: inner, probe: q.probe}, nil
}

type probeQuerier struct {
	storage.Querier
	probe *contextProbe
}

func (q probeQuerier) Select(ctx context.Context, sorted bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	q.probe.check(ctx)
	return q.Querier.Select(ctx, sorted, hints, ms...)
}

func (q probeQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q.probe.check(ctx)
	return q.Querier.LabelNames(ctx, hints, ms...)
}

func (q probeQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q.probe.check(ctx)
	return q.Querier.LabelValues(ctx, name, hints, ms...)
}

func (q probeQuerier) Close() error {
	q.probe.closed.Add(1)
	return q.Querier.Close()
}

type probeExemplars struct {
	storage.ExemplarQueryable
	probe *contextProbe
}

func (e probeExemplars) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	e.probe.check(ctx)
	return e.ExemplarQueryable.ExemplarQuerier(ctx)
}

type probeMetadata struct {
	MetadataQuerier
	probe *contextProbe
}

func (m probeMetadata) MetricMetadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error) {
	m.probe.check(ctx)
	return m.MetadataQuerier.MetricMetadata(ctx, metric, limit, limitPerMetric)
}

// TestTenantFromContext checks that every storage call gets the request
// context, where middleware put the tenant, and that every querier opened
// is closed.
func TestTenantFromContext(t *testing.T) {
	probe := &contextProbe{}
	db := newTestStorage(t)
	a := New(newTestEngine(t, 1000000), probeQueryable{Queryable: db, probe: probe}, probeExemplars{ExemplarQueryable: db, probe: probe},
		probeMetadata{MetadataQuerier: testMetadata, probe: probe}, testBuildInfo, nil)
	mux := http.NewServeMux()
	a.Register(mux, "/api/v1")
	s := &testServer{mux: mux, api: a}
	ctx := context.WithValue(context.Background(), tenantKey{}, "tenant-1")

	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/api/v1/query", url.Values{"query": {"up"}, "time": {"1700000000"}}},
		{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"1700000000"}, "end": {"1700000030"}, "step": {"15"}}},
		{"/api/v1/query", url.Values{"query": {`label_replace(up, "job", "x", "", "")`}, "time": {"1700000000"}}},
		{"/api/v1/series", url.Values{"match[]": {"up", "test_histogram"}}},
		{"/api/v1/labels", url.Values{"match[]": {"up", "test_histogram"}}},
		{"/api/v1/labels", nil},
		{"/api/v1/label/job/values", url.Values{"match[]": {"up", "test_histogram"}}},
		{"/api/v1/label/job/values", nil},
		{"/api/v1/query_exemplars", url.Values{"query": {"test_counter_total"}}},
		{"/api/v1/metadata", nil},
	} {
		resp := s.do(t, ctx, http.MethodGet, tc.path, tc.form)
		require.NotEqual(t, http.StatusBadRequest, resp.code, tc.path+": "+resp.body)
	}
	require.Zero(t, probe.missing.Load())
	require.Positive(t, probe.opened.Load())
	require.Equal(t, probe.opened.Load(), probe.closed.Load())
}
