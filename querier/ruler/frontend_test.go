package ruler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/promapi"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

func TestFrontendURL(t *testing.T) {
	for _, c := range []struct{ addr, want, err string }{
		{addr: "frontend:8080", want: "http://frontend:8080/prometheus/api/v1/query"},
		{addr: "http://frontend:8080/", want: "http://frontend:8080/prometheus/api/v1/query"},
		{addr: "https://fe.example:443/api/prom", want: "https://fe.example:443/api/prom/api/v1/query"},
		{addr: "ftp://frontend", err: "want host:port"},
		{addr: "http://", err: "want host:port"},
	} {
		got, err := frontendURL(c.addr)
		if c.err != "" {
			require.ErrorContains(t, err, c.err, c.addr)
			continue
		}
		require.NoError(t, err, c.addr)
		require.Equal(t, c.want, got)
	}
}

// The ruler's queries through a query-frontend: the tenant, the time and
// the wish for exact series go with each; floats and native histograms
// come back as they were evaluated; an error answer is an error that
// says what the frontend said.
func TestFrontendQueryFunc(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	h := &histogram.FloatHistogram{Schema: 3, Count: 10, Sum: 12.5, ZeroThreshold: 1e-128, PositiveSpans: []histogram.Span{{Offset: 2, Length: 2}}, PositiveBuckets: []float64{4, 6}}
	answer := promql.Vector{
		{Metric: labels.FromStrings("__name__", "up", "job", "node"), T: at.UnixMilli(), F: 0.1 + 0.2},
		{Metric: labels.FromStrings("job", "lb"), T: at.UnixMilli(), H: h},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/prometheus/api/v1/query", r.URL.Path)
		require.Equal(t, promapi.SeriesProtobuf, r.Header.Get("Accept"))
		require.Equal(t, "team-a", r.Header.Get(tenant.HeaderName))
		require.Equal(t, "1700000000.123", r.FormValue("time"))
		switch r.FormValue("query") {
		case "good":
			b, err := promapi.MarshalSeries(answer)
			require.NoError(t, err)
			w.Header().Set("Content-Type", promapi.SeriesProtobuf)
			_, _ = w.Write(b)
		case "json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"execution","error":"the query fetched too many series (limit: 10)"}`))
		}
	}))
	defer srv.Close()
	endpoint, err := frontendURL(srv.URL)
	require.NoError(t, err)
	query := frontendQueryFunc(srv.Client(), endpoint)
	ctx := tenant.With(context.Background(), "team-a")

	got, err := query(ctx, "good", at)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, answer[0].Metric, got[0].Metric)
	require.Equal(t, answer[0].F, got[0].F)
	require.Equal(t, at.UnixMilli(), got[0].T)
	require.True(t, h.Equals(got[1].H), "%v", got[1].H)

	_, err = query(ctx, "slow", at)
	require.ErrorContains(t, err, `query "slow" through the query-frontend: 422 execution: the query fetched too many series (limit: 10)`)
	_, err = query(ctx, "json", at)
	require.ErrorContains(t, err, "is it an isobar query-frontend or querier?")
	_, err = query(context.Background(), "good", at)
	require.Error(t, err, "no tenant")
}
