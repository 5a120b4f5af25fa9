package ingester

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// TestExemplarsAndMetadataOverGRPC checks that the gRPC reads answer what
// the in-process ones answer.
func TestExemplarsAndMetadataOverGRPC(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	client := serveGRPC(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	withExemplar := func(ts prompb.TimeSeries, trace string, v float64) prompb.TimeSeries {
		ts.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: trace}}, Value: v, Timestamp: ts.Samples[0].Timestamp}}
		return ts
	}
	require.NoError(t, client.Push(ctx, forward(t, &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			withExemplar(floatSeries(t0, 1, "__name__", "rpc_seconds", "job", "a"), "t1", 0.5),
			withExemplar(floatSeries(t0, 2, "__name__", "rpc_seconds", "job", "b"), "t2", 0.25),
			floatSeries(t0, 3, "__name__", "up", "job", "a"),
		},
		Metadata: []prompb.MetricMetadata{
			{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "rpc_seconds", Help: "RPC latency.", Unit: "seconds"},
			{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Up."},
			{Type: prompb.MetricMetadata_UNKNOWN, MetricFamilyName: "odd", Help: "No type."},
		},
	})))
	require.NoError(t, client.Push(ctx, forward(t, &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{withExemplar(floatSeries(t0+1000, 4, "__name__", "rpc_seconds", "job", "a"), "t3", 0.75)},
	})))

	sel := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "rpc_seconds")}
	eq, err := ing.ExemplarQuerier(ctx)
	require.NoError(t, err)
	want, err := eq.Select(math.MinInt64, math.MaxInt64, sel)
	require.NoError(t, err)
	require.Len(t, want, 2)
	resp, err := client.QueryExemplars(ctx, &rpc.ExemplarsRequest{Start: math.MinInt64, End: math.MaxInt64, Matchers: [][]*prompb.LabelMatcher{rpc.ToLabelMatchers(sel)}})
	require.NoError(t, err)
	require.Equal(t, want, resp.Results())

	resp, err = client.QueryExemplars(tenant.With(context.Background(), "team-b"), &rpc.ExemplarsRequest{Start: math.MinInt64, End: math.MaxInt64, Matchers: [][]*prompb.LabelMatcher{rpc.ToLabelMatchers(sel)}})
	require.NoError(t, err)
	require.Empty(t, resp.Results(), "the tenant travels with the call")

	_, err = client.QueryExemplars(ctx, &rpc.ExemplarsRequest{Matchers: [][]*prompb.LabelMatcher{{{Type: prompb.LabelMatcher_RE, Name: "job", Value: "("}}}})
	require.Error(t, err)
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))

	for _, tc := range []struct {
		metric                string
		limit, limitPerMetric int
	}{{}, {metric: "up"}, {metric: "none"}, {limit: 5}} {
		want, err := ing.MetricMetadata(ctx, tc.metric, tc.limit, tc.limitPerMetric)
		require.NoError(t, err)
		got, err := client.QueryMetadata(ctx, &rpc.MetadataRequest{Metric: tc.metric, Limit: tc.limit, LimitPerMetric: tc.limitPerMetric})
		require.NoError(t, err)
		require.Equal(t, want, got.Families(), "%+v", tc)
	}
	got, err := client.QueryMetadata(ctx, &rpc.MetadataRequest{Limit: 1})
	require.NoError(t, err)
	require.Len(t, got.Families(), 1)
}
