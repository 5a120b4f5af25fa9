package queryable

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/querier/api"
)

var (
	_ api.MetadataQuerier      = (*Ingesters)(nil)
	_ rpc.IngesterReaderServer = (*dbReader)(nil)
)

func (r *dbReader) QueryExemplars(ctx context.Context, req *rpc.ExemplarsRequest) (*rpc.ExemplarsResponse, error) {
	eq, err := r.db.ExemplarQuerier(ctx)
	if err != nil {
		return nil, err
	}
	return rpc.ServeExemplars(eq, req)
}

// QueryMetadata limits as an ingester's metadata store does: families and
// descriptions in map order, so which ones a limit keeps varies.
func (r *dbReader) QueryMetadata(_ context.Context, req *rpc.MetadataRequest) (*rpc.MetadataResponse, error) {
	out := map[string][]metadata.Metadata{}
	for name, ms := range r.meta {
		if req.Metric != "" && name != req.Metric {
			continue
		}
		if req.Limit > 0 && len(out) >= req.Limit {
			break
		}
		for _, m := range ms {
			if req.LimitPerMetric > 0 && len(out[name]) >= req.LimitPerMetric {
				break
			}
			out[name] = append(out[name], m)
		}
	}
	return rpc.NewMetadataResponse(out), nil
}

// addExemplars appends each exemplar, in order, with a sample of value 0
// at its timestamp.
func (r *dbReader) addExemplars(t testing.TB, ls labels.Labels, es ...exemplar.Exemplar) {
	app := r.db.Appender(context.Background())
	var (
		ref  storage.SeriesRef
		last = int64(math.MinInt64)
	)
	for _, e := range es {
		if e.Ts != last {
			var err error
			ref, err = app.Append(ref, ls, e.Ts, 0)
			require.NoError(t, err)
			last = e.Ts
		}
		_, err := app.AppendExemplar(ref, ls, e)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

func ex(ts int64, v float64, trace string) exemplar.Exemplar {
	return exemplar.Exemplar{Labels: labels.FromStrings("trace_id", trace), Value: v, Ts: ts, HasTs: true}
}

func TestExemplarReplicasMergeIntoOneCopy(t *testing.T) {
	readers, q := replicas(t, 3)
	up := labels.FromStrings("__name__", "rpc_seconds", "job", "api")
	// Every exemplar is on a write quorum (two of three replicas), each
	// replica missed different ones, and two share a timestamp.
	readers[0].addExemplars(t, up, ex(t0, 1, "a"), ex(t0+1000, 2, "b"), ex(t0+2000, 3, "c"))
	readers[1].addExemplars(t, up, ex(t0+1000, 2, "b"), ex(t0+2000, 3, "c"), ex(t0+2000, 4, "d"), ex(t0+3000, 5, "e"))
	readers[2].addExemplars(t, up, ex(t0, 1, "a"), ex(t0+2000, 4, "d"), ex(t0+3000, 5, "e"))
	other := labels.FromStrings("__name__", "db_seconds", "job", "db")
	readers[1].addExemplars(t, other, ex(t0, 9, "z"))
	readers[2].addExemplars(t, other, ex(t0, 9, "z"))
	ignored := labels.FromStrings("__name__", "ignored", "job", "x")
	readers[0].addExemplars(t, ignored, ex(t0, 9, "y"))
	readers[1].addExemplars(t, ignored, ex(t0, 9, "y"))

	eq, err := q.ExemplarQuerier(ctxA)
	require.NoError(t, err)
	selectors := [][]*labels.Matcher{
		{labels.MustNewMatcher(labels.MatchEqual, "job", "api")},
		{labels.MustNewMatcher(labels.MatchRegexp, "__name__", "db_.*")},
	}
	got, err := eq.Select(t0, t0+3000, selectors...)
	require.NoError(t, err)
	want := []exemplar.QueryResult{
		{SeriesLabels: other, Exemplars: []exemplar.Exemplar{ex(t0, 9, "z")}},
		{SeriesLabels: up, Exemplars: []exemplar.Exemplar{
			ex(t0, 1, "a"), ex(t0+1000, 2, "b"), ex(t0+2000, 3, "c"), ex(t0+2000, 4, "d"), ex(t0+3000, 5, "e"),
		}},
	}
	require.Equal(t, want, got)

	// The same exemplars in one storage answer the same: the single binary.
	all := readers[0]
	all.addExemplars(t, up, ex(t0+2000, 4, "d"), ex(t0+3000, 5, "e"))
	all.addExemplars(t, other, ex(t0, 9, "z"))
	local, err := all.db.ExemplarQuerier(ctxA)
	require.NoError(t, err)
	single, err := local.Select(t0, t0+3000, selectors...)
	require.NoError(t, err)
	require.Equal(t, single, got)

	// The time range applies.
	got, err = eq.Select(t0+1000, t0+2000, selectors...)
	require.NoError(t, err)
	require.Equal(t, []exemplar.QueryResult{{SeriesLabels: up, Exemplars: []exemplar.Exemplar{
		ex(t0+1000, 2, "b"), ex(t0+2000, 3, "c"), ex(t0+2000, 4, "d"),
	}}}, got)

	// Nothing matches: an empty answer, not nil.
	got, err = eq.Select(t0, t0+3000, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "none")})
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Empty(t, got)
}

func TestExemplarsTolerateOneIngesterDown(t *testing.T) {
	readers, q := replicas(t, 3)
	up := labels.FromStrings("__name__", "up")
	for _, r := range readers {
		r.addExemplars(t, up, ex(t0, 1, "a"), ex(t0+1000, 2, "b"))
	}
	readers[0].srv.Stop()
	eq, err := q.ExemplarQuerier(ctxA)
	require.NoError(t, err)
	sel := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")}
	got, err := eq.Select(t0, t0+1000, sel)
	require.NoError(t, err)
	require.Equal(t, []exemplar.QueryResult{{SeriesLabels: up, Exemplars: []exemplar.Exemplar{ex(t0, 1, "a"), ex(t0+1000, 2, "b")}}}, got)

	readers[1].srv.Stop()
	_, err = eq.Select(t0, t0+1000, sel)
	require.Error(t, err, "two of three down: no quorum, and no silent hole")
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err))
}

func TestExemplarsNeedTenant(t *testing.T) {
	_, q := replicas(t, 1)
	_, err := q.ExemplarQuerier(context.Background())
	require.Error(t, err)
	_, err = q.MetricMetadata(context.Background(), "", 0, 0)
	require.Error(t, err)
}

func TestMetadataUnion(t *testing.T) {
	var (
		upGauge   = metadata.Metadata{Type: model.MetricTypeGauge, Help: "Up."}
		rpcA      = metadata.Metadata{Type: model.MetricTypeCounter, Help: "RPCs, as A says.", Unit: "seconds"}
		rpcB      = metadata.Metadata{Type: model.MetricTypeCounter, Help: "RPCs, as B says."}
		rpcC      = metadata.Metadata{Type: model.MetricTypeHistogram, Help: "RPCs."}
		zetaState = metadata.Metadata{Type: model.MetricTypeStateset, Help: "Zeta."}
	)
	readers, q := replicas(t, 3)
	// Every entry is on a write quorum (two of three replicas), as the
	// distributor shards metadata by family name with replication; a read
	// quorum is any two of them.
	readers[0].meta = map[string][]metadata.Metadata{"up": {upGauge}, "rpc": {rpcA, rpcB}}
	readers[1].meta = map[string][]metadata.Metadata{"up": {upGauge}, "zeta": {zetaState}, "rpc": {rpcC}}
	readers[2].meta = map[string][]metadata.Metadata{"zeta": {zetaState}, "rpc": {rpcA, rpcB, rpcC}}

	all := map[string][]metadata.Metadata{"up": {upGauge}, "rpc": {rpcA, rpcB, rpcC}, "zeta": {zetaState}}
	for _, tc := range []struct {
		name                  string
		metric                string
		limit, limitPerMetric int
		want                  map[string][]metadata.Metadata
	}{
		{name: "all", want: all},
		{name: "one metric", metric: "rpc", want: map[string][]metadata.Metadata{"rpc": all["rpc"]}},
		{name: "unknown metric", metric: "nope", want: map[string][]metadata.Metadata{}},
		{name: "limit", limit: 2, want: map[string][]metadata.Metadata{"rpc": all["rpc"], "up": {upGauge}}},
		{name: "limit above total", limit: 10, want: all},
		{name: "limit per metric", limitPerMetric: 2, want: map[string][]metadata.Metadata{"rpc": {rpcA, rpcB}, "up": {upGauge}, "zeta": {zetaState}}},
		{name: "both limits", metric: "rpc", limit: 1, limitPerMetric: 1, want: map[string][]metadata.Metadata{"rpc": {rpcA}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Replicas limit in map order: ask often to meet many orders.
			for range 20 {
				got, err := q.MetricMetadata(ctxA, tc.metric, tc.limit, tc.limitPerMetric)
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
			}
		})
	}

	// One ingester down: its families are on the others.
	readers[2].srv.Stop()
	got, err := q.MetricMetadata(ctxA, "", 0, 0)
	require.NoError(t, err)
	require.Equal(t, all, got)
}

func TestMetadataLimitsCountDistinctEntries(t *testing.T) {
	// Each replica cut its answer at the limits before the union: the union
	// still fills the limits whenever there are enough entries in all.
	var fams []map[string][]metadata.Metadata
	for _, help := range []string{"x", "y", "z"} {
		fams = append(fams, map[string][]metadata.Metadata{
			"m_" + help: {{Type: model.MetricTypeGauge, Help: help}},
			"shared":    {{Type: model.MetricTypeGauge, Help: help}},
		})
	}
	got := mergeMetadata(fams, 3, 2)
	require.Equal(t, map[string][]metadata.Metadata{
		"m_x": {{Type: model.MetricTypeGauge, Help: "x"}},
		"m_y": {{Type: model.MetricTypeGauge, Help: "y"}},
		"m_z": {{Type: model.MetricTypeGauge, Help: "z"}},
	}, got)
	got = mergeMetadata(fams, 0, 2)
	require.Equal(t, []metadata.Metadata{{Type: model.MetricTypeGauge, Help: "x"}, {Type: model.MetricTypeGauge, Help: "y"}}, got["shared"])
}
