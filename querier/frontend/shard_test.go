package frontend

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/promapi"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

func TestPlanShards(t *testing.T) {
	for _, tc := range []struct {
		query string
		outer string // "" when not sharded
		legs  []string
	}{
		{query: `sum(rate(x[5m]))`, outer: `sum({__isobar_embedded__="0"})`, legs: []string{
			`sum(rate(x{__query_shard__="1_of_2"}[5m]))`, `sum(rate(x{__query_shard__="2_of_2"}[5m]))`}},
		{query: `count by (a) (x)`, outer: `sum by (a) ({__isobar_embedded__="0"})`, legs: []string{
			`count by (a) (x{__query_shard__="1_of_2"})`, `count by (a) (x{__query_shard__="2_of_2"})`}},
		{query: `max without (a) (x)`, outer: `max without (a, __query_shard__) ({__isobar_embedded__="0"})`, legs: []string{
			`max without (a) (x{__query_shard__="1_of_2"})`, `max without (a) (x{__query_shard__="2_of_2"})`}},
		{query: `topk(3, x)`, outer: `topk(3, {__isobar_embedded__="0"})`, legs: []string{
			`topk(3, x{__query_shard__="1_of_2"})`, `topk(3, x{__query_shard__="2_of_2"})`}},
		{query: `avg by (a) (x)`, outer: `sum by (a) ({__isobar_embedded__="0"}) / sum by (a) ({__isobar_embedded__="1"})`, legs: []string{
			`sum by (a) (x{__query_shard__="1_of_2"})`, `sum by (a) (x{__query_shard__="2_of_2"})`,
			`count by (a) (x{__query_shard__="1_of_2"})`, `count by (a) (x{__query_shard__="2_of_2"})`}},
		{query: `histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))`, outer: `histogram_quantile(0.9, sum by (le) ({__isobar_embedded__="0"}))`, legs: []string{
			`sum by (le) (rate(x_bucket{__query_shard__="1_of_2"}[5m]))`, `sum by (le) (rate(x_bucket{__query_shard__="2_of_2"}[5m]))`}},
		// The unshardable side of a binary operation is asked whole.
		{query: `sum(x) / on () group_left y`, outer: `sum({__isobar_embedded__="0"}) / on () group_left () {__isobar_embedded__="1"}`, legs: []string{
			`sum(x{__query_shard__="1_of_2"})`, `sum(x{__query_shard__="2_of_2"})`, `y`}},
		// An aggregation of an aggregation: the inner one is sharded.
		{query: `count(sum by (a) (x))`, outer: `count(sum by (a) ({__isobar_embedded__="0"}))`, legs: []string{
			`sum by (a) (x{__query_shard__="1_of_2"})`, `sum by (a) (x{__query_shard__="2_of_2"})`}},
		{query: `sum(x) * scalar(y)`, outer: `sum({__isobar_embedded__="0"}) * scalar({__isobar_embedded__="1"})`, legs: []string{
			`sum(x{__query_shard__="1_of_2"})`, `sum(x{__query_shard__="2_of_2"})`, `y`}},
		{query: `sum(x * 2)`, outer: `sum({__isobar_embedded__="0"})`, legs: []string{
			`sum(x{__query_shard__="1_of_2"} * 2)`, `sum(x{__query_shard__="2_of_2"} * 2)`}},
		// Not series by series: not sharded.
		{query: `sum(x / y)`},
		{query: `sum(absent(x))`},
		{query: `sum(vector(1))`},
		{query: `sum(x * scalar(y))`},
		{query: `topk(scalar(y), x)`},
		{query: `quantile(0.9, x)`},
		{query: `rate(x[5m])`},
		{query: `max_over_time(sum(x)[1h:])`},
		{query: `sum(x) and y`, outer: `sum({__isobar_embedded__="0"}) and {__isobar_embedded__="1"}`, legs: []string{
			`sum(x{__query_shard__="1_of_2"})`, `sum(x{__query_shard__="2_of_2"})`, `y`}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			p := parser.NewParser(parser.Options{})
			expr, err := p.ParseExpr(tc.query)
			require.NoError(t, err)
			plan := planShards(p, expr, 2)
			if tc.outer == "" {
				require.Nil(t, plan)
				return
			}
			require.NotNil(t, plan)
			require.Equal(t, tc.outer, plan.outer)
			var legs []string
			for _, l := range plan.legs {
				legs = append(legs, l.queries...)
			}
			require.Equal(t, tc.legs, legs)
		})
	}
}

// Sharded, range and instant queries answer what the querier answers alone, to 1e-9:
// sums add up in another order.
func TestShardedAnswersMatchTheQuerier(t *testing.T) {
	queries := []string{
		`sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))`,
		`sum without (mode) (rate(node_cpu_seconds_total[5m]))`,
		`sum(rate(node_cpu_seconds_total[5m]))`,
		`avg by (mode) (rate(node_cpu_seconds_total[5m]))`,
		`count(node_cpu_seconds_total)`,
		`count by (mode) (node_cpu_seconds_total)`,
		`min by (mode) (node_cpu_seconds_total)`,
		`max(gpu_temp_celsius)`,
		`group by (bridge) (ovs_port_drops_total)`,
		`topk(2, rate(node_cpu_seconds_total[5m]))`,
		`bottomk by (mode) (1, rate(node_cpu_seconds_total[5m]))`,
		`histogram_quantile(0.9, sum by (le) (rate(lb_request_seconds_bucket[5m])))`,
		`histogram_quantile(0.9, sum(rate(lb_latency[5m])))`,
		`sum(rate(lb_latency[5m]))`,
		`sum(increase(ovs_port_drops_total[10m])) > 5`,
		`sum(rate(node_cpu_seconds_total{mode="user"}[5m])) / sum(rate(node_cpu_seconds_total[5m]))`,
		`sum by (instance) (rate(node_cpu_seconds_total[5m])) / on (instance) group_left count by (instance) (node_cpu_seconds_total)`,
		`count(count by (instance) (node_cpu_seconds_total))`,
		`sum(max_over_time(rate(ovs_port_drops_total[5m])[30m:1m]))`,
		`sum(gpu_temp_celsius offset 1h)`,
		`sum(gpu_temp_celsius @ 3600)`,
		`sum(nothing)`,
	}
	for _, shards := range []int{2, 16} {
		cfg := testConfig()
		cfg.MaxShardedQueries = 1000
		querier, frontend, calls, f := querierAndFrontend(t, fleetData, cfg)
		f.limits = fixedLimits(limits.Limits{QueryShardingTotalShards: shards})
		f.now = func() time.Time { return time.Unix(1e9, 0) }
		for _, q := range queries {
			for _, r := range [][3]string{{"0", "28800", "60"}, {"1234.5", "27000", "419"}} {
				t.Run(strconv.Itoa(shards)+"/"+q+"/"+r[2], func(t *testing.T) {
					params := url.Values{"query": {q}, "start": {r[0]}, "end": {r[1]}, "step": {r[2]}}
					code, want := get(t, querier, "/api/v1/query_range", params)
					require.Equal(t, http.StatusOK, code, want)
					for _, pass := range []string{"cold", "warm"} {
						before := calls.n.Load()
						code, got := get(t, frontend, "/api/v1/query_range", params)
						require.Equal(t, http.StatusOK, code, got)
						requireSameMatrix(t, want, got, pass)
						if pass == "cold" {
							// Split by hour, each hour in shards.
							require.GreaterOrEqual(t, calls.n.Load()-before, int64(7*shards), "sharded")
						}
					}
				})
			}
			for _, at := range []string{"3600", "28800", "1000.5"} {
				t.Run(strconv.Itoa(shards)+"/"+q+"/@"+at, func(t *testing.T) {
					params := url.Values{"query": {q}, "time": {at}}
					code, want := get(t, querier, "/api/v1/query", params)
					require.Equal(t, http.StatusOK, code, want)
					before := calls.n.Load()
					code, got := get(t, frontend, "/api/v1/query", params)
					require.Equal(t, http.StatusOK, code, got)
					requireSameMatrix(t, want, got, "instant")
					require.GreaterOrEqual(t, calls.n.Load()-before, int64(shards), "sharded")
				})
			}
		}
	}
}

// The shards of a query over all its pieces stay within
// -query-frontend.query-sharding-max-sharded-queries.
func TestShardBudget(t *testing.T) {
	_, _, _, f := querierAndFrontend(t, fleetData, testConfig())
	f.limits = fixedLimits(limits.Limits{QueryShardingTotalShards: 16})
	for _, tc := range []struct {
		query          string
		budget, pieces int
		maxShards      int
		wantRequests   int // 0: not sharded
	}{
		{`sum(x)`, 128, 1, 0, 16},
		{`sum(x)`, 128, 30, 0, 4},
		{`avg(x)`, 128, 30, 0, 4},     // 2 legs of 2 shards
		{`sum(x) / y`, 128, 30, 0, 4}, // a leg of 3 shards, y whole
		{`sum(x)`, 128, 100, 0, 0},
		{`sum(x)`, 128, 1, 2, 2}, // an in-process querier on 2 cores
		{`sum(x)`, 128, 1, 1, 0},
	} {
		f.cfg.MaxShardedQueries, f.cfg.MaxShards = tc.budget, tc.maxShards
		plan := f.planFor("t", tc.query, tc.pieces, 1)
		if tc.wantRequests == 0 {
			require.Nil(t, plan, tc.query)
			continue
		}
		require.NotNil(t, plan, tc.query)
		require.Equal(t, tc.wantRequests, plan.requests(), "%s over %d pieces", tc.query, tc.pieces)
	}
}

// A querier's error for a shard is the answer.
func TestShardedQueryFailsAsTheQuerier(t *testing.T) {
	_, frontend, _, f := querierAndFrontend(t, fleetData, testConfig())
	f.limits = fixedLimits(limits.Limits{QueryShardingTotalShards: 4})
	code, body := get(t, frontend, "/api/v1/query_range", url.Values{
		"query": {`sum(label_replace(node_cpu_seconds_total, "mode", "x", "", ""))`}, "start": {"0"}, "end": {"600"}, "step": {"60"}})
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "vector cannot contain metrics with the same labelset")
}

// requireSameMatrix compares two query_range answers: the same series and
// times, values within 1e-9 relative.
func requireSameMatrix(t *testing.T, want, got, msg string) {
	t.Helper()
	type result struct {
		Metric     map[string]string `json:"metric"`
		Values     [][2]any          `json:"values"`
		Histograms [][2]any          `json:"histograms"`
		Value      *[2]any           `json:"value"`     // of a vector
		Histogram  *[2]any           `json:"histogram"` // of a vector
	}
	type answer struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string   `json:"resultType"`
			Result     []result `json:"result"`
		} `json:"data"`
	}
	var w, g answer
	require.NoError(t, json.Unmarshal([]byte(want), &w))
	require.NoError(t, json.Unmarshal([]byte(got), &g), got)
	require.Equal(t, w.Data.ResultType, g.Data.ResultType, msg)
	require.Len(t, g.Data.Result, len(w.Data.Result), "%s: %s\nwant %s", msg, got, want)
	for _, a := range []*answer{&w, &g} {
		if a.Data.ResultType == "vector" { // in no order but sort()'s
			slices.SortFunc(a.Data.Result, func(x, y result) int { return strings.Compare(fmt.Sprint(x.Metric), fmt.Sprint(y.Metric)) })
		}
		for i := range a.Data.Result {
			r := &a.Data.Result[i]
			if r.Value != nil {
				r.Values = [][2]any{*r.Value}
			}
			if r.Histogram != nil {
				r.Histograms = [][2]any{*r.Histogram}
			}
		}
	}
	for i, ws := range w.Data.Result {
		gs := g.Data.Result[i]
		require.Equal(t, ws.Metric, gs.Metric, msg)
		require.Len(t, gs.Values, len(ws.Values), "%s: %v", msg, ws.Metric)
		for j := range ws.Values {
			require.Equal(t, ws.Values[j][0], gs.Values[j][0], msg)
			requireClose(t, ws.Values[j][1].(string), gs.Values[j][1].(string), msg)
		}
		require.Len(t, gs.Histograms, len(ws.Histograms), "%s: %v", msg, ws.Metric)
		for j := range ws.Histograms {
			require.Equal(t, ws.Histograms[j][0], gs.Histograms[j][0], msg)
			wh, gh := ws.Histograms[j][1].(map[string]any), gs.Histograms[j][1].(map[string]any)
			requireClose(t, wh["count"].(string), gh["count"].(string), msg)
			requireClose(t, wh["sum"].(string), gh["sum"].(string), msg)
			wb, _ := wh["buckets"].([]any)
			gb, _ := gh["buckets"].([]any)
			require.Len(t, gb, len(wb), msg)
			for k := range wb {
				w, g := wb[k].([]any), gb[k].([]any)
				require.Equal(t, w[:3], g[:3], "%s: bucket bounds", msg)
				requireClose(t, w[3].(string), g[3].(string), msg)
			}
		}
	}
}

func requireClose(t *testing.T, want, got, msg string) {
	t.Helper()
	w, err := strconv.ParseFloat(want, 64)
	require.NoError(t, err)
	g, err := strconv.ParseFloat(got, 64)
	require.NoError(t, err)
	if math.IsNaN(w) || math.IsInf(w, 0) {
		require.Equal(t, want, got, msg)
		return
	}
	require.InDelta(t, w, g, 1e-9*math.Max(1, math.Abs(w)), "%s: want %s, got %s", msg, want, got)
}

// A ruler asks for exact series (promapi.SeriesProtobuf): the frontend
// answers in them whether it shards the query, passes it on, or the query
// is a scalar, with what the querier answers.
func TestFrontendAnswersRulersInSeries(t *testing.T) {
	cfg := testConfig()
	cfg.MaxShardedQueries = 1000
	querier, frontend, calls, f := querierAndFrontend(t, fleetData, cfg)
	f.limits = fixedLimits(limits.Limits{QueryShardingTotalShards: 4})
	ask := func(h http.Handler, q string) (promql.Matrix, http.Header) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/query", strings.NewReader(url.Values{"query": {q}, "time": {"7200"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", promapi.SeriesProtobuf)
		req.Header.Set(tenant.HeaderName, "team-a")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, promapi.SeriesProtobuf, rec.Header().Get("Content-Type"))
		m, err := promapi.UnmarshalSeries(rec.Body.Bytes())
		require.NoError(t, err)
		slices.SortFunc(m, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) }) // an instant vector has no order
		return m, rec.Header()
	}
	for _, c := range []struct {
		query   string
		sharded bool
	}{
		{`sum by (instance) (rate(node_cpu_seconds_total[5m]))`, true},
		{`sum(rate(lb_latency[5m]))`, true}, // a native histogram
		{`gpu_temp_celsius > 0`, false},
		{`rate(lb_latency[5m])`, false},
		{`scalar(sum(gpu_temp_celsius))`, true}, // a scalar
		{`2 * 3`, false},
		{`sum(nothing)`, true},
	} {
		t.Run(c.query, func(t *testing.T) {
			want, _ := ask(querier, c.query)
			before := calls.n.Load()
			got, _ := ask(frontend, c.query)
			if c.sharded {
				require.Equal(t, int64(4), calls.n.Load()-before, "sharded in 4")
			} else {
				require.Equal(t, int64(1), calls.n.Load()-before, "passed on")
			}
			require.Len(t, got, len(want))
			for i := range want {
				require.Equal(t, want[i].Metric, got[i].Metric)
				require.Len(t, got[i].Floats, len(want[i].Floats))
				for j, p := range want[i].Floats {
					require.Equal(t, p.T, got[i].Floats[j].T)
					require.InEpsilon(t, p.F, got[i].Floats[j].F, 1e-12)
				}
				require.Len(t, got[i].Histograms, len(want[i].Histograms))
				for j, p := range want[i].Histograms {
					require.Equal(t, p.T, got[i].Histograms[j].T)
					require.Equal(t, p.H.Schema, got[i].Histograms[j].H.Schema)
					require.InEpsilon(t, p.H.Count, got[i].Histograms[j].H.Count, 1e-12)
					require.InEpsilon(t, p.H.Sum, got[i].Histograms[j].H.Sum, 1e-12)
				}
			}
		})
	}
}

// A query is cut into as many shards as what its last run read makes
// worth their cost, or none, and follows when what it reads grows; the
// answers stay the querier's.
func TestShardsFollowWhatTheQueryRead(t *testing.T) {
	cfg := testConfig()
	cfg.CacheResults = false
	cfg.TargetSamplesPerShard = 50
	cfg.MaxShardedQueries = 1000
	querier, frontend, calls, f := querierAndFrontend(t, fleetData, cfg)
	f.limits = fixedLimits(limits.Limits{QueryShardingTotalShards: 16})
	ask := func(path string, params url.Values) int64 {
		t.Helper()
		_, want := get(t, querier, path, params)
		before := calls.n.Load()
		req := httptest.NewRequest(http.MethodGet, path+"?"+params.Encode(), nil)
		req.Header.Set(tenant.HeaderName, "team-a")
		rec := httptest.NewRecorder()
		frontend.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Empty(t, rec.Header().Get(promapi.SamplesHeader), "kept between querier and frontend")
		requireSameMatrix(t, want, rec.Body.String(), params.Encode())
		return calls.n.Load() - before
	}
	instant := func(q, at string) url.Values { return url.Values{"query": {q}, "time": {at}} }

	// 4 series, a sample each: not worth a shard once known.
	small := instant(`sum(node_cpu_seconds_total)`, "3600")
	require.Equal(t, int64(16), ask("/api/v1/query", small), "not seen yet: every shard")
	require.Equal(t, int64(1), ask("/api/v1/query", small), "4 samples: whole")
	require.Equal(t, int64(1), ask("/api/v1/query", small))

	// Two hours of 4 series read 480 samples: 9 shards of about 50.
	const grows = `sum(rate(node_cpu_seconds_total[2h]))`
	require.Equal(t, int64(16), ask("/api/v1/query", instant(grows, "60")))
	require.Equal(t, int64(1), ask("/api/v1/query", instant(grows, "28800")), "8 samples last time")
	require.Equal(t, int64(9), ask("/api/v1/query", instant(grows, "28800")), "480 samples last time")

	// A range query is judged by what it read per evaluation time: 121
	// of them in 3 pieces (two hours and the end), 4 samples each, make 3
	// shards of 164 samples a piece.
	rng := url.Values{"query": {`count(node_cpu_seconds_total)`}, "start": {"3600"}, "end": {"10800"}, "step": {"60"}}
	require.Equal(t, int64(3*16), ask("/api/v1/query_range", rng), "not seen yet: every shard")
	require.Equal(t, int64(3*3), ask("/api/v1/query_range", rng))
	// What an instant query read counts for the same query over a range.
	require.Equal(t, int64(3*3), ask("/api/v1/query_range", url.Values{"query": {`sum(node_cpu_seconds_total)`}, "start": {"3600"}, "end": {"10800"}, "step": {"60"}}))
	require.Positive(t, testutil.ToFloat64(f.fewerShards))
}
