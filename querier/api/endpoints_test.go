package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

func TestSeries(t *testing.T) {
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "one matcher",
			path: "/series",
			form: url.Values{"match[]": {"up"}},
			post: true,
			code: http.StatusOK,
			body: ok(`[` + upALabels + `,` + upBLabels + `]`),
		},
		{
			name: "overlapping matchers are merged",
			path: "/series",
			form: url.Values{"match[]": {`up{job="b"}`, "up"}},
			post: true,
			code: http.StatusOK,
			body: ok(`[` + upALabels + `,` + upBLabels + `]`),
		},
		{
			name: "sorted by labels",
			path: "/series",
			form: url.Values{"match[]": {`{job="a"}`}, "start": {"1700000000"}, "end": {"1700000030"}},
			code: http.StatusOK,
			body: ok(`[{"__name__":"test_counter_total","job":"a"},{"__name__":"test_histogram","job":"a"},` + upALabels + `]`),
		},
		{
			name: "limit truncates",
			path: "/series",
			form: url.Values{"match[]": {"up"}, "limit": {"1"}},
			post: true,
			code: http.StatusOK,
			body: okWarn(`[`+upALabels+`]`, truncated),
		},
		{
			name: "limit not reached",
			path: "/series",
			form: url.Values{"match[]": {"up"}, "limit": {"2"}},
			code: http.StatusOK,
			body: ok(`[` + upALabels + `,` + upBLabels + `]`),
		},
		{
			name: "outside time range",
			path: "/series",
			form: url.Values{"match[]": {"up"}, "start": {"1800000000"}},
			code: http.StatusOK,
			body: ok(`[]`),
		},
		{
			name: "no match",
			path: "/series",
			form: url.Values{"start": {"1700000000"}},
			post: true,
			code: http.StatusBadRequest,
			body: fail("bad_data", `no match[] parameter provided`),
		},
		{
			name: "only empty matchers",
			path: "/series",
			form: url.Values{"match[]": {`{job=""}`}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"match[]\": match[] must contain at least one non-empty matcher`),
		},
		{
			name:     "unparsable matcher",
			path:     "/series",
			form:     url.Values{"match[]": {"up{"}},
			code:     http.StatusBadRequest,
			contains: []string{`"error":"invalid parameter \"match[]\": 1:4: parse error: `},
		},
		{
			name: "bad start",
			path: "/series",
			form: url.Values{"match[]": {"up"}, "start": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"start\": invalid time value for 'start': cannot parse \"x\" to a valid timestamp`),
		},
		{
			name: "min and max time strings",
			path: "/series",
			form: url.Values{"match[]": {"up"}, "start": {minTimeFormatted}, "end": {maxTimeFormatted}},
			code: http.StatusOK,
			body: ok(`[` + upALabels + `,` + upBLabels + `]`),
		},
	})
}

func TestLabels(t *testing.T) {
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "all",
			path: "/labels",
			post: true,
			code: http.StatusOK,
			body: ok(`["__name__","job"]`),
		},
		{
			name: "with matcher",
			path: "/labels",
			form: url.Values{"match[]": {"test_counter_total"}, "start": {"1700000000"}, "end": {"1700000030"}},
			post: true,
			code: http.StatusOK,
			body: ok(`["__name__","job"]`),
		},
		{
			name: "several matchers",
			path: "/labels",
			form: url.Values{"match[]": {"test_counter_total", "up"}},
			code: http.StatusOK,
			body: ok(`["__name__","job"]`),
		},
		{
			name: "no series",
			path: "/labels",
			form: url.Values{"match[]": {"nonexistent"}},
			code: http.StatusOK,
			body: ok(`[]`),
		},
		{
			name: "limit truncates",
			path: "/labels",
			form: url.Values{"limit": {"1"}},
			post: true,
			code: http.StatusOK,
			body: okWarn(`["__name__"]`, truncated),
		},
		{
			name: "only empty matchers",
			path: "/labels",
			form: url.Values{"match[]": {`{job=~".*"}`}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `match[] must contain at least one non-empty matcher`),
		},
		{
			name: "bad end",
			path: "/labels",
			form: url.Values{"end": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"end\": invalid time value for 'end': cannot parse \"x\" to a valid timestamp`),
		},
	})
}

func TestLabelValues(t *testing.T) {
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "metric names",
			path: "/label/__name__/values",
			code: http.StatusOK,
			body: ok(`["test_counter_total","test_histogram","up"]`),
		},
		{
			name: "with matcher",
			path: "/label/job/values",
			form: url.Values{"match[]": {"up"}},
			code: http.StatusOK,
			body: ok(`["a","b"]`),
		},
		{
			name: "several matchers",
			path: "/label/job/values",
			form: url.Values{"match[]": {`up{job="b"}`, "test_histogram"}},
			code: http.StatusOK,
			body: ok(`["a","b"]`),
		},
		{
			name: "escaped name",
			path: "/label/U__job/values",
			code: http.StatusOK,
			body: ok(`["a","b"]`),
		},
		{
			name: "unknown label",
			path: "/label/foo/values",
			code: http.StatusOK,
			body: ok(`[]`),
		},
		{
			name: "limit truncates",
			path: "/label/__name__/values",
			form: url.Values{"limit": {"2"}},
			code: http.StatusOK,
			body: okWarn(`["test_counter_total","test_histogram"]`, truncated),
		},
		{
			name: "invalid label name",
			path: "/label/%FF/values",
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid label name: \"\\xff\"`),
		},
		{
			name: "bad limit",
			path: "/label/job/values",
			form: url.Values{"limit": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax`),
		},
	})
}

func TestMetadata(t *testing.T) {
	const (
		counter = `"test_counter_total":[{"type":"counter","unit":"","help":"A counter."},{"type":"counter","unit":"","help":"A counter, described again."}]`
		hist    = `"test_histogram":[{"type":"histogram","unit":"seconds","help":"A \u003chistogram\u003e."}]`
		up      = `"up":[{"type":"gauge","unit":"","help":"Whether the target is up."}]`
	)
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "all, deduplicated",
			path: "/metadata",
			code: http.StatusOK,
			body: ok(`{` + counter + `,` + hist + `,` + up + `}`),
		},
		{
			name: "one metric",
			path: "/metadata",
			form: url.Values{"metric": {"up"}},
			code: http.StatusOK,
			body: ok(`{` + up + `}`),
		},
		{
			name: "unknown metric",
			path: "/metadata",
			form: url.Values{"metric": {"nonexistent"}},
			code: http.StatusOK,
			body: ok(`{}`),
		},
		{
			name: "limit",
			path: "/metadata",
			form: url.Values{"limit": {"2"}},
			code: http.StatusOK,
			body: ok(`{` + counter + `,` + hist + `}`),
		},
		{
			name: "zero limit",
			path: "/metadata",
			form: url.Values{"limit": {"0"}},
			code: http.StatusOK,
			body: ok(`{}`),
		},
		{
			name: "negative limit",
			path: "/metadata",
			form: url.Values{"limit": {"-1"}},
			code: http.StatusOK,
			body: ok(`{` + counter + `,` + hist + `,` + up + `}`),
		},
		{
			name: "limit per metric",
			path: "/metadata",
			form: url.Values{"limit_per_metric": {"1"}, "metric": {"test_counter_total"}},
			code: http.StatusOK,
			body: ok(`{"test_counter_total":[{"type":"counter","unit":"","help":"A counter."}]}`),
		},
		{
			name: "bad limit",
			path: "/metadata",
			form: url.Values{"limit": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `limit must be a number`),
		},
		{
			name: "bad limit per metric",
			path: "/metadata",
			form: url.Values{"limit_per_metric": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `limit_per_metric must be a number`),
		},
	})

	t.Run("querier error", func(t *testing.T) {
		s := newTestServerWith(t, newTestEngine(t, 1000), fakeMetadata{err: errBoom})
		resp := s.do(t, context.Background(), http.MethodGet, "/api/v1/metadata", nil)
		require.Equal(t, http.StatusUnprocessableEntity, resp.code)
		require.Equal(t, fail("execution", "boom"), resp.body)
	})
	t.Run("no querier", func(t *testing.T) {
		s := newTestServerWith(t, newTestEngine(t, 1000), nil)
		resp := s.do(t, context.Background(), http.MethodGet, "/api/v1/metadata", nil)
		require.Equal(t, http.StatusOK, resp.code)
		require.Equal(t, ok(`{}`), resp.body)
	})
}

func TestQueryExemplars(t *testing.T) {
	const counterExemplars = `[{"seriesLabels":{"__name__":"test_counter_total","job":"a"},"exemplars":[{"labels":{"trace_id":"abc"},"value":"1","timestamp":1700000000}]}]`
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "in range",
			path: "/query_exemplars",
			form: url.Values{"query": {"test_counter_total"}, "start": {"1699999990"}, "end": {"1700000010"}},
			post: true,
			code: http.StatusOK,
			body: ok(counterExemplars),
		},
		{
			name: "default range",
			path: "/query_exemplars",
			form: url.Values{"query": {`rate(test_counter_total[5m]) + on() group_left() up{job="b"}`}},
			code: http.StatusOK,
			body: ok(counterExemplars),
		},
		{
			name: "out of range",
			path: "/query_exemplars",
			form: url.Values{"query": {"test_counter_total"}, "start": {"1700000001"}},
			code: http.StatusOK,
			body: ok(`[]`),
		},
		{
			name: "no exemplars",
			path: "/query_exemplars",
			form: url.Values{"query": {"up"}},
			code: http.StatusOK,
			body: ok(`[]`),
		},
		{
			name: "no selectors",
			path: "/query_exemplars",
			form: url.Values{"query": {"1"}},
			post: true,
			code: http.StatusNoContent,
			body: "",
		},
		{
			name:     "unparsable query",
			path:     "/query_exemplars",
			form:     url.Values{"query": {"up{"}},
			code:     http.StatusBadRequest,
			contains: []string{`{"status":"error","errorType":"bad_data","error":"1:4: parse error: `},
		},
		{
			name: "end before start",
			path: "/query_exemplars",
			form: url.Values{"query": {"up"}, "start": {"1700000010"}, "end": {"1700000000"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `end timestamp must not be before start timestamp`),
		},
		{
			name: "bad start",
			path: "/query_exemplars",
			form: url.Values{"query": {"up"}, "start": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"start\": invalid time value for 'start': cannot parse \"x\" to a valid timestamp`),
		},
	})
}

func TestBuildInfoAndFormatQuery(t *testing.T) {
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "buildinfo",
			path: "/status/buildinfo",
			code: http.StatusOK,
			body: ok(`{"version":"1.2.3","revision":"abcdef","branch":"main","buildUser":"ci@isobar","buildDate":"20240101-00:00:00","goVersion":"go1.26.8"}`),
		},
		{
			name: "format",
			path: "/format_query",
			form: url.Values{"query": {"sum(up)by(job)"}},
			post: true,
			code: http.StatusOK,
			body: ok(`"sum by (job) (up)"`),
		},
		{
			name: "format escapes html",
			path: "/format_query",
			form: url.Values{"query": {`up>1`}},
			code: http.StatusOK,
			body: ok(`"up \u003e 1"`),
		},
		{
			name:     "format unparsable",
			path:     "/format_query",
			form:     url.Values{"query": {"up{"}},
			post:     true,
			code:     http.StatusBadRequest,
			contains: []string{`{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:4: parse error: `},
		},
	})
}

func TestErrors(t *testing.T) {
	t.Run("canceled request", func(t *testing.T) {
		s := newTestServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, path := range []string{"/api/v1/query?query=up", "/api/v1/query_range?query=up&start=1700000000&end=1700000030&step=15"} {
			resp := s.do(t, ctx, http.MethodGet, path, nil)
			require.Equal(t, statusClientClosedConnection, resp.code, resp.body)
			require.True(t, strings.HasPrefix(resp.body, `{"status":"error","errorType":"canceled","error":"query was canceled in `), resp.body)
		}
	})
	t.Run("too many samples", func(t *testing.T) {
		s := newTestServerWith(t, newTestEngine(t, 1), nil)
		resp := s.do(t, context.Background(), http.MethodGet, "/api/v1/query", url.Values{"query": {"up[1m]"}, "time": {"1700000030"}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.code)
		require.Equal(t, fail("execution", "query processing would load too many samples into memory in query execution"), resp.body)
	})
	t.Run("method not allowed", func(t *testing.T) {
		s := newTestServer(t)
		for _, tc := range []struct{ method, path string }{
			{http.MethodPut, "/api/v1/query"},
			{http.MethodPost, "/api/v1/label/job/values"},
			{http.MethodPost, "/api/v1/metadata"},
			{http.MethodDelete, "/prometheus/api/v1/series"},
		} {
			resp := s.do(t, context.Background(), tc.method, tc.path, nil)
			require.Equal(t, http.StatusMethodNotAllowed, resp.code, tc.method+" "+tc.path)
		}
	})
	t.Run("status codes", func(t *testing.T) {
		for _, tc := range []struct {
			err  *apiError
			code int
		}{
			{badData(errBoom), http.StatusBadRequest},
			{queryError(errBoom), http.StatusUnprocessableEntity},
			{queryError(context.Canceled), statusClientClosedConnection},
			{queryError(fmt.Errorf("expanding series: %w", rpc.Errorf(rpc.CauseUnavailable, "store-gateways down"))), http.StatusServiceUnavailable},
			{queryError(rpc.Errorf(rpc.CauseBadData, "bad matcher")), http.StatusUnprocessableEntity},
			{&apiError{typ: errorTimeout, err: errBoom}, http.StatusServiceUnavailable},
			{&apiError{typ: errorCostLimit, err: errBoom}, http.StatusUnprocessableEntity},
			{&apiError{typ: errorInternal, err: errBoom}, http.StatusInternalServerError},
		} {
			require.Equal(t, tc.code, tc.err.typ.statusCode(), tc.err.Error())
		}
	})
}

func TestWithConfig(t *testing.T) {
	s := newTestServer(t)
	const query = `sort_by_label(up, "job")`
	strict := s.api
	mux := http.NewServeMux()
	strict.Register(mux, "/strict")
	loose := s.api.WithConfig(Config{EnableExperimentalFunctions: true})
	loose.Register(mux, "/loose")
	s.mux = mux

	resp := s.do(t, context.Background(), http.MethodGet, "/strict/format_query", url.Values{"query": {query}})
	require.Equal(t, http.StatusBadRequest, resp.code, resp.body)
	resp = s.do(t, context.Background(), http.MethodGet, "/loose/format_query", url.Values{"query": {query}})
	require.Equal(t, http.StatusOK, resp.code, resp.body)
	require.Equal(t, ok(`"sort_by_label(up, \"job\")"`), resp.body)
}
