package queryable

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// byTenant is a queryable of one test TSDB per tenant, chosen by the
// tenant of each call's context.
type byTenant map[string]*teststorage.TestStorage

func (b byTenant) Querier(mint, maxt int64) (storage.Querier, error) {
	return &byTenantQuerier{b: b, mint: mint, maxt: maxt}, nil
}

type byTenantQuerier struct {
	b          byTenant
	mint, maxt int64
	opened     storage.Querier
}

func (q *byTenantQuerier) open(ctx context.Context) storage.Querier {
	if q.opened == nil {
		id, err := tenant.From(ctx)
		if err != nil || q.b[id] == nil {
			panic("no test storage for tenant " + id)
		}
		q.opened, _ = q.b[id].Querier(q.mint, q.maxt)
	}
	return q.opened
}

func (q *byTenantQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.open(ctx).Select(ctx, sortSeries, hints, ms...)
}

func (q *byTenantQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.open(ctx).LabelValues(ctx, name, hints, ms...)
}

func (q *byTenantQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.open(ctx).LabelNames(ctx, hints, ms...)
}

func (q *byTenantQuerier) Close() error { return nil }

func newByTenant(t *testing.T, data map[string][]labels.Labels) byTenant {
	b := byTenant{}
	for id, series := range data {
		db := teststorage.New(t)
		app := db.Appender(context.Background())
		for _, ls := range series {
			_, err := app.Append(0, ls, 1000, 1)
			require.NoError(t, err)
		}
		require.NoError(t, app.Commit())
		b[id] = db
	}
	return b
}

func selectAll(t *testing.T, q storage.Querier, ctx context.Context, ms ...*labels.Matcher) []labels.Labels {
	set := q.Select(ctx, true, nil, ms...)
	var out []labels.Labels
	for set.Next() {
		out = append(out, set.At().Labels())
	}
	require.NoError(t, set.Err())
	return out
}

func TestFederatedAnswersAcrossTenants(t *testing.T) {
	data := map[string][]labels.Labels{
		"team-a": {labels.FromStrings("__name__", "up", "job", "hv"), labels.FromStrings("__name__", "up", "A", "1", "job", "gpu")},
		"team-b": {labels.FromStrings("__name__", "up", "job", "hv"), labels.FromStrings("__name__", "ovs_drops", "job", "ovs")},
	}
	f := NewFederated(newByTenant(t, data))
	q, err := f.Querier(0, 10_000)
	require.NoError(t, err)
	defer q.Close()
	up := labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")
	both := tenant.With(context.Background(), "team-b|team-a")

	require.Equal(t, []labels.Labels{
		labels.FromStrings("__name__", "up", "A", "1", "__tenant_id__", "team-a", "job", "gpu"),
		labels.FromStrings("__name__", "up", "__tenant_id__", "team-a", "job", "hv"),
		labels.FromStrings("__name__", "up", "__tenant_id__", "team-b", "job", "hv"),
	}, selectAll(t, q, both, up), "each series names its tenant; the answer is sorted")
	require.Equal(t, []labels.Labels{labels.FromStrings("__name__", "up", "__tenant_id__", "team-b", "job", "hv")},
		selectAll(t, q, both, up, labels.MustNewMatcher(labels.MatchEqual, TenantLabel, "team-b")), "a matcher on the tenant label chooses the tenants")
	require.Len(t, selectAll(t, q, tenant.With(context.Background(), "team-a"), up), 2, "one tenant goes through as it is")

	set := q.Select(both, true, nil, labels.MustNewMatcher(labels.MatchEqual, TenantLabel, "team-a"))
	require.False(t, set.Next())
	require.ErrorContains(t, set.Err(), "needs a matcher on a label other than __tenant_id__")

	vals, _, err := q.LabelValues(both, "job", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"gpu", "hv", "ovs"}, vals)
	vals, _, err = q.LabelValues(both, TenantLabel, nil, labels.MustNewMatcher(labels.MatchRegexp, TenantLabel, ".*-a"))
	require.NoError(t, err)
	require.Equal(t, []string{"team-a"}, vals)
	names, _, err := q.LabelNames(both, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"A", "__name__", "__tenant_id__", "job"}, names)
	vals, _, err = q.LabelValues(both, "job", &storage.LabelHints{Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"gpu", "hv"}, vals)
}

func TestFederatedUnderPromQL(t *testing.T) {
	data := map[string][]labels.Labels{
		"a": {labels.FromStrings("__name__", "up", "job", "hv"), labels.FromStrings("__name__", "up", "job", "gpu")},
		"b": {labels.FromStrings("__name__", "up", "job", "hv")},
	}
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1000, Timeout: time.Minute})
	q, err := eng.NewInstantQuery(tenant.With(context.Background(), "a|b"), NewFederated(newByTenant(t, data)), nil,
		`count by (__tenant_id__) (up)`, time.Unix(1, 0))
	require.NoError(t, err)
	res := q.Exec(tenant.With(context.Background(), "a|b"))
	require.NoError(t, res.Err)
	vec, err := res.Vector()
	require.NoError(t, err)
	require.Equal(t, promql.Vector{
		{Metric: labels.FromStrings(TenantLabel, "a"), F: 2, T: 1000},
		{Metric: labels.FromStrings(TenantLabel, "b"), F: 1, T: 1000},
	}, vec)
}

type fakeMetadata map[string]map[string][]metadata.Metadata

func (f fakeMetadata) MetricMetadata(ctx context.Context, metric string, _, _ int) (map[string][]metadata.Metadata, error) {
	id, _ := tenant.From(ctx)
	return f[id], nil
}

func TestFederatedMetadataIsTheUnion(t *testing.T) {
	gauge := metadata.Metadata{Type: "gauge", Help: "Up."}
	counter := metadata.Metadata{Type: "counter", Help: "Drops."}
	m := FederatedMetadata{Inner: fakeMetadata{"a": {"up": {gauge}}, "b": {"up": {gauge}, "drops": {counter}}}}
	got, err := m.MetricMetadata(tenant.With(context.Background(), "a|b"), "", 0, 0)
	require.NoError(t, err)
	require.Equal(t, map[string][]metadata.Metadata{"up": {gauge}, "drops": {counter}}, got)
	got, err = m.MetricMetadata(tenant.With(context.Background(), "a|b"), "", 1, 0)
	require.NoError(t, err)
	require.Equal(t, map[string][]metadata.Metadata{"drops": {counter}}, got, "limit keeps the first names")
}

func TestSingleTenantCardinalityRefusesSeveral(t *testing.T) {
	c := SingleTenantCardinality{}
	_, err := c.Cardinality(tenant.With(context.Background(), "a|b"), nil)
	require.ErrorContains(t, err, "one tenant at a time")
}
