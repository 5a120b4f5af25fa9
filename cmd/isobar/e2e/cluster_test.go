//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// cluster is 3 ingesters, a distributor and a querier, each its own
// process on 127.0.0.1, joined by memberlist gossip.
type cluster struct {
	ingesters   []*isobar
	distributor *isobar
	querier     *isobar
	join        string // the -memberlist.join of every member
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// clusterMember returns the flags of a cluster member named name running
// target, gossiping on gossipAddr and joining the member at join.
// Members that others dial over gRPC announce their port in a ring, so it
// is fixed, not picked by the process.
func clusterMember(t *testing.T, join, name, target, gossipAddr string, extra ...string) []string {
	return append([]string{
		"-target=" + target, "-ring.store=memberlist", "-ring.instance-id=" + name, "-ring.instance-addr=127.0.0.1",
		"-memberlist.bind-addr=127.0.0.1", "-memberlist.bind-port=" + port(gossipAddr), "-memberlist.join=" + join,
		"-ring.replication-factor=3", "-server.grpc-listen-port=" + port(freeAddr(t)),
		// A ring change gossiped right after a member joined may miss a
		// member; the push/pull sync mends that, every 30s by default,
		// as long as the tests wait for a ring to settle.
		"-memberlist.pullpush-interval=3s",
	}, extra...)
}

// startCluster starts the cluster; extra flags go to every member.
func startCluster(t *testing.T, extra ...string) *cluster {
	return startClusterAs(t, nil, extra...)
}

// startClusterAs is startCluster for members whose operator endpoints need
// the credential in operator.
func startClusterAs(t *testing.T, operator http.Header, extra ...string) *cluster {
	// Every member joins through the first ingester, the distributor and
	// the querier: whichever of them restarts finds the others again.
	ingesterGossip, distributorGossip, querierGossip := freeAddr(t), freeAddr(t), freeAddr(t)
	join := strings.Join([]string{ingesterGossip, distributorGossip, querierGossip}, ",")
	c := &cluster{join: join}
	for i := range 3 {
		gossip := ingesterGossip
		if i > 0 {
			gossip = freeAddr(t)
		}
		flags := clusterMember(t, join, fmt.Sprintf("ingester-%d", i), "ingester", gossip, extra...)
		c.ingesters = append(c.ingesters, startIsobar(t, t.TempDir(), flags...))
	}
	c.distributor = startIsobar(t, t.TempDir(), clusterMember(t, join, "distributor", "distributor", distributorGossip, extra...)...)
	c.querier = startIsobar(t, t.TempDir(), clusterMember(t, join, "querier", "querier", querierGossip, extra...)...)
	for _, p := range []*isobar{c.distributor, c.querier} {
		waitActiveAs(t, p, 3, operator)
	}
	return c
}

// waitActive waits until p's view of the ring has n ACTIVE ingesters.
func waitActive(t *testing.T, p *isobar, n int) {
	t.Helper()
	waitActiveAs(t, p, n, nil)
}

// waitActiveAs is waitActive asking with the credential in operator.
func waitActiveAs(t *testing.T, p *isobar, n int, operator http.Header) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d ACTIVE ingesters in the ring", n), func() error {
		code, page, err := httpGet(p.URL+"/ring", operator)
		if err != nil {
			return err
		}
		if got := strings.Count(page, ">ACTIVE<"); code != http.StatusOK || got != n {
			return fmt.Errorf("/ring: %d, %d ACTIVE", code, got)
		}
		return nil
	})
}

// TestClusterKeepsWritingThroughAnIngesterKill pushes through the
// distributor while one of three ingesters is killed with SIGKILL: with
// replication factor 3, no write fails, every acknowledged sample is
// answered by the querier, and the ingester rejoins with its tokens.
func TestClusterKeepsWritingThroughAnIngesterKill(t *testing.T) {
	c := startCluster(t)
	const nSeries = 20
	base := time.Now().Add(-20 * time.Minute).Truncate(time.Second).UnixMilli()
	request := func(k int) *prompb.WriteRequest {
		req := &prompb.WriteRequest{}
		for i := range nSeries {
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_cluster", "series", fmt.Sprintf("s%02d", i)},
				sample(base+int64(k)*100, float64(k*100+i))))
		}
		return req
	}

	victim := c.ingesters[1]
	tokensFile := filepath.Join(victim.DataDir, "ring-tokens")
	tokensBefore, err := os.ReadFile(tokensFile)
	require.NoError(t, err)

	// Write for 2 s, kill the victim, write 2 s more: every push must succeed.
	acked := 0
	deadline := time.Now().Add(4 * time.Second)
	killed := false
	for k := 0; time.Now().Before(deadline); k++ {
		if !killed && time.Now().After(deadline.Add(-2*time.Second)) {
			victim.Kill9()
			killed = true
		}
		code, body, err := push(c.distributor.URL, "", request(k))
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, "push %d (victim killed: %v): %s", k, killed, body)
		acked = k + 1
	}
	require.True(t, killed)
	require.Greater(t, acked, 50, "the writer barely ran")
	t.Logf("%d requests of %d series acknowledged, one ingester killed halfway", acked, nSeries)

	// Every acknowledged sample, exactly once, from the two live ingesters.
	q := apiClient{base: c.querier.URL}
	end := base + int64(acked)*100
	res := q.query(t, fmt.Sprintf("e2e_cluster[%dms]", end-base+1000), end)
	require.Len(t, res.Series, nSeries)
	for _, s := range res.Series {
		var i int
		_, err := fmt.Sscanf(s.Metric["series"], "s%02d", &i)
		require.NoError(t, err)
		require.Len(t, s.Points, acked, "series %s", s.Metric["series"])
		for k, p := range s.Points {
			require.Equal(t, base+int64(k)*100, p.T)
			require.InDelta(t, float64(k*100+i), p.F, 0)
		}
	}

	// The victim comes back with the same tokens and is ACTIVE again.
	victim.Restart()
	waitActive(t, c.querier, 3)
	tokensAfter, err := os.ReadFile(tokensFile)
	require.NoError(t, err)
	require.Equal(t, tokensBefore, tokensAfter)
	// Its replica now has a gap where it was down; the merged answer must
	// not change, whichever ingesters answer.
	res = q.query(t, fmt.Sprintf("count_over_time(e2e_cluster[%dms])", end-base+1000), end)
	require.Len(t, res.Series, nSeries)
	for _, s := range res.Series {
		require.InDelta(t, float64(acked), s.Points[0].F, 0)
	}
}

// TestClusterGracefulLeave stops an ingester with SIGTERM: it leaves the
// ring (the others see 2 ACTIVE, nothing LEAVING left behind) and nothing
// written before is lost.
func TestClusterGracefulLeave(t *testing.T) {
	c := startCluster(t)
	ts := time.Now().Add(-time.Minute).UnixMilli()
	mustPush(t, c.distributor.URL, "", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series([]string{"__name__", "e2e_leave", "job", "a"}, sample(ts, 1)),
	}})
	require.Equal(t, 0, c.ingesters[2].Stop())
	require.Contains(t, c.ingesters[2].currentLog(), "instance removed from the ring")
	waitActive(t, c.querier, 2)

	res := apiClient{base: c.querier.URL}.query(t, "e2e_leave", ts)
	require.Len(t, res.Series, 1)
	require.InDelta(t, 1.0, res.Series[0].Points[0].F, 0)
	mustPush(t, c.distributor.URL, "", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series([]string{"__name__", "e2e_leave", "job", "a"}, sample(ts+1000, 2)),
	}})
}

// TestClusterExemplarsAndMetadata pushes exemplars and metric metadata
// through the distributor: the querier reads them from a quorum of the
// ingesters and answers one copy of each, though all three hold one.
func TestClusterExemplarsAndMetadata(t *testing.T) {
	c := startCluster(t)
	base := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	for k := range 3 {
		ts := base + int64(k)*1000
		req := &prompb.WriteRequest{}
		for _, job := range []string{"b", "a"} {
			s := series([]string{"__name__", "e2e_rpc_seconds_bucket", "job", job, "le", "+Inf"}, sample(ts, float64(k)))
			s.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%s-%d", job, k)}}, Value: 0.125 * float64(k+1), Timestamp: ts}}
			if k == 0 && job == "a" {
				// Refused by the distributor, as by the single binary:
				// the ingesters must not store them either.
				s.Exemplars = append(s.Exemplars,
					prompb.Exemplar{Labels: []prompb.Label{{Name: "trace-id", Value: "bad-name"}}, Value: 9, Timestamp: ts},
					prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: "future"}}, Value: 9, Timestamp: ts + 3600_000})
			}
			req.Timeseries = append(req.Timeseries, s)
		}
		req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_up", "job", "a"}, sample(ts, 1)))
		mustPush(t, c.distributor.URL, "", req)
	}
	meta := []prompb.MetricMetadata{
		{MetricFamilyName: "e2e_rpc_seconds", Type: prompb.MetricMetadata_HISTOGRAM, Help: "RPC latency.", Unit: "seconds"},
		{MetricFamilyName: "e2e_up", Type: prompb.MetricMetadata_GAUGE, Help: "Up."},
		{MetricFamilyName: "e2e_up", Type: prompb.MetricMetadata_GAUGE, Help: "Up, as another target says."},
	}
	mustPush(t, c.distributor.URL, "", &prompb.WriteRequest{Metadata: meta})
	mustPush(t, c.distributor.URL, "", &prompb.WriteRequest{Metadata: meta}) // sent again, as senders do

	q := apiClient{base: c.querier.URL}
	type exemplarJSON struct {
		Labels    map[string]string `json:"labels"`
		Value     string            `json:"value"`
		Timestamp float64           `json:"timestamp"`
	}
	var got []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []exemplarJSON    `json:"exemplars"`
	}
	q.mustGet(t, "/api/v1/query_exemplars", url.Values{
		"query": {`sum(rate(e2e_rpc_seconds_bucket[5m])) or e2e_up`}, "start": {fmtTime(base - 1000)}, "end": {fmtTime(base + 3000)},
	}, &got)
	require.Len(t, got, 2, "exemplars: %+v", got)
	for i, job := range []string{"a", "b"} {
		require.Equal(t, map[string]string{"__name__": "e2e_rpc_seconds_bucket", "job": job, "le": "+Inf"}, got[i].SeriesLabels)
		require.Len(t, got[i].Exemplars, 3, "one copy of each exemplar of job %s", job)
		for k, e := range got[i].Exemplars {
			require.Equal(t, map[string]string{"trace_id": fmt.Sprintf("%s-%d", job, k)}, e.Labels)
			require.Equal(t, fmt.Sprint(0.125*float64(k+1)), e.Value)
			require.Equal(t, base+int64(k)*1000, int64(math.Round(e.Timestamp*1000)))
		}
	}
	// Nothing the distributor refused, even an hour ahead.
	q.mustGet(t, "/api/v1/query_exemplars", url.Values{
		"query": {`e2e_rpc_seconds_bucket{job="a"}`}, "start": {fmtTime(base - 1000)}, "end": {fmtTime(base + 2*3600_000)},
	}, &got)
	require.Len(t, got, 1)
	require.Len(t, got[0].Exemplars, 3, "exemplars of job a: %+v", got[0].Exemplars)
	// The time range applies.
	q.mustGet(t, "/api/v1/query_exemplars", url.Values{
		"query": {`e2e_rpc_seconds_bucket{job="a"}`}, "start": {fmtTime(base + 1000)}, "end": {fmtTime(base + 1000)},
	}, &got)
	require.Len(t, got, 1)
	require.Len(t, got[0].Exemplars, 1)
	require.Equal(t, map[string]string{"trace_id": "a-1"}, got[0].Exemplars[0].Labels)

	all := q.metadata(t, "")
	require.Len(t, all, 2, "metadata: %+v", all)
	require.Equal(t, []metadataEntry{{Type: "histogram", Help: "RPC latency.", Unit: "seconds"}}, all["e2e_rpc_seconds"])
	require.ElementsMatch(t, []metadataEntry{{Type: "gauge", Help: "Up."}, {Type: "gauge", Help: "Up, as another target says."}}, all["e2e_up"])
	require.Equal(t, map[string][]metadataEntry{"e2e_rpc_seconds": all["e2e_rpc_seconds"]}, q.metadata(t, "e2e_rpc_seconds"))

	var limited map[string][]metadataEntry
	q.mustGet(t, "/api/v1/metadata", url.Values{"limit": {"1"}}, &limited)
	require.Len(t, limited, 1)
	q.mustGet(t, "/api/v1/metadata", url.Values{"metric": {"e2e_up"}, "limit_per_metric": {"1"}}, &limited)
	require.Len(t, limited["e2e_up"], 1)
	require.Contains(t, all["e2e_up"], limited["e2e_up"][0])
}
