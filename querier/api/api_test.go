package api

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isobar-tsdb/isobar/pkg/promapi"
	jsoniter "github.com/json-iterator/go"
	"github.com/stretchr/testify/require"
)

// ok builds the envelope of a successful response.
func ok(data string) string {
	return `{"status":"success","data":` + data + `}`
}

// okWarn builds the envelope of a successful response with one warning.
func okWarn(data, warning string) string {
	return `{"status":"success","data":` + data + `,"warnings":["` + warning + `"]}`
}

// fail builds the envelope of an error response; msg is already JSON-escaped.
func fail(typ, msg string) string {
	return `{"status":"error","errorType":"` + typ + `","error":"` + msg + `"}`
}

const truncated = "results truncated due to limit"

// apiCase is one request and its expected answer. Every case runs under both
// prefixes, and with GET and, when post is set, POST.
type apiCase struct {
	name string
	path string // Below the prefix, e.g. "/query".
	form url.Values
	post bool
	code int
	// body is the exact expected body; when empty, contains lists substrings.
	body     string
	contains []string
}

func runCases(t *testing.T, s *testServer, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		methods := []string{http.MethodGet}
		if tc.post {
			methods = append(methods, http.MethodPost)
		}
		for _, prefix := range []string{"/api/v1", "/prometheus/api/v1"} {
			for _, method := range methods {
				t.Run(tc.name+"/"+method+prefix, func(t *testing.T) {
					resp := s.do(t, context.Background(), method, prefix+tc.path, tc.form)
					require.Equal(t, tc.code, resp.code, resp.body)
					if tc.code != http.StatusNoContent {
						require.Equal(t, "application/json", resp.contentType)
					}
					if tc.body != "" || len(tc.contains) == 0 {
						require.Equal(t, tc.body, resp.body)
					}
					for _, c := range tc.contains {
						require.Contains(t, resp.body, c)
					}
				})
			}
		}
	}
}

const (
	upA0      = `{"metric":{"__name__":"up","job":"a"},"value":[1700000000.500,"1"]}`
	upB0      = `{"metric":{"__name__":"up","job":"b"},"value":[1700000000.500,"0"]}`
	histJSON  = `{"count":"3","sum":"5","buckets":[[0,"0.5","1","1"],[0,"1","2","2"]]}`
	upALabels = `{"__name__":"up","job":"a"}`
	upBLabels = `{"__name__":"up","job":"b"}`
)

func TestQuery(t *testing.T) {
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "vector",
			path: "/query",
			form: url.Values{"query": {"up"}, "time": {"1700000000.5"}},
			post: true,
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[` + upA0 + `,` + upB0 + `]}`),
		},
		{
			name: "default time is now",
			path: "/query",
			form: url.Values{"query": {`up{job="a"}`}},
			post: true,
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000030,"3"]}]}`),
		},
		{
			name: "rfc3339 time",
			path: "/query",
			form: url.Values{"query": {`up{job="a"}`}, "time": {"2023-11-14T22:13:20.005Z"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000.005,"1"]}]}`),
		},
		{
			name: "empty vector",
			path: "/query",
			form: url.Values{"query": {"nonexistent"}, "time": {"1700000000"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[]}`),
		},
		{
			name: "scalar",
			path: "/query",
			form: url.Values{"query": {"1+1"}, "time": {"1700000000.123"}},
			post: true,
			code: http.StatusOK,
			body: ok(`{"resultType":"scalar","result":[1700000000.123,"2"]}`),
		},
		{
			name: "string",
			path: "/query",
			form: url.Values{"query": {`"a<b"`}, "time": {"1700000000"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"string","result":[1700000000,"a\u003cb"]}`),
		},
		{
			name: "matrix from range selector",
			path: "/query",
			form: url.Values{"query": {`up{job="a"}[30s]`}, "time": {"1700000030"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000015,"2"],[1700000030,"3"]]}]}`),
		},
		{
			name: "native histogram",
			path: "/query",
			form: url.Values{"query": {"test_histogram"}, "time": {"1700000000"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[{"metric":{"__name__":"test_histogram","job":"a"},"histogram":[1700000000,` + histJSON + `]}]}`),
		},
		{
			name: "limit truncates",
			path: "/query",
			form: url.Values{"query": {"up"}, "time": {"1700000000.5"}, "limit": {"1"}},
			post: true,
			code: http.StatusOK,
			body: okWarn(`{"resultType":"vector","result":[`+upA0+`]}`, truncated),
		},
		{
			name: "limit not reached",
			path: "/query",
			form: url.Values{"query": {"up"}, "time": {"1700000000.5"}, "limit": {"2"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[` + upA0 + `,` + upB0 + `]}`),
		},
		{
			name:     "info annotation",
			path:     "/query",
			form:     url.Values{"query": {`rate(up{job="a"}[1m])`}, "time": {"1700000030"}},
			code:     http.StatusOK,
			contains: []string{`"resultType":"vector"`, `,"infos":["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:6)"]}`},
		},
		{
			name:     "stats",
			path:     "/query",
			form:     url.Values{"query": {"up"}, "time": {"1700000000.5"}, "stats": {"true"}},
			code:     http.StatusOK,
			contains: []string{`{"status":"success","data":{"resultType":"vector","result":[` + upA0 + `,` + upB0 + `],"stats":{"timings":{`},
		},
		{
			name:     "deprecated stats value",
			path:     "/query",
			form:     url.Values{"query": {"up"}, "time": {"1700000000.5"}, "stats": {"yes"}},
			code:     http.StatusOK,
			contains: []string{`"warnings":["value \"yes\" for parameter \"stats\" is deprecated and will be rejected in the next major release, use \"true\" or \"all\""]}`},
		},
		{
			name: "missing query",
			path: "/query",
			form: url.Values{"time": {"1700000000"}},
			post: true,
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"query\": unknown position: parse error: no expression found in input`),
		},
		{
			name:     "unparsable query",
			path:     "/query",
			form:     url.Values{"query": {"up{"}},
			code:     http.StatusBadRequest,
			contains: []string{`{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:4: parse error: `},
		},
		{
			name: "bad time",
			path: "/query",
			form: url.Values{"query": {"up"}, "time": {"abc"}},
			post: true,
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"time\": invalid time value for 'time': cannot parse \"abc\" to a valid timestamp`),
		},
		{
			name: "bad limit",
			path: "/query",
			form: url.Values{"query": {"up"}, "limit": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax`),
		},
		{
			name: "negative limit",
			path: "/query",
			form: url.Values{"query": {"up"}, "limit": {"-1"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"limit\": limit must be non-negative`),
		},
		{
			name: "bad timeout",
			path: "/query",
			form: url.Values{"query": {"up"}, "timeout": {"abc"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"timeout\": cannot parse \"abc\" to a valid duration`),
		},
		{
			name: "zero timeout",
			path: "/query",
			form: url.Values{"query": {"up"}, "timeout": {"0"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"timeout\": timeout must be positive, got 0s`),
		},
		{
			name: "timeout expires",
			path: "/query",
			form: url.Values{"query": {"up"}, "timeout": {"0.000000001"}},
			code: http.StatusServiceUnavailable,
			body: fail("timeout", `query timed out in query execution`),
		},
		{
			name: "timeout not reached",
			path: "/query",
			form: url.Values{"query": {`up{job="a"}`}, "time": {"1700000000"}, "timeout": {"1m"}},
			post: true,
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000,"1"]}]}`),
		},
		{
			name: "bad lookback delta",
			path: "/query",
			form: url.Values{"query": {"up"}, "lookback_delta": {"x"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `error parsing lookback delta duration: cannot parse \"x\" to a valid duration`),
		},
		{
			name: "lookback delta",
			path: "/query",
			form: url.Values{"query": {`up{job="a"}`}, "time": {"1700000040"}, "lookback_delta": {"5s"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"vector","result":[]}`),
		},
		{
			name: "execution error",
			path: "/query",
			form: url.Values{"query": {`label_replace(up, "job", "x", "", "")`}, "time": {"1700000000"}},
			post: true,
			code: http.StatusUnprocessableEntity,
			body: fail("execution", `vector cannot contain metrics with the same labelset`),
		},
	})
}

func TestQueryRange(t *testing.T) {
	s := newTestServer(t)
	runCases(t, s, []apiCase{
		{
			name: "matrix",
			path: "/query_range",
			form: url.Values{"query": {`up{job="a"}`}, "start": {"1700000000"}, "end": {"1700000030"}, "step": {"15s"}},
			post: true,
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000,"1"],[1700000015,"2"],[1700000030,"3"]]}]}`),
		},
		{
			name: "rfc3339 and float step",
			path: "/query_range",
			form: url.Values{"query": {`up{job="a"}`}, "start": {"2023-11-14T22:13:20Z"}, "end": {"2023-11-14T22:13:35Z"}, "step": {"7.5"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000,"1"],[1700000007.500,"1"],[1700000015,"2"]]}]}`),
		},
		{
			name: "native histograms",
			path: "/query_range",
			form: url.Values{"query": {"test_histogram"}, "start": {"1700000000"}, "end": {"1700000015"}, "step": {"15"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[{"metric":{"__name__":"test_histogram","job":"a"},"histograms":[[1700000000,` + histJSON + `],[1700000015,` + histJSON + `]]}]}`),
		},
		{
			name: "scalar",
			path: "/query_range",
			form: url.Values{"query": {"2"}, "start": {"1700000000"}, "end": {"1700000001"}, "step": {"1"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"2"],[1700000001,"2"]]}]}`),
		},
		{
			name: "empty",
			path: "/query_range",
			form: url.Values{"query": {"nonexistent"}, "start": {"1700000000"}, "end": {"1700000030"}, "step": {"15"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[]}`),
		},
		{
			name: "limit truncates",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "start": {"1700000000"}, "end": {"1700000000"}, "step": {"15"}, "limit": {"1"}},
			post: true,
			code: http.StatusOK,
			body: okWarn(`{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000,"1"]]}]}`, truncated),
		},
		{
			name: "missing start",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "end": {"1700000030"}, "step": {"15"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"start\": cannot parse \"\" to a valid timestamp`),
		},
		{
			name: "bad end",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "start": {"1700000000"}, "end": {"x"}, "step": {"15"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"end\": cannot parse \"x\" to a valid timestamp`),
		},
		{
			name: "end before start",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "start": {"1700000030"}, "end": {"1700000000"}, "step": {"15"}},
			post: true,
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"end\": end timestamp must not be before start time`),
		},
		{
			name: "bad step",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "start": {"1700000000"}, "end": {"1700000030"}, "step": {"abc"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"step\": cannot parse \"abc\" to a valid duration`),
		},
		{
			name: "zero step",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "start": {"1700000000"}, "end": {"1700000030"}, "step": {"0"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer`),
		},
		{
			name: "too many points",
			path: "/query_range",
			form: url.Values{"query": {"up"}, "start": {"0"}, "end": {"11001"}, "step": {"1"}},
			post: true,
			code: http.StatusBadRequest,
			body: fail("bad_data", `exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)`),
		},
		{
			name: "exactly 11000 steps",
			path: "/query_range",
			form: url.Values{"query": {"nonexistent"}, "start": {"0"}, "end": {"11000"}, "step": {"1"}},
			code: http.StatusOK,
			body: ok(`{"resultType":"matrix","result":[]}`),
		},
		{
			name: "range vector rejected",
			path: "/query_range",
			form: url.Values{"query": {"up[5m]"}, "start": {"1700000000"}, "end": {"1700000030"}, "step": {"15"}},
			code: http.StatusBadRequest,
			body: fail("bad_data", `invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector`),
		},
	})
}

func TestSendEncodingFailure(t *testing.T) {
	a := New(nil, nil, nil, nil, BuildInfo{}, nil)
	rec := httptest.NewRecorder()
	a.send(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query", nil), http.StatusOK, func(s *jsoniter.Stream) {
		promapi.WriteSuccess(s, math.Inf(1), nil, nil)
	})
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
	require.Contains(t, rec.Body.String(), "unsupported value")
}

// Series, labels and label values without a start look back the default
// window from end, or from now; with a start, as far as it says.
func TestMetadataDefaultWindow(t *testing.T) {
	s := newTestServer(t) // samples from baseMs to baseMs+30s; now is baseMs+30s
	mux := http.NewServeMux()
	a := s.api.WithConfig(Config{DefaultMetadataWindow: time.Hour})
	a.Register(mux, "/api/v1")
	s.mux = mux
	at := func(ms int64) string { return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64) }
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"now inside the window", nil, `"job"`},
		{"end two hours after: the window misses the samples", url.Values{"end": {at(baseMs + 2*3600_000)}}, `[]`},
		{"an explicit start reaches them", url.Values{"start": {"0"}, "end": {at(baseMs + 2*3600_000)}}, `"job"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/labels", "/api/v1/label/job/values"} {
				res := s.do(t, context.Background(), http.MethodGet, path, tc.form)
				require.Equal(t, http.StatusOK, res.code, res.body)
				if tc.want == "[]" {
					require.Contains(t, res.body, `"data":[]`, path)
				} else {
					require.NotContains(t, res.body, `"data":[]`, path)
				}
			}
			form := url.Values{"match[]": {"up"}}
			for k, v := range tc.form {
				form[k] = v
			}
			res := s.do(t, context.Background(), http.MethodGet, "/api/v1/series", form)
			require.Equal(t, http.StatusOK, res.code, res.body)
			require.Equal(t, tc.want == "[]", strings.Contains(res.body, `"data":[]`), res.body)
		})
	}
}

func TestActiveSeries(t *testing.T) {
	s := newTestServer(t) // now is baseMs+30s, the last samples' time
	res := s.do(t, context.Background(), http.MethodGet, "/api/v1/cardinality/active_series", url.Values{"selector": {`up`}})
	require.Equal(t, http.StatusOK, res.code, res.body)
	require.Equal(t, `{"status":"success","data":[{"__name__":"up","job":"a"},{"__name__":"up","job":"b"}]}`, res.body)

	res = s.do(t, context.Background(), http.MethodGet, "/api/v1/cardinality/active_series", url.Values{"selector": {`up`}, "limit": {"1"}})
	require.Equal(t, `{"status":"success","data":[{"__name__":"up","job":"a"}],"warnings":["results truncated due to limit"]}`, res.body)

	res = s.do(t, context.Background(), http.MethodGet, "/api/v1/cardinality/active_series", nil)
	require.Equal(t, http.StatusBadRequest, res.code, res.body)
	require.Contains(t, res.body, "selector is required")

	// An hour later nothing is active.
	s.api.now = func() time.Time { return time.UnixMilli(baseMs + 3600_000) }
	mux := http.NewServeMux()
	s.api.Register(mux, "/api/v1")
	s.mux = mux
	res = s.do(t, context.Background(), http.MethodGet, "/api/v1/cardinality/active_series", url.Values{"selector": {`up`}})
	require.Equal(t, `{"status":"success","data":[]}`, res.body)
}
