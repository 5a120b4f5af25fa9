//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// fleetSeries is the size of the fleet-scale test: large enough that every
// answer below (label values, series, exemplars) is well over gRPC's
// default 4 MB message and over a 100 MB message had it been one.
const (
	fleetSeries      = 100_000
	fleetHypervisors = 1000
	fleetPortLen     = 1024 // bytes of each series' port label value
)

// fleetPort is the 1 KB port label of series i, unique per series.
func fleetPort(i int) string {
	p := fmt.Sprintf("tap%07d-", i)
	return p + strings.Repeat("0123456789abcdef", fleetPortLen/16)[:fleetPortLen-len(p)]
}

// pushFleet writes fleetSeries vNIC counters, two samples each (a rate per
// series of i/15 per second) and an exemplar each, with their metadata, in
// requests of 2000 series.
func pushFleet(t *testing.T, url string, base int64) {
	t.Helper()
	const batch = 2000
	for from := 0; from < fleetSeries; from += batch {
		req := &prompb.WriteRequest{}
		for i := from; i < from+batch; i++ {
			s := series([]string{
				"__name__", "openstack_vnic_rx_bytes_total",
				"hypervisor", fmt.Sprintf("cmp-%04d", i%fleetHypervisors),
				"port", fleetPort(i),
				"project", fmt.Sprintf("project-%02d", i%37),
			}, sample(base, float64(i)), sample(base+15_000, float64(2*i)))
			s.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%016x", i)}}, Value: float64(2 * i), Timestamp: base + 15_000}}
			req.Timeseries = append(req.Timeseries, s)
		}
		if from == 0 {
			req.Metadata = []prompb.MetricMetadata{{MetricFamilyName: "openstack_vnic_rx_bytes_total", Type: prompb.MetricMetadata_COUNTER, Help: "Bytes received by a VM's vNIC.", Unit: "bytes"}}
		}
		mustPush(t, url, "", req)
	}
}

// TestClusterAnswersAtFleetScale holds 100k series with 1 KB label values
// in a 3-ingester cluster (RF=3) and in a single binary, and asks both
// every API a dashboard calls: each answer succeeds and the two are
// identical.
func TestClusterAnswersAtFleetScale(t *testing.T) {
	c := startCluster(t)
	single := startIsobar(t, t.TempDir())
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Second).UnixMilli()
	at := base + 15_000
	for _, target := range []string{c.distributor.URL, single.URL} {
		start := time.Now()
		pushFleet(t, target, base)
		t.Logf("pushed %d series to %s in %s", fleetSeries, target, time.Since(start).Round(time.Millisecond))
	}
	cq, sq := apiClient{base: c.querier.URL}, apiClient{base: single.URL}

	timed := func(what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
	}

	for _, q := range []string{
		`count({__name__=~".+"})`,
		`count by (hypervisor) (openstack_vnic_rx_bytes_total)`,
		`sum by (project) (rate(openstack_vnic_rx_bytes_total[1m]))`,
		`topk(10, rate(openstack_vnic_rx_bytes_total[1m]))`,
		`count(count by (port) (openstack_vnic_rx_bytes_total))`,
	} {
		timed("query "+q, func() {
			want := sq.query(t, q, at)
			require.NotEmpty(t, want.Series, q)
			require.Empty(t, diffResults(want, cq.query(t, q, at), 1e-9), "%s: cluster (got) differs from the single binary (want)", q)
		})
	}
	require.InDelta(t, float64(fleetSeries), sq.query(t, `count({__name__=~".+"})`, at).Series[0].Points[0].F, 0)

	timed("range query", func() {
		q := `sum(rate(openstack_vnic_rx_bytes_total[1m]))`
		want := sq.queryRange(t, q, base, at, 5*time.Second)
		require.Empty(t, diffResults(want, cq.queryRange(t, q, base, at, 5*time.Second), 1e-9), q)
	})

	timed("label names", func() {
		require.Equal(t, []string{"__name__", "hypervisor", "port", "project"}, cq.labelNames(t))
		require.Equal(t, sq.labelNames(t), cq.labelNames(t))
	})

	timed("label values of port (100 MB)", func() {
		got := cq.labelValues(t, "port")
		require.Len(t, got, fleetSeries)
		require.Equal(t, sq.labelValues(t, "port"), got)
	})

	window := url.Values{"start": {fmtTime(base)}, "end": {fmtTime(at)}}
	timed("series of every vNIC (110 MB)", func() {
		got := cq.seriesSetWith(t, window, "openstack_vnic_rx_bytes_total")
		require.Len(t, got, fleetSeries)
		require.Equal(t, sq.seriesSetWith(t, window, "openstack_vnic_rx_bytes_total"), got)
	})

	timed("exemplars of every vNIC", func() {
		params := url.Values{"query": {"openstack_vnic_rx_bytes_total"}, "start": {fmtTime(base)}, "end": {fmtTime(at)}}
		type exemplarSeries struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels map[string]string `json:"labels"`
				Value  string            `json:"value"`
			} `json:"exemplars"`
		}
		var got, want []exemplarSeries
		cq.mustGet(t, "/api/v1/query_exemplars", params, &got)
		sq.mustGet(t, "/api/v1/query_exemplars", params, &want)
		require.Len(t, got, fleetSeries)
		key := func(s []exemplarSeries) []string {
			out := make([]string, 0, len(s))
			for _, e := range s {
				require.Len(t, e.Exemplars, 1)
				out = append(out, labelString(e.SeriesLabels)+" "+e.Exemplars[0].Labels["trace_id"]+" "+e.Exemplars[0].Value)
			}
			sort.Strings(out)
			return out
		}
		require.Equal(t, key(want), key(got))
	})

	timed("cardinality", func() {
		type stat struct {
			Name  string `json:"name"`
			Value uint64 `json:"value"`
		}
		type status struct {
			HeadStats struct {
				NumSeries     uint64 `json:"numSeries"`
				NumLabelPairs uint64 `json:"numLabelPairs"`
				ChunkCount    uint64 `json:"chunkCount"`
				MinTime       int64  `json:"minTime"`
				MaxTime       int64  `json:"maxTime"`
			} `json:"headStats"`
			SeriesCountByMetricName     []stat `json:"seriesCountByMetricName"`
			LabelValueCountByLabelName  []stat `json:"labelValueCountByLabelName"`
			MemoryInBytesByLabelName    []stat `json:"memoryInBytesByLabelName"`
			SeriesCountByLabelValuePair []stat `json:"seriesCountByLabelValuePair"`
		}
		var got, want status
		cq.mustGet(t, "/api/v1/status/tsdb", nil, &got)
		sq.mustGet(t, "/api/v1/status/tsdb", nil, &want)
		require.Equal(t, uint64(fleetSeries), got.HeadStats.NumSeries)
		require.Equal(t, uint64(fleetSeries), got.HeadStats.ChunkCount, "one head chunk a series")
		require.Equal(t, want, got, "cluster (got) and single binary (want)")
		require.Equal(t, []stat{{"port", fleetSeries}, {"hypervisor", fleetHypervisors}, {"project", 37}, {"__name__", 1}}, got.LabelValueCountByLabelName)

		// Mimir's cardinality API: values of a label by series.
		type values struct {
			SeriesCountTotal uint64 `json:"series_count_total"`
			Labels           []struct {
				LabelName        string `json:"label_name"`
				LabelValuesCount int    `json:"label_values_count"`
				SeriesCount      uint64 `json:"series_count"`
				Cardinality      []struct {
					LabelValue  string `json:"label_value"`
					SeriesCount uint64 `json:"series_count"`
				} `json:"cardinality"`
			} `json:"labels"`
		}
		params := url.Values{"label_names[]": {"project"}, "selector": {`{hypervisor=~"cmp-00.."}`}, "limit": {"3"}}
		var cv, sv values
		for _, c := range []struct {
			api  apiClient
			into *values
		}{{cq, &cv}, {sq, &sv}} {
			code, body, err := c.api.getRaw("/api/v1/cardinality/label_values", params)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code, body)
			require.NoError(t, json.Unmarshal([]byte(body), c.into))
		}
		require.Equal(t, sv, cv)
		require.Equal(t, uint64(100*fleetSeries/fleetHypervisors), cv.SeriesCountTotal, "hypervisors cmp-0000 to cmp-0099")
		require.Len(t, cv.Labels, 1)
		require.Equal(t, 37, cv.Labels[0].LabelValuesCount)
		require.Len(t, cv.Labels[0].Cardinality, 3)

		// The active series of a selector.
		var ca, sa []map[string]string
		params = url.Values{"selector": {`openstack_vnic_rx_bytes_total{hypervisor="cmp-0001"}`}}
		cq.mustGet(t, "/api/v1/cardinality/active_series", params, &ca)
		sq.mustGet(t, "/api/v1/cardinality/active_series", params, &sa)
		require.Len(t, ca, fleetSeries/fleetHypervisors)
		require.Equal(t, sa, ca)
	})

	timed("metadata", func() {
		want := map[string][]metadataEntry{"openstack_vnic_rx_bytes_total": {{Type: "counter", Help: "Bytes received by a VM's vNIC.", Unit: "bytes"}}}
		require.Equal(t, want, cq.metadata(t, ""))
		require.Equal(t, want, sq.metadata(t, ""))
	})
}

// TestClusterQueryLimitsPerTenant caps one tenant's queries in the
// configuration file: its queries over a limit fail with 422 and a message
// naming the limit's flag, while another tenant's identical queries work.
func TestClusterQueryLimitsPerTenant(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "isobar.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
tenant_limits:
  capped:
    max_fetched_series_per_query: 10
    max_fetched_chunks_per_query: 100
    max_query_length: 1h
`), 0o644))
	c := startCluster(t, "-config.file="+cfg, "-auth.multitenancy-enabled=true")
	base := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	for _, tenant := range []string{"capped", "free"} {
		req := &prompb.WriteRequest{}
		for i := range 20 {
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_limits", "vm", fmt.Sprintf("vm-%02d", i)}, sample(base, float64(i))))
		}
		mustPush(t, c.distributor.URL, tenant, req)
	}
	capped, free := apiClient{base: c.querier.URL, tenant: "capped"}, apiClient{base: c.querier.URL, tenant: "free"}

	for _, tc := range []struct {
		name, flag string
		run        func(apiClient) (int, string, error)
	}{
		{"series", "-querier.max-fetched-series-per-query", func(a apiClient) (int, string, error) {
			return a.getRaw("/api/v1/query", url.Values{"query": {"count(e2e_limits)"}, "time": {fmtTime(base)}})
		}},
		{"length", "-querier.max-query-length", func(a apiClient) (int, string, error) {
			return a.getRaw("/api/v1/query_range", url.Values{"query": {`count(e2e_limits{vm="vm-01"})`}, "start": {fmtTime(base - 2*3600_000)}, "end": {fmtTime(base)}, "step": {"60"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := tc.run(capped)
			require.NoError(t, err)
			require.Equal(t, http.StatusUnprocessableEntity, code, body)
			require.Contains(t, body, tc.flag)
			code, body, err = tc.run(free)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code, body)
		})
	}
	// Under the limits, the capped tenant is answered.
	require.InDelta(t, 1.0, capped.query(t, `count(e2e_limits{vm="vm-01"})`, base).Series[0].Points[0].F, 0)
	require.InDelta(t, 20.0, free.query(t, `count(e2e_limits)`, base).Series[0].Points[0].F, 0)
}

// TestClusterQueryFrontend puts a query-frontend (splitting by hour,
// sharding, caching results) in front of a cluster's querier: every
// dashboard query answers what the querier answers, cold and from a warm
// cache, a warm cache asks the querier only for the fresh end, and samples
// written after an answer was cached appear in the next answer.
func TestClusterQueryFrontend(t *testing.T) {
	c := startCluster(t)
	fe := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "query-frontend", "query-frontend", freeAddr(t),
		"-query-frontend.downstream-url="+c.querier.URL, "-query-frontend.split-queries-by-interval=1h")...)

	now := time.Now().Truncate(time.Minute).UnixMilli()
	from := now - 3*3600_000
	const step = 30_000
	for ts := from; ts < now; ts += 20 * step {
		req := &prompb.WriteRequest{}
		for i := range 200 {
			var samples []prompb.Sample
			for k := range int64(20) {
				if t := ts + k*step; t < now {
					samples = append(samples, sample(t, float64((t-from)/step*int64(i%7+1))))
				}
			}
			req.Timeseries = append(req.Timeseries,
				series([]string{"__name__", "e2e_fe_cpu_seconds_total", "az", fmt.Sprintf("az-%d", i%3), "hypervisor", fmt.Sprintf("cmp-%03d", i)}, samples...),
				series([]string{"__name__", "e2e_fe_latency_seconds_bucket", "hypervisor", fmt.Sprintf("cmp-%03d", i/3), "le", []string{"0.1", "1", "+Inf"}[i%3]}, samples...))
		}
		mustPush(t, c.distributor.URL, "", req)
	}
	querier, frontend := apiClient{base: c.querier.URL}, apiClient{base: fe.URL}
	queries := []string{
		`sum by (az) (rate(e2e_fe_cpu_seconds_total[5m]))`,
		`topk(5, rate(e2e_fe_cpu_seconds_total[5m]))`,
		`histogram_quantile(0.9, sum by (le) (rate(e2e_fe_latency_seconds_bucket[5m])))`,
		`count_values("rate", round(rate(e2e_fe_cpu_seconds_total[5m]) * 100))`,
		`max_over_time(sum(rate(e2e_fe_cpu_seconds_total[5m]))[30m:1m])`,
	}
	params := func(q string, end int64) url.Values {
		return url.Values{"query": {q}, "start": {fmtTime(from)}, "end": {fmtTime(end)}, "step": {"60"}}
	}
	end := now - time.Minute.Milliseconds()
	for _, q := range queries {
		code, want, err := querier.getRaw("/api/v1/query_range", params(q, end))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, want)
		for _, pass := range []string{"cold", "warm"} {
			code, got, err := frontend.getRaw("/api/v1/query_range", params(q, end))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code, got)
			sameAnswer(t, want, got, "%s through the frontend (%s cache)", q, pass)
		}
	}
	// Split by hour: the cold passes asked the querier for several pieces
	// per query; the warm ones only for the last 10 minutes.
	metrics := func() string {
		_, body, err := httpGet(fe.URL+"/metrics", nil)
		require.NoError(t, err)
		return body
	}
	require.Contains(t, metrics(), `isobar_query_frontend_results_cache_bytes_total{result="hit"}`)
	require.Regexp(t, `isobar_query_frontend_sharded_queries_total\{endpoint="query_range"\} [1-9]`, metrics())

	// A sample written after the answers were cached, inside the fresh
	// window, is in the next answer.
	mustPush(t, c.distributor.URL, "", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series([]string{"__name__", "e2e_fe_cpu_seconds_total", "az", "az-9", "hypervisor", "cmp-new"}, sample(now-2*step, 1), sample(now, 2)),
	}})
	q := `count by (az) (e2e_fe_cpu_seconds_total)`
	_, want, err := querier.getRaw("/api/v1/query_range", params(q, now))
	require.NoError(t, err)
	require.Contains(t, want, `"az":"az-9"`)
	_, got, err := frontend.getRaw("/api/v1/query_range", params(q, now))
	require.NoError(t, err)
	sameAnswer(t, want, got, "%s after a new sample", q)

	// Instant queries are sharded too; other endpoints pass through.
	require.Equal(t, querier.labelValues(t, "az"), frontend.labelValues(t, "az"))
	for _, q := range []string{`count(e2e_fe_cpu_seconds_total)`, `topk(3, rate(e2e_fe_cpu_seconds_total[5m]))`, `avg by (az) (rate(e2e_fe_cpu_seconds_total[5m]))`} {
		require.Empty(t, diffResults(querier.query(t, q, now), frontend.query(t, q, now), 1e-9), q)
	}
	require.Regexp(t, `isobar_query_frontend_sharded_queries_total\{endpoint="query"\} 3`, metrics())
}

// sameAnswer requires two query answers to hold the same data (to 1e-9:
// shards add up in another order), and both or neither to carry warnings
// and infos. Annotations name
// the time range they were found in, which for a split query is a piece's.
func sameAnswer(t *testing.T, want, got string, msgAndArgs ...any) {
	t.Helper()
	var w, g apiEnvelope
	require.NoError(t, json.Unmarshal([]byte(want), &w))
	require.NoError(t, json.Unmarshal([]byte(got), &g))
	require.Equal(t, w.Status, g.Status, msgAndArgs...)
	wr, err := parseResult(w.Data)
	require.NoError(t, err)
	gr, err := parseResult(g.Data)
	require.NoError(t, err)
	require.Empty(t, diffResults(wr, gr, 1e-9), msgAndArgs...)
	require.Equal(t, len(w.Warnings) > 0, len(g.Warnings) > 0, msgAndArgs...)
	var wi, gi struct {
		Infos []string `json:"infos"`
	}
	require.NoError(t, json.Unmarshal([]byte(want), &wi))
	require.NoError(t, json.Unmarshal([]byte(got), &gi))
	require.Equal(t, len(wi.Infos) > 0, len(gi.Infos) > 0, msgAndArgs...)
}

// TestQueryFrontendIsFairToTenants floods a query-frontend that has one
// querier connection with one tenant's slow queries: another tenant's
// query waits for the one slow query running, not for the flood. The
// bound: at most twice one slow query's time alone, plus a second. A
// first-come queue would make it wait for the whole flood (12 queries).
func TestQueryFrontendIsFairToTenants(t *testing.T) {
	c := startCluster(t, "-auth.multitenancy-enabled=true")
	fe := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "query-frontend", "query-frontend", freeAddr(t),
		"-auth.multitenancy-enabled=true", "-query-frontend.downstream-url="+c.querier.URL,
		"-query-frontend.querier-parallelism=1", "-query-frontend.cache-results=false",
		"-query-frontend.split-queries-by-interval=0", "-query-frontend.query-sharding-total-shards=0")...)

	// Six hours of 2000 series for the busy tenant, one series for the
	// quiet one.
	now := time.Now().Truncate(time.Minute).UnixMilli()
	from := now - 6*3600_000
	const step = 15_000
	for ts := from; ts < now; ts += 120 * step {
		req := &prompb.WriteRequest{}
		for i := range 2000 {
			var samples []prompb.Sample
			for k := range int64(120) {
				if t := ts + k*step; t < now {
					samples = append(samples, sample(t, float64(t-from)/1000*float64(i%5+1)))
				}
			}
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_fair_cpu_seconds_total", "hypervisor", fmt.Sprintf("cmp-%04d", i)}, samples...))
		}
		mustPush(t, c.distributor.URL, "busy", req)
	}
	mustPush(t, c.distributor.URL, "quiet", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series([]string{"__name__", "e2e_fair_up"}, sample(now-step, 1)),
	}})

	busy, quiet := apiClient{base: fe.URL, tenant: "busy"}, apiClient{base: fe.URL, tenant: "quiet"}
	slow := url.Values{"query": {`sum(rate(e2e_fair_cpu_seconds_total[5m]))`},
		"start": {fmtTime(from)}, "end": {fmtTime(now)}, "step": {"15"}}
	runSlow := func() time.Duration {
		start := time.Now()
		code, body, err := busy.getRaw("/api/v1/query_range", slow)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "%.300s", body)
		return time.Since(start)
	}
	alone := max(runSlow(), runSlow())
	t.Logf("one slow query alone: %s", alone)

	const flood = 12
	var wg sync.WaitGroup
	floodStart := time.Now()
	for range flood {
		wg.Go(func() { runSlow() })
	}
	// Every slow query is in: one runs, the others wait.
	waitFor(t, 30*time.Second, "the flood queued", func() error {
		_, body, err := httpGet(fe.URL+"/metrics", nil)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf(`isobar_query_frontend_queue_length{tenant="busy"} %d`, flood-1); !strings.Contains(body, want) {
			return fmt.Errorf("no %s yet", want)
		}
		return nil
	})
	start := time.Now()
	got := quiet.query(t, `e2e_fair_up`, now)
	waited := time.Since(start)
	wg.Wait()
	floodTook := time.Since(floodStart)
	t.Logf("quiet tenant's query behind the flood: %s; the flood took %s", waited, floodTook)
	require.Len(t, got.Series, 1)
	require.Less(t, waited, 2*alone+time.Second, "the quiet tenant waits for the query running, not the flood")
	require.Greater(t, floodTook, flood*alone/2, "the flood was queued behind one querier connection")
}
