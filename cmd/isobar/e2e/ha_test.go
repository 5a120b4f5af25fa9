//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHAPairOfPrometheusServers: two real Prometheus servers scrape the
// same target as one HA cluster (external labels cluster and __replica__)
// and write through two distributors. Queries see one copy of every
// series, without the replica label; when the elected replica is killed,
// the other one's samples are stored within the failover timeout, and the
// counter shows no reset and no hole longer than the timeout plus a scrape.
func TestHAPairOfPrometheusServers(t *testing.T) {
	const failover = 3 * time.Second
	haFlags := []string{"-distributor.ha-tracker.enable", "-distributor.ha-tracker.update-timeout=1s",
		fmt.Sprintf("-distributor.ha-tracker.failover-timeout=%s", failover)}
	c := startCluster(t, haFlags...)
	second := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "distributor-2", "distributor", freeAddr(t), haFlags...)...)
	waitActive(t, second, 3)
	distributors := []*isobar{c.distributor, second}

	prom := map[string]*prometheus{}
	for i, replica := range []string{"r1", "r2"} {
		prom[replica] = startPrometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  external_labels: {cluster: c1, __replica__: %s}
scrape_configs:
  - job_name: target
    static_configs: [{targets: ["%s"]}]
remote_write:
  - url: %s/api/v1/push
    queue_config: {batch_send_deadline: 500ms, min_backoff: 50ms, max_backoff: 500ms}
`, replica, hostPort(t, c.querier.URL), distributors[i].URL))
	}
	q := apiClient{base: c.querier.URL}
	const counter = `go_memstats_alloc_bytes_total{job="target"}`

	// One copy of each series, without the replica label.
	waitFor(t, 30*time.Second, "the pair's samples", func() error {
		res, err := q.queryE(counter, time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if len(res.Series) != 1 {
			return fmt.Errorf("%d series", len(res.Series))
		}
		return nil
	})
	res := q.query(t, counter, time.Now().UnixMilli())
	require.Len(t, res.Series, 1)
	require.Equal(t, "c1", res.Series[0].Metric["cluster"])
	require.NotContains(t, res.Series[0].Metric, "__replica__")
	require.Empty(t, q.query(t, `{__replica__!=""}`, time.Now().UnixMilli()).Series)
	require.Len(t, q.query(t, `up{job="target"}`, time.Now().UnixMilli()).Series, 1)

	// Both distributors know the elected replica. (Two distributors that
	// hear the two replicas first at the same moment elect each its own,
	// until gossip brings them to the later election.)
	electedRE := regexp.MustCompile(`<td>c1</td><td>(r[12])</td>`)
	var elected string
	waitFor(t, 20*time.Second, "both distributors to agree on the elected replica", func() error {
		var seen []string
		for _, d := range distributors {
			_, page, err := httpGet(d.URL+"/distributor/ha_tracker", nil)
			if err != nil {
				return err
			}
			m := electedRE.FindStringSubmatch(page)
			if m == nil {
				return errors.New("no election of cluster c1 on a page")
			}
			seen = append(seen, m[1])
		}
		if seen[0] != seen[1] {
			return fmt.Errorf("elected %v", seen)
		}
		elected = seen[0]
		return nil
	})
	other := map[string]string{"r1": "r2", "r2": "r1"}[elected]
	otherDistributor := distributors[map[string]int{"r1": 1, "r2": 0}[elected]]
	waitFor(t, 20*time.Second, "the distributor of "+other+" to drop its samples", func() error {
		_, metrics, err := httpGet(otherDistributor.URL+"/metrics", nil)
		if err != nil {
			return err
		}
		if !regexp.MustCompile(`isobar_distributor_deduplicated_samples_total\{cluster="c1",tenant="[^"]+"\} [1-9]`).MatchString(metrics) {
			return errors.New("no samples deduplicated yet")
		}
		return nil
	})

	// Let the elected one write a little longer, then kill it.
	time.Sleep(3 * time.Second)
	require.True(t, prom[elected].signal(syscall.SIGKILL, killTimeout))
	killed := time.Now()
	waitFor(t, 30*time.Second, "samples of "+other+" after the kill", func() error {
		res, err := q.queryE(fmt.Sprintf("timestamp(%s)", counter), time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if len(res.Series) != 1 || len(res.Series[0].Points) != 1 {
			return fmt.Errorf("%d series", len(res.Series))
		}
		if last := time.UnixMilli(int64(res.Series[0].Points[0].F * 1000)); !last.After(killed.Add(time.Second)) {
			return fmt.Errorf("last sample at %s, the kill at %s", last, killed)
		}
		return nil
	})
	// A few more of its samples, then the raw samples across the switch.
	time.Sleep(5 * time.Second)
	now := time.Now().UnixMilli()
	raw := q.query(t, counter+"[1m]", now)
	require.Len(t, raw.Series, 1)
	points := raw.Series[0].Points
	var times []string
	for _, p := range points {
		times = append(times, time.UnixMilli(p.T).Sub(killed).Truncate(100*time.Millisecond).String())
	}
	t.Logf("sample times relative to the kill: %v", times)
	require.GreaterOrEqual(t, len(points), 8)
	var maxGap time.Duration
	for i := 1; i < len(points); i++ {
		require.GreaterOrEqual(t, points[i].F, points[i-1].F, "the counter never goes back at %d", points[i].T)
		maxGap = max(maxGap, time.Duration(points[i].T-points[i-1].T)*time.Millisecond)
	}
	t.Logf("%d samples over the switch from %s to %s, longest gap %s", len(points), elected, other, maxGap)
	require.LessOrEqual(t, maxGap, failover+time.Second+time.Second, "no hole longer than the failover timeout plus a scrape interval (plus a second of slack)")
	resets := q.query(t, fmt.Sprintf("resets(%s[1m])", counter), now)
	require.Len(t, resets.Series, 1)
	require.Zero(t, resets.Series[0].Points[0].F)

	code, page, err := httpGet(second.URL+"/distributor/ha_tracker", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Regexp(t, `<td>c1</td><td>`+other+`</td>`, page, "the other replica is elected now")
}
