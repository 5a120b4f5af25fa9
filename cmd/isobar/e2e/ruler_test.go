//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// alertmanager is Debian's Alertmanager, routing every alert to a webhook
// this test serves.
type alertmanager struct {
	*proc
	URL string

	mu            sync.Mutex
	notifications []webhookMessage
}

type webhookMessage struct {
	Status string `json:"status"`
	Alerts []struct {
		Status   string            `json:"status"`
		Labels   map[string]string `json:"labels"`
		StartsAt time.Time         `json:"startsAt"`
	} `json:"alerts"`
}

func startAlertmanager(t *testing.T) *alertmanager {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Fatalf("prometheus-alertmanager is not on PATH (%v): run `make test-deps` (scripts/install-test-deps.sh)", err)
	}
	am := &alertmanager{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m webhookMessage
		if json.Unmarshal(b, &m) == nil {
			am.mu.Lock()
			am.notifications = append(am.notifications, m)
			am.mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	// Every alert to the webhook, quickly, and never again while it
	// stays the same (a repeat would hide a duplicate).
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, tenant]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: false
`, hook.URL)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o644))
	addr := freeAddr(t)
	am.proc = newProc(t, "alertmanager", bin, []string{
		"--config.file=" + filepath.Join(dir, "am.yml"), "--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--cluster.listen-address=",
	})
	am.URL = "http://" + addr
	am.start()
	waitFor(t, 30*time.Second, "alertmanager ready", func() error {
		code, _, err := httpGet(am.URL+"/-/ready", nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	return am
}

// received returns the alerts the webhook got, by alertname and the
// labels given, counting each notification that carried it.
func (am *alertmanager) received(alertname string, match map[string]string) (n int, startsAt []time.Time) {
	am.mu.Lock()
	defer am.mu.Unlock()
	for _, m := range am.notifications {
	alerts:
		for _, a := range m.Alerts {
			if a.Labels["alertname"] != alertname {
				continue
			}
			for k, v := range match {
				if a.Labels[k] != v {
					continue alerts
				}
			}
			n++
			startsAt = append(startsAt, a.StartsAt)
		}
	}
	return n, startsAt
}

const hypervisorRules = `name: hypervisors
interval: 1s
rules:
  - record: cloud:hypervisor_up:sum
    expr: sum(e2e_hypervisor_up)
  - alert: HypervisorDown
    expr: e2e_hypervisor_up == 0
    for: 2s
    labels:
      severity: critical
    annotations:
      summary: "{{ $labels.hypervisor }} is down"
`

// TestRulerAlertsThroughAlertmanager loads a group through the
// configuration API of a single binary with multitenancy, pushes data that
// makes it fire, and follows the alert to a webhook behind Debian's
// Alertmanager; the recording rule's output equals its expression run by
// hand; another tenant's data never reaches the first tenant's rules. Then
// kill -9: after the restart the alert keeps its activeAt and fires again,
// and the webhook gets no second notification.
func TestRulerAlertsThroughAlertmanager(t *testing.T) {
	am := startAlertmanager(t)
	iso := startIsobar(t, t.TempDir(), "-auth.multitenancy-enabled=true", "-ruler.alertmanager-url="+am.URL,
		"-ruler.alertmanager-send-tenant=false", "-ruler.min-evaluation-interval=1s", "-ruler.for-grace-period=1s", "-ruler.resend-delay=2s")
	push := func(tenant, hypervisor string, v float64) {
		mustPush(t, iso.URL, tenant, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series([]string{"__name__", "e2e_hypervisor_up", "hypervisor", hypervisor}, sample(time.Now().UnixMilli(), v)),
		}})
	}
	push("team-a", "cmp-a1", 0)
	push("team-a", "cmp-a2", 1)
	push("team-b", "cmp-b1", 0) // would fire for team-a if its rules saw team-b
	push("team-b", "cmp-b2", 0)

	post := func(tenant, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, iso.URL+"/prometheus/config/v1/rules/hypervisors", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Scope-OrgID", tenant)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	loaded := time.Now()
	code, body := post("team-a", hypervisorRules)
	require.Equal(t, http.StatusAccepted, code, body)

	// Interval (1s) + for (2s) + group_wait (1s), and some slack.
	waitFor(t, 20*time.Second, "the alert at the webhook", func() error {
		if n, _ := am.received("HypervisorDown", map[string]string{"hypervisor": "cmp-a1"}); n == 0 {
			return fmt.Errorf("no notification yet")
		}
		return nil
	})
	t.Logf("alert at the webhook %s after the group was loaded", time.Since(loaded).Round(10*time.Millisecond))
	n, _ := am.received("HypervisorDown", map[string]string{"hypervisor": "cmp-b1"})
	require.Zero(t, n, "team-a's rules saw team-b's data")

	a := apiClient{base: iso.URL, tenant: "team-a"}
	type alert struct {
		Labels   map[string]string `json:"labels"`
		State    string            `json:"state"`
		ActiveAt time.Time         `json:"activeAt"`
	}
	alerts := func() []alert {
		var out struct {
			Alerts []alert `json:"alerts"`
		}
		a.mustGet(t, "/api/v1/alerts", nil, &out)
		return out.Alerts
	}
	got := alerts()
	require.Len(t, got, 1)
	require.Equal(t, "firing", got[0].State)
	require.Equal(t, "cmp-a1", got[0].Labels["hypervisor"])
	activeAt := got[0].ActiveAt

	// The recording rule's last output is its expression at that time.
	rec := a.query(t, `timestamp(cloud:hypervisor_up:sum)`, time.Now().UnixMilli())
	require.Len(t, rec.Series, 1)
	at := int64(rec.Series[0].Points[0].F * 1000)
	byHand := a.query(t, `sum(e2e_hypervisor_up)`, at)
	recorded := a.query(t, `cloud:hypervisor_up:sum`, at)
	require.Len(t, byHand.Series, 1)
	require.Len(t, recorded.Series, 1)
	require.Equal(t, byHand.Series[0].Points[0].F, recorded.Series[0].Points[0].F)
	require.InDelta(t, 1.0, byHand.Series[0].Points[0].F, 0, "team-a's own two hypervisors")
	b := apiClient{base: iso.URL, tenant: "team-b"}
	require.Empty(t, b.query(t, `cloud:hypervisor_up:sum`, at).Series, "team-b has no rules")

	before, _ := am.received("HypervisorDown", map[string]string{"hypervisor": "cmp-a1"})
	iso.Kill9()
	time.Sleep(2 * time.Second) // down for two evaluations
	iso.Restart()
	a.base = iso.URL // a new port
	push("team-a", "cmp-a1", 0)
	waitFor(t, 20*time.Second, "the alert firing again", func() error {
		got := alerts()
		if len(got) != 1 || got[0].State != "firing" {
			return fmt.Errorf("alerts %+v", got)
		}
		return nil
	})
	got = alerts()
	// ALERTS_FOR_STATE keeps whole seconds.
	require.True(t, got[0].ActiveAt.Equal(activeAt.Truncate(time.Second)), "activeAt %s restored from ALERTS_FOR_STATE, was %s", got[0].ActiveAt, activeAt)
	time.Sleep(5 * time.Second) // resend delay, group_interval and slack
	after, _ := am.received("HypervisorDown", map[string]string{"hypervisor": "cmp-a1"})
	require.Equal(t, before, after, "no new notification after the restart")
}

// TestRulersShareGroupsAndTakeOver runs two rulers in a cluster over one
// rule store: the ruler ring splits a tenant's groups between them, either
// ruler's /api/v1/rules and /api/v1/alerts list them all, and when one
// ruler stops, the other evaluates every group within one poll interval,
// its alerts firing from the first evaluation with their activeAt kept;
// when one is killed, within the ring's heartbeat timeout and a poll.
func TestRulersShareGroupsAndTakeOver(t *testing.T) {
	const (
		groups           = 12
		poll             = 5 * time.Second
		heartbeatTimeout = 4 * time.Second
	)
	heartbeats := []string{"-ring.heartbeat-period=1s", "-ring.heartbeat-timeout=" + heartbeatTimeout.String()}
	c := startCluster(t, heartbeats...)
	// The rulers evaluate through a query-frontend, which shards what it
	// can (count(...)) and passes the rest on.
	fe := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "query-frontend", "query-frontend", freeAddr(t),
		"-query-frontend.downstream-url="+c.querier.URL, "-query-frontend.query-sharding-total-shards=4")...)
	store := t.TempDir()
	rulerFlags := append([]string{"-bucket.filesystem.dir=" + store, "-ruler.poll-interval=" + poll.String(),
		"-ruler.min-evaluation-interval=1s", "-ruler.for-grace-period=1m", "-ruler.query-frontend.address=" + fe.URL}, heartbeats...)
	var rulers []*isobar
	for i := range 2 {
		rulers = append(rulers, startIsobar(t, t.TempDir(), clusterMember(t, c.join, fmt.Sprintf("ruler-%d", i), "ruler", freeAddr(t), rulerFlags...)...))
	}

	req := &prompb.WriteRequest{}
	for i := range groups {
		req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_ring_up", "hypervisor", fmt.Sprintf("cmp-%02d", i)}, sample(time.Now().UnixMilli(), 0)))
	}
	mustPush(t, c.distributor.URL, "", req)
	for i := range groups {
		body := fmt.Sprintf(`name: g%02d
interval: 1s
rules:
  - record: e2e:ring_up:g%02d
    expr: count(e2e_ring_up)
  - alert: E2EHypervisorDown
    expr: e2e_ring_up{hypervisor="cmp-%02d"} == 0
    for: 2s
    labels:
      group: g%02d
`, i, i, i, i)
		code, resp, err := postRaw(httpClient, rulers[0].URL+"/prometheus/config/v1/rules/cloud", []byte(body), http.Header{"Content-Type": {"application/yaml"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, code, resp)
	}

	type alert struct {
		Labels   map[string]string `json:"labels"`
		State    string            `json:"state"`
		ActiveAt time.Time         `json:"activeAt"`
	}
	type group struct {
		Name           string    `json:"name"`
		LastEvaluation time.Time `json:"lastEvaluation"`
	}
	groupsOf := func(r *isobar, params url.Values) []group {
		var out struct {
			Groups []group `json:"groups"`
		}
		apiClient{base: r.URL}.mustGet(t, "/api/v1/rules", params, &out)
		return out.Groups
	}
	alertsOf := func(r *isobar, params url.Values) map[string]alert {
		var out struct {
			Alerts []alert `json:"alerts"`
		}
		apiClient{base: r.URL}.mustGet(t, "/api/v1/alerts", params, &out)
		m := map[string]alert{}
		for _, a := range out.Alerts {
			m[a.Labels["group"]] = a
		}
		return m
	}
	local := url.Values{"local": {"true"}}

	// Each ruler evaluates its share, and every alert fires.
	owned := make([][]group, 2)
	waitFor(t, 3*poll, "both rulers evaluating their groups, every alert firing", func() error {
		total := 0
		for i, r := range rulers {
			owned[i] = groupsOf(r, local)
			for _, g := range owned[i] {
				if g.LastEvaluation.IsZero() {
					return fmt.Errorf("group %s on ruler %d not evaluated yet", g.Name, i)
				}
			}
			total += len(owned[i])
		}
		if total != groups {
			return fmt.Errorf("the rulers evaluate %d and %d groups", len(owned[0]), len(owned[1]))
		}
		for g, a := range alertsOf(rulers[0], nil) {
			if a.State != "firing" {
				return fmt.Errorf("alert of %s is %s", g, a.State)
			}
		}
		if n := len(alertsOf(rulers[0], nil)); n != groups {
			return fmt.Errorf("%d alerts", n)
		}
		return nil
	})
	require.NotEmpty(t, owned[0])
	require.NotEmpty(t, owned[1])
	t.Logf("ruler-0 evaluates %d groups, ruler-1 %d", len(owned[0]), len(owned[1]))
	// Every query went through the frontend, the recording rules' sharded
	// ones too, and their output is what the querier answers.
	require.Positive(t, metricSum(t, fe, `isobar_query_frontend_sharded_queries_total\{endpoint="query"\}`))
	require.Positive(t, metricSum(t, fe, `isobar_query_frontend_queries_total\{endpoint="query",status_code="200"\}`))
	require.Zero(t, metricSum(t, fe, `isobar_query_frontend_queries_total\{endpoint="query",status_code="[^2]\d\d"\}`))
	waitFor(t, 10*time.Second, "every group's recording rule written", func() error {
		for i := range groups {
			name := fmt.Sprintf("e2e:ring_up:g%02d", i)
			res, err := apiClient{base: c.querier.URL}.queryE(name, time.Now().UnixMilli())
			if err != nil {
				return err
			}
			if len(res.Series) != 1 || res.Series[0].Points[0].F != groups {
				return fmt.Errorf("%s is %+v, want %d", name, res.Series, groups)
			}
		}
		return nil
	})

	// Either ruler lists every group, page by page.
	var paged []string
	params := url.Values{"group_limit": {"5"}}
	for {
		var out struct {
			Groups    []group `json:"groups"`
			NextToken string  `json:"groupNextToken"`
		}
		apiClient{base: rulers[1].URL}.mustGet(t, "/api/v1/rules", params, &out)
		for _, g := range out.Groups {
			paged = append(paged, g.Name)
		}
		if out.NextToken == "" {
			break
		}
		params.Set("group_next_token", out.NextToken)
		require.Less(t, len(paged), groups, "pages never end")
	}
	var want []string
	for i := range groups {
		want = append(want, fmt.Sprintf("g%02d", i))
	}
	require.Equal(t, want, paged)
	before := alertsOf(rulers[1], nil)
	require.Len(t, before, groups)

	// takeOver waits until r evaluates every group, each since since, and
	// returns the states of their alerts r showed meanwhile.
	takeOver := func(r *isobar, since time.Time, within time.Duration) map[string][]string {
		t.Helper()
		seen := map[string][]string{}
		// The groups are read before the alerts: once every group was
		// evaluated, the same poll sees every alert (read the other way
		// round, a group evaluated between the two reads ends the wait
		// with its alert never seen).
		waitFor(t, within, r.URL+" evaluating every group", func() error {
			gs := groupsOf(r, local)
			for g, a := range alertsOf(r, local) {
				if n := len(seen[g]); n == 0 || seen[g][n-1] != a.State {
					seen[g] = append(seen[g], a.State)
				}
			}
			if len(gs) != groups {
				return fmt.Errorf("%d groups", len(gs))
			}
			for _, g := range gs {
				if !g.LastEvaluation.After(since) {
					return fmt.Errorf("group %s not evaluated since", g.Name)
				}
			}
			return nil
		})
		return seen
	}

	// ruler-1 stops; ruler-0 takes its groups over within a poll interval,
	// and their alerts are firing from the first evaluation on.
	require.Equal(t, 0, rulers[1].Stop())
	stopped := time.Now()
	seen := takeOver(rulers[0], stopped, 2*poll)
	took := time.Since(stopped)
	t.Logf("ruler-0 evaluated all %d groups %s after ruler-1 stopped", groups, took.Round(10*time.Millisecond))
	require.Less(t, took, poll, "takeover within one poll interval")
	requireTakenOver := func(r *isobar, before map[string]alert, seen map[string][]string) {
		t.Helper()
		after := alertsOf(r, local)
		require.Len(t, after, groups)
		for g, a := range after {
			require.Equal(t, "firing", a.State, "alert of %s", g)
			require.Equal(t, []string{"firing"}, seen[g], "states of the alert of %s seen on %s", g, r.URL)
			// ALERTS_FOR_STATE keeps whole seconds.
			require.True(t, a.ActiveAt.Equal(before[g].ActiveAt.Truncate(time.Second)) || a.ActiveAt.Equal(before[g].ActiveAt),
				"alert of %s active since %s, was %s", g, a.ActiveAt, before[g].ActiveAt)
		}
	}
	requireTakenOver(rulers[0], before, seen)

	// ruler-1 comes back and takes its share again. Then ruler-0 dies
	// (kill -9, it leaves no word): ruler-1 evaluates every group once
	// ruler-0 misses the ring's heartbeat timeout.
	rulers[1].Restart()
	waitFor(t, 3*poll, "the groups split again, each evaluated by its ruler", func() error {
		gs0, gs1 := groupsOf(rulers[0], local), groupsOf(rulers[1], local)
		if len(gs0) == 0 || len(gs1) == 0 || len(gs0)+len(gs1) != groups {
			return fmt.Errorf("the rulers evaluate %d and %d groups", len(gs0), len(gs1))
		}
		for _, g := range append(gs0, gs1...) {
			if g.LastEvaluation.IsZero() {
				return fmt.Errorf("group %s not evaluated yet", g.Name)
			}
		}
		if n := len(alertsOf(rulers[1], nil)); n != groups {
			return fmt.Errorf("%d alerts", n)
		}
		return nil
	})
	before = alertsOf(rulers[1], nil)
	require.Len(t, before, groups)
	rulers[0].Kill9()
	killed := time.Now()
	seen = takeOver(rulers[1], killed, heartbeatTimeout+2*poll)
	took = time.Since(killed)
	t.Logf("ruler-1 evaluated all %d groups %s after ruler-0 was killed (heartbeat timeout %s)", groups, took.Round(10*time.Millisecond), heartbeatTimeout)
	require.Less(t, took, heartbeatTimeout+poll, "takeover within the heartbeat timeout and a poll interval")
	requireTakenOver(rulers[1], before, seen)
}
