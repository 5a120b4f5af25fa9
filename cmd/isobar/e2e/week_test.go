//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// A week of a private cloud: hypervisor CPU counters and request latency
// buckets scraped every 15 minutes for 7 days, and 200k vNIC counters,
// seen a day ago and now.
const (
	weekStep        = int64(15 * time.Minute / time.Millisecond)
	weekHypervisors = 1000
	weekLatency     = 300 // bucket series: 100 hypervisors × 3 buckets
	weekVNICs       = 200_000
)

// weekRequest builds the CPU and latency samples of [from, to) in one
// request, k counting steps from the week's start.
func weekRequest(weekStart, from, to int64) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	samples := func(rate float64) []prompb.Sample {
		var out []prompb.Sample
		for ts := from; ts < to; ts += weekStep {
			k := float64((ts - weekStart) / weekStep)
			// A counter whose rate changes with the hour of the day.
			out = append(out, sample(ts, rate*(k*900+float64(ts/3600_000%24)*37)))
		}
		return out
	}
	for i := range weekHypervisors {
		req.Timeseries = append(req.Timeseries, series([]string{
			"__name__", "e2e_week_cpu_seconds_total", "az", fmt.Sprintf("az-%d", i%3), "hypervisor", fmt.Sprintf("cmp-%04d", i),
		}, samples(float64(i%7+1)/10)...))
	}
	for i := range weekLatency {
		req.Timeseries = append(req.Timeseries, series([]string{
			"__name__", "e2e_week_request_seconds_bucket", "hypervisor", fmt.Sprintf("cmp-%04d", i/3), "le", []string{"0.1", "1", "+Inf"}[i%3],
		}, samples(float64(i%3+1)*float64(i/3%5+1))...))
	}
	return req
}

// pushVNICs writes two samples, a minute apart from at, of each vNIC
// counter, in requests of 5000 series.
func pushVNICs(t *testing.T, url string, at int64) {
	t.Helper()
	const batch = 5000
	for from := 0; from < weekVNICs; from += batch {
		req := &prompb.WriteRequest{}
		for i := from; i < from+batch; i++ {
			req.Timeseries = append(req.Timeseries, series([]string{
				"__name__", "e2e_week_vnic_rx_bytes_total", "hypervisor", fmt.Sprintf("cmp-%04d", i%weekHypervisors),
				"port", fmt.Sprintf("tap%07d-5e2c-4a0b-9d61", i), "project", fmt.Sprintf("project-%02d", i%37),
			}, sample(at, float64(i)), sample(at+60_000, float64(2*i))))
		}
		mustPush(t, url, "", req)
	}
}

// TestClusterAnswersAWeekAcrossBlocksAndHeads holds a week of a private
// cloud in a cluster on a real S3 server (3 ingesters at RF=3, a
// store-gateway, a compactor, 2 queriers and a query-frontend in front of
// both) and in a single binary. The days before the last three hours are
// blocks in the bucket, the rest is in the ingesters' heads. Dashboard
// queries over the whole week, over the last day and instant ones answer
// what the single binary answers (to 1e-9), from each querier and from the
// frontend, which splits by day and shards, with a cold and a warm cache.
func TestClusterAnswersAWeekAcrossBlocksAndHeads(t *testing.T) {
	s3 := startS3(t)
	common := s3.flags()
	c := startCluster(t, common...)
	sg := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "store-gateway-0", "store-gateway", freeAddr(t), common...)...)
	compactor := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "compactor-0", "compactor", freeAddr(t), append(common, "-compactor.consistency-delay=0s")...)...)
	querier2 := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "querier-1", "querier", freeAddr(t), common...)...)
	waitActive(t, querier2, 3)
	fe := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "query-frontend", "query-frontend", freeAddr(t),
		"-query-frontend.downstream-url="+c.querier.URL+","+querier2.URL)...)
	// The reference: one process, its own filesystem bucket, its queries
	// neither split, sharded nor cached.
	single := startIsobar(t, t.TempDir(), "-query-frontend.split-queries-by-interval=0",
		"-query-frontend.query-sharding-total-shards=0", "-query-frontend.cache-results=false")

	now := time.Now().Truncate(time.Minute).UnixMilli()
	weekStart := (now - 7*24*3600_000) / weekStep * weekStep
	headsFrom := (now - 3*3600_000) / weekStep * weekStep
	// The vNICs' first samples are older than -querier.query-store-after
	// (12h): the querier asks the store-gateway for them.
	vnicsFrom := headsFrom - 11*3600_000

	// The history, in time order, two hours a request; the vNICs when the
	// history reaches their first samples (a head takes samples up to an
	// hour older than its newest).
	start := time.Now()
	write := func(from, to int64) {
		for ts := from; ts < to; {
			next := min(ts+8*weekStep, to)
			for _, target := range []string{c.distributor.URL, single.URL} {
				if ts == vnicsFrom {
					pushVNICs(t, target, vnicsFrom)
				}
				mustPush(t, target, "", weekRequest(weekStart, ts, next))
			}
			ts = next
		}
	}
	// Everything before the last three hours becomes blocks: the ingesters
	// ship theirs, the compactor merges the replicas and writes the bucket
	// index. The days before the vNICs are flushed first: a flush cuts
	// one block a range, each of which reads every series of the head.
	flush := func() {
		var wg sync.WaitGroup
		for _, p := range append(c.ingesters, single) {
			wg.Go(func() { postAction(t, p.URL+"/ingester/flush") })
		}
		wg.Wait()
	}
	write(weekStart, vnicsFrom)
	flush()
	write(vnicsFrom, headsFrom)
	flush()
	t.Logf("history written and flushed in %s", time.Since(start).Round(time.Millisecond))
	var wg sync.WaitGroup
	for _, p := range []*isobar{compactor, single} {
		wg.Go(func() { postAction(t, p.URL+"/compactor/run") })
	}
	wg.Wait()
	t.Logf("history compacted at %s", time.Since(start).Round(time.Millisecond))
	// The last three hours stay in the heads.
	write(headsFrom, now)
	for _, target := range []string{c.distributor.URL, single.URL} {
		pushVNICs(t, target, now-2*60_000)
	}
	t.Logf("a week of %d series and %d vNICs written twice in %s", weekHypervisors+weekLatency, weekVNICs, time.Since(start).Round(time.Millisecond))

	ref := apiClient{base: single.URL}
	answerers := []struct {
		name string
		api  apiClient
	}{
		{"querier 1", apiClient{base: c.querier.URL}},
		{"querier 2", apiClient{base: querier2.URL}},
		{"frontend (cold)", apiClient{base: fe.URL}},
		{"frontend (warm)", apiClient{base: fe.URL}},
	}
	reference := func(what string, f func() result) result {
		started := time.Now()
		r := f()
		t.Logf("single binary: %s in %s", what, time.Since(started).Round(time.Millisecond))
		return r
	}
	end := now - time.Minute.Milliseconds()
	ranges := []struct {
		query      string
		start, end int64
		step       time.Duration
	}{
		{`sum by (az) (rate(e2e_week_cpu_seconds_total[1h]))`, weekStart, end, time.Hour},
		{`topk(5, rate(e2e_week_cpu_seconds_total[1h]))`, weekStart, end, time.Hour},
		{`histogram_quantile(0.9, sum by (le) (rate(e2e_week_request_seconds_bucket[1h])))`, weekStart, end, time.Hour},
		{`count_values("cpus", round(rate(e2e_week_cpu_seconds_total[1h]) * 10))`, weekStart, end, 3 * time.Hour},
		{`max_over_time(sum(rate(e2e_week_cpu_seconds_total[1h]))[6h:30m])`, weekStart, end, time.Hour},
		{`avg by (az) (increase(e2e_week_cpu_seconds_total[6h]))`, end - 24*3600_000, end, 15 * time.Minute},
		{`sum by (project) (rate(e2e_week_vnic_rx_bytes_total[10m]))`, vnicsFrom - 3600_000, end, 5 * time.Minute},
	}
	for _, r := range ranges {
		want := reference(r.query, func() result { return ref.queryRange(t, r.query, r.start, r.end, r.step) })
		require.NotEmpty(t, want.Series, r.query)
		for _, a := range answerers {
			started := time.Now()
			got := a.api.queryRange(t, r.query, r.start, r.end, r.step)
			require.Empty(t, diffResults(want, got, 1e-9), "%s from %s (got) and the single binary (want)", r.query, a.name)
			t.Logf("%s: %s in %s", a.name, r.query, time.Since(started).Round(time.Millisecond))
		}
	}
	// The week is whole: every CPU counter has a rate at every hour.
	cpu := ref.queryRange(t, `count(rate(e2e_week_cpu_seconds_total[1h]))`, weekStart+3600_000, end, time.Hour)
	require.Len(t, cpu.Series, 1)
	require.Len(t, cpu.Series[0].Points, int((end-weekStart-3600_000)/3600_000)+1)
	for _, p := range cpu.Series[0].Points {
		require.InDelta(t, float64(weekHypervisors), p.F, 0, "hypervisors with a rate at %s", fmtTime(p.T))
	}

	for _, q := range []string{
		`count(last_over_time({__name__=~".+"}[15m]))`,
		`count by (hypervisor) (e2e_week_vnic_rx_bytes_total{hypervisor=~"cmp-00.."})`,
		`topk(10, rate(e2e_week_vnic_rx_bytes_total[5m]))`,
		`sum by (project) (increase(e2e_week_vnic_rx_bytes_total[1d]))`,
	} {
		want := ref.query(t, q, end)
		require.NotEmpty(t, want.Series, q)
		for _, a := range answerers {
			require.Empty(t, diffResults(want, a.api.query(t, q, end), 1e-9), "%s from %s (got) and the single binary (want)", q, a.name)
		}
	}
	require.InDelta(t, float64(weekHypervisors+weekLatency+weekVNICs), ref.query(t, `count(last_over_time({__name__=~".+"}[15m]))`, end).Series[0].Points[0].F, 0)

	// The answers came from both places and through every layer: the
	// store-gateway sent series, the frontend split, sharded and hit its
	// cache, and both queriers answered it.
	require.Greater(t, metricSum(t, sg, `isobar_store_gateway_bucket_range_read_bytes_total`), 0.0, "chunk bytes the store-gateway read")
	require.Greater(t, metricSum(t, fe, `isobar_query_frontend_sharded_queries_total\{.*`), 0.0)
	require.Greater(t, metricSum(t, fe, `isobar_query_frontend_results_cache_bytes_total\{result="hit"\}`), 0.0)
	for _, q := range []*isobar{c.querier, querier2} {
		require.Greater(t, metricSum(t, q, `isobar_request_duration_seconds_count\{.*query_range.*status_code="200"\}`), 0.0, "range queries %s answered", q.URL)
	}
}

// metricSum adds up the samples on p's /metrics whose name and labels
// match series, a regular expression.
func metricSum(t *testing.T, p *isobar, series string) float64 {
	t.Helper()
	code, page, err := httpGet(p.URL+"/metrics", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	line := regexp.MustCompile(`^(\S+(?:\{[^}]*\})?) (\S+)$`)
	want := regexp.MustCompile("^(?:" + series + ")$")
	var sum float64
	for _, l := range strings.Split(page, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil || !want.MatchString(m[1]) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err, l)
		sum += v
	}
	return sum
}
