//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/bench/workload"
)

// TestRulePackOverAPrivateCloud loads the rule pack of deployments/rules
// into a single binary holding the last 70 minutes of the private-cloud
// workload (20,000 series: hypervisors, VMs, Open vSwitch, GPUs, HAProxy)
// and plants two faults: a hypervisor whose node_exporter stopped
// answering (up == 0) and a GPU that reported XID 79 (fallen off the bus).
// Every rule of the pack evaluates without error, the two alerts fire, and
// no other alert is even pending. Each alert's `for` is cut to 1s: the
// test checks what the rules say about the data, not how long they wait.
func TestRulePackOverAPrivateCloud(t *testing.T) {
	iso := startIsobar(t, t.TempDir(), "-ruler.evaluation-interval=1s", "-ruler.min-evaluation-interval=1s", "-ruler.poll-interval=2s")

	g := workload.New(workload.Config{Series: 20_000, Seed: 1})
	var (
		xid      = -1     // the GPU series planted
		upSeries []string // the node hosts: up is what Prometheus adds to each scrape
	)
	lsets := make([][]prompb.Label, g.Len())
	for i := range lsets {
		lsets[i] = g.Series(i)
		ls := labelsOf(lsets[i])
		if g.Job(i) == "node" && !slices.Contains(upSeries, ls["instance"]) {
			upSeries = append(upSeries, ls["instance"])
		}
		if xid < 0 && g.MetricName(i) == "DCGM_FI_DEV_XID_ERRORS" {
			xid = i
		}
	}
	require.NotEmpty(t, upSeries)
	require.GreaterOrEqual(t, xid, 0, "the workload has GPUs")
	sort.Strings(upSeries)
	downHost := upSeries[len(upSeries)/2]
	xidLabels := labelsOf(lsets[xid])
	t.Logf("%d series, %d node hosts; planted: %s down, XID 79 on GPU %s of %s", g.Len(), len(upSeries), downHost, xidLabels["gpu"], xidLabels["Hostname"])

	// The workload's values are uncorrelated noise: a few families become
	// what a healthy cloud shows before anything is planted. Steal is a
	// sliver of the CPU time, 5xx a sliver of the responses, VMs use part
	// of their vCPUs, GPUs run below 85°C, a third of the memory is
	// available and half of each filesystem. Each series' value function is
	// chosen once, from its labels.
	key := func(name string, ls []prompb.Label) string {
		var b strings.Builder
		b.WriteString(name)
		for _, l := range ls {
			if l.Name != "__name__" {
				b.WriteString("," + l.Name + "=" + l.Value)
			}
		}
		return b.String()
	}
	totals := map[string]int{} // the series of node_memory_MemTotal_bytes and node_filesystem_size_bytes
	for i := range lsets {
		if name := g.MetricName(i); name == "node_memory_MemTotal_bytes" || name == "node_filesystem_size_bytes" {
			totals[key(name, lsets[i])] = i
		}
	}
	scaled := func(i int, by float64, round func(float64) float64) func(int64) float64 {
		return func(ts int64) float64 { return round(g.Value(i, ts) * by) }
	}
	share := func(i int, totalName string, part float64) func(int64) float64 {
		total, ok := totals[key(totalName, lsets[i])]
		require.True(t, ok, "%s without its %s", g.MetricName(i), totalName)
		return func(ts int64) float64 {
			return math.Round(g.Value(total, ts) * (part + 0.1*math.Sin(float64(ts)/3.6e6)))
		}
	}
	unchanged := func(v float64) float64 { return v }
	values := make([]func(int64) float64, g.Len())
	for i := range values {
		ls := labelsOf(lsets[i])
		values[i] = scaled(i, 1, unchanged)
		switch name := g.MetricName(i); {
		case name == "node_cpu_seconds_total" && ls["mode"] == "steal":
			values[i] = scaled(i, 0.01, unchanged)
		case name == "haproxy_backend_http_responses_total" && ls["code"] == "5xx":
			values[i] = scaled(i, 0.002, math.Floor)
		case name == "libvirt_domain_info_cpu_time_seconds_total":
			values[i] = scaled(i, 0.2, unchanged)
		case name == "DCGM_FI_DEV_GPU_TEMP":
			values[i] = scaled(i, 0.6, math.Round)
		case name == "node_memory_MemAvailable_bytes":
			values[i] = share(i, "node_memory_MemTotal_bytes", 0.35)
		case name == "node_filesystem_avail_bytes":
			values[i] = share(i, "node_filesystem_size_bytes", 0.5)
		}
	}

	const step = 30_000
	now := time.Now().UnixMilli()
	from := now - 70*60_000
	for ts := from; ts <= now; ts += step {
		req := &prompb.WriteRequest{}
		for i, value := range values {
			v := value(ts)
			if i == xid && ts > now-5*60_000 {
				v = 79
			}
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: lsets[i], Samples: []prompb.Sample{sample(ts, v)}})
		}
		for _, host := range upSeries {
			v := 1.0
			if host == downHost && ts > now-10*60_000 {
				v = 0
			}
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", "up", "instance", host, "job", "node"}, sample(ts, v)))
		}
		mustPush(t, iso.URL, "", req)
	}

	// The pack, each alert's `for` cut to 1s.
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "deployments", "rules", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	forClause := regexp.MustCompile(`(?m)^(\s+for:) \S+$`)
	loaded := time.Now()
	for _, f := range files {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		body = forClause.ReplaceAll(body, []byte("$1 1s"))
		namespace := strings.TrimSuffix(filepath.Base(f), ".yaml")
		code, resp, err := postRaw(httpClient, iso.URL+"/prometheus/config/v1/rules/"+namespace, body, http.Header{"Content-Type": {"application/yaml"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, code, "%s: %s", f, resp)
	}

	type rule struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	}
	type group struct {
		Name           string    `json:"name"`
		File           string    `json:"file"`
		Rules          []rule    `json:"rules"`
		LastEvaluation time.Time `json:"lastEvaluation"`
	}
	api := apiClient{base: iso.URL}
	// Three evaluations of every group after the data was in: an alert
	// with a 1s `for` has had the time to fire.
	var groups []group
	waitFor(t, time.Minute, "every group of the pack evaluated three times", func() error {
		var out struct {
			Groups []group `json:"groups"`
		}
		api.mustGet(t, "/api/v1/rules", nil, &out)
		groups = out.Groups
		if len(groups) != len(files) {
			return fmt.Errorf("%d groups", len(groups))
		}
		for _, g := range groups {
			if g.LastEvaluation.Before(loaded.Add(3 * time.Second)) {
				return fmt.Errorf("group %s last evaluated at %s", g.Name, g.LastEvaluation)
			}
		}
		return nil
	})
	rules := 0
	for _, g := range groups {
		for _, r := range g.Rules {
			require.Equal(t, "ok", r.Health, "rule %s of %s: %s", r.Name, g.Name, r.LastError)
			rules++
		}
	}

	type alert struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	}
	var alerts struct {
		Alerts []alert `json:"alerts"`
	}
	api.mustGet(t, "/api/v1/alerts", nil, &alerts)
	var got []string
	for _, a := range alerts.Alerts {
		key := a.Labels["alertname"] + " " + a.State
		switch a.Labels["alertname"] {
		case "HostDown":
			key += " " + a.Labels["instance"]
		case "GPUXidError", "GPUXidErrorNeedsReset":
			key += " " + a.Labels["Hostname"] + "/" + a.Labels["gpu"]
		default:
			key += fmt.Sprint(" ", a.Labels)
		}
		got = append(got, key)
	}
	sort.Strings(got)
	byName := map[string]int{}
	for _, a := range alerts.Alerts {
		byName[a.Labels["alertname"]+" "+a.State]++
	}
	t.Logf("alerts: %v", byName)
	require.Equal(t, []string{
		"GPUXidErrorNeedsReset firing " + xidLabels["Hostname"] + "/" + xidLabels["gpu"],
		"HostDown firing " + downHost,
	}, got)
	t.Logf("%d rules in %d groups evaluated over the workload: only the planted alerts fire", rules, len(groups))
}

func labelsOf(ls []prompb.Label) map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}
