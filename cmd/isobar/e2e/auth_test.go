//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func bearerHeader(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func basicHeader(user, pw string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))}}
}

func withHeader(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Set(k, v)
	return h
}

// writeAtomically replaces path's content at once, as a config tool would.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

// authTokensFile lists the callers of the tokens tests; extra is appended.
func authTokensFile(extra string) string {
	return fmt.Sprintf(`callers:
  - name: prometheus-a
    token: %s
    tenants: [team-a]
    rights: [write]
  - name: prometheus-b
    username: prometheus-b
    password: %s
    tenants: [team-b]
    rights: [write]
  - name: grafana-a
    token: %s
    tenants: [team-a]
    rights: [read]
  - name: grafana-b
    token: %s
    tenants: [team-b]
    rights: [read]
  - name: rules-a
    username: rules-a
    password: %s
    tenants: [team-a]
    rights: [read, rules]
  - name: operator
    token: %s
    rights: [admin]
  - name: analyst
    token: %s
    tenants: [team-a, team-b]
    rights: [read]
`, sha256Hex("tok-prometheus-a"), sha256Hex("pw-prometheus-b"), sha256Hex("tok-grafana-a"), sha256Hex("tok-grafana-b"),
		sha256Hex("pw-rules-a"), sha256Hex("tok-operator"), sha256Hex("tok-analyst")) + extra
}

// startWritingPrometheus starts a Prometheus that scrapes itself every
// second and remote-writes to pushURL once per writer: each write's series
// get the label writer=NAME, and its request the credential that the YAML
// of auth (a line of remote_write's: authorization, basic_auth, oauth2)
// gives.
func startWritingPrometheus(t *testing.T, pushURL string, writers map[string]string) *prometheus {
	t.Helper()
	cfg := fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['%s']}]
remote_write:
`, promAddrPlaceholder)
	for name, auth := range writers {
		cfg += fmt.Sprintf(`  - url: %s
    %s
    write_relabel_configs: [{target_label: writer, replacement: %s}]
    queue_config: {batch_send_deadline: 1s}
`, pushURL, auth, name)
	}
	return startPrometheus(t, cfg)
}

// writersSeen returns the values of the writer label on the up series the
// caller of c sees (the tests' Prometheus servers label each remote write).
func writersSeen(c apiClient) (map[string]bool, error) {
	raw, err := c.get("/api/v1/query", url.Values{"query": {"count by (writer) (up)"}})
	if err != nil {
		return nil, err
	}
	var v struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, r := range v.Result {
		out[r.Metric["writer"]] = true
	}
	return out, nil
}

// waitOnlyWriter waits until the caller of c sees the series of writer,
// and no other writer's.
func waitOnlyWriter(t *testing.T, c apiClient, writer string) {
	t.Helper()
	waitFor(t, 60*time.Second, "writer "+writer+"'s series, and no other's", func() error {
		got, err := writersSeen(c)
		if err != nil {
			return err
		}
		if !got[writer] || len(got) != 1 {
			return fmt.Errorf("writers seen: %v", got)
		}
		return nil
	})
}

// authDecision is a request and the status the front door must answer.
type authDecision struct {
	name   string
	method string
	path   string
	header http.Header
	code   int
}

// checkAuthDecisions sends every request of the tokens file's callers to
// write (a distributor or single binary), read (a query-frontend or single
// binary) and operator endpoints, and checks each answer.
func checkAuthDecisions(t *testing.T, write, read string) {
	t.Helper()
	body := encodeWrite(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "e2e_auth_probe"}, sample(time.Now().UnixMilli(), 1))}})
	rw := func(h http.Header) http.Header {
		h = h.Clone()
		for k, v := range rwHeaders("") {
			h[k] = v
		}
		return h
	}
	query := "/prometheus/api/v1/query?query=" + url.QueryEscape("vector(1)")
	for _, d := range []authDecision{
		{"push without a credential", http.MethodPost, write + "/api/v1/push", rw(http.Header{}), 401},
		{"push with a tenant header only", http.MethodPost, write + "/api/v1/push", rw(http.Header{"X-Scope-OrgID": {"team-a"}}), 401},
		{"push by a writer", http.MethodPost, write + "/api/v1/push", rw(bearerHeader("tok-prometheus-a")), 204},
		{"push by a writer with basic auth", http.MethodPost, write + "/api/v1/push", rw(basicHeader("prometheus-b", "pw-prometheus-b")), 204},
		{"push by a writer, wrong password", http.MethodPost, write + "/api/v1/push", rw(basicHeader("prometheus-b", "pw-prometheus-a")), 401},
		{"push by a writer to another tenant", http.MethodPost, write + "/api/v1/push", rw(withHeader(bearerHeader("tok-prometheus-a"), "X-Scope-OrgID", "team-b")), 403},
		{"push by a reader", http.MethodPost, write + "/api/v1/push", rw(bearerHeader("tok-grafana-a")), 403},
		{"push with an unknown token", http.MethodPost, write + "/api/v1/push", rw(bearerHeader("tok-nobody")), 401},
		{"push with a malformed header", http.MethodPost, write + "/api/v1/push", rw(http.Header{"Authorization": {"Bearer"}}), 401},
		{"push with a 1 MB token", http.MethodPost, write + "/api/v1/push", rw(bearerHeader(strings.Repeat("t", 1_000_000))), 401},
		{"push with a 2 MB token", http.MethodPost, write + "/api/v1/push", rw(bearerHeader(strings.Repeat("t", 2_000_000))), 431},
		{"query by a reader", http.MethodGet, read + query, bearerHeader("tok-grafana-a"), 200},
		{"query by a writer", http.MethodGet, read + query, bearerHeader("tok-prometheus-a"), 403},
		{"query across tenants without read on both", http.MethodGet, read + query, withHeader(bearerHeader("tok-grafana-a"), "X-Scope-OrgID", "team-a|team-b"), 403},
		{"query across tenants with read on both", http.MethodGet, read + query, withHeader(bearerHeader("tok-analyst"), "X-Scope-OrgID", "team-a|team-b"), 200},
		{"push to several tenants", http.MethodPost, write + "/api/v1/push", rw(withHeader(bearerHeader("tok-analyst"), "X-Scope-OrgID", "team-a|team-b")), 403},
		{"build info needs nothing", http.MethodGet, read + "/prometheus/api/v1/status/buildinfo", http.Header{}, 200},
		{"operator page without a credential", http.MethodGet, write + "/ring", http.Header{}, 401},
		{"operator page by a reader", http.MethodGet, write + "/ring", bearerHeader("tok-grafana-a"), 403},
		{"operator page by the operator", http.MethodGet, write + "/ring", bearerHeader("tok-operator"), 200},
		{"metrics stay open to scrapers", http.MethodGet, write + "/metrics", http.Header{}, 200},
	} {
		var code int
		var resp string
		var err error
		if d.method == http.MethodPost {
			code, resp, err = postRaw(httpClient, d.path, body, d.header)
		} else {
			code, resp, err = httpGet(d.path, d.header)
		}
		require.NoError(t, err, d.name)
		require.Equal(t, d.code, code, "%s: %.300s", d.name, resp)
		require.NotContains(t, resp, "tok-", "%s: an answer never repeats a credential", d.name)
	}
}

// TestTokensOnACluster runs a cluster (3 ingesters, a distributor, a
// querier, a query-frontend, a ruler) with -auth.type=tokens. A real
// Prometheus writes as two tenants' callers and as a reader (refused); each
// tenant reads back its own series only, through the frontend; a rule
// group loaded by a rules caller is evaluated by the ruler through the
// frontend (the internal secret on every hop); the file is read again
// while the processes run; and the single binary decides alike.
func TestTokensOnACluster(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	writeAtomically(t, tokens, authTokensFile(""))
	secret := filepath.Join(dir, "internal-secret")
	writeAtomically(t, secret, "e2e-internal-secret-0123456789")
	authFlags := []string{"-auth.type=tokens", "-auth.tokens.file=" + tokens, "-auth.tokens.reload-period=1h", "-auth.internal-secret-file=" + secret,
		"-tenant-federation.enabled"}
	operator := bearerHeader("tok-operator")

	c := startClusterAs(t, operator, authFlags...)
	fe := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "query-frontend", "query-frontend", freeAddr(t),
		append([]string{"-query-frontend.downstream-url=" + c.querier.URL, "-query-frontend.query-sharding-total-shards=4"}, authFlags...)...)...)
	ruler := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "ruler", "ruler", freeAddr(t),
		append([]string{"-bucket.filesystem.dir=" + t.TempDir(), "-ruler.poll-interval=1s", "-ruler.min-evaluation-interval=1s",
			"-ruler.query-frontend.address=" + fe.URL}, authFlags...)...)...)

	startWritingPrometheus(t, c.distributor.URL+"/api/v1/push", map[string]string{
		"a":      "authorization: {credentials: tok-prometheus-a}",
		"b":      "basic_auth: {username: prometheus-b, password: pw-prometheus-b}",
		"reader": "authorization: {credentials: tok-grafana-a}",
	})

	teamA := apiClient{base: fe.URL + "/prometheus", header: bearerHeader("tok-grafana-a")}
	teamB := apiClient{base: fe.URL + "/prometheus", header: bearerHeader("tok-grafana-b")}
	for name, want := range map[string]struct {
		c      apiClient
		writer string
	}{"team-a": {teamA, "a"}, "team-b": {teamB, "b"}} {
		waitFor(t, 60*time.Second, name+" to read back what its Prometheus wrote", func() error {
			got, err := writersSeen(want.c)
			if err != nil {
				return err
			}
			if !got[want.writer] {
				return fmt.Errorf("writers seen: %v", got)
			}
			return nil
		})
	}
	// Prometheus has sent the reader's queue too by now: refused, stored nowhere.
	waitFor(t, 30*time.Second, "the distributor to refuse the reader's writes", func() error {
		_, m, err := httpGet(c.distributor.URL+"/metrics", nil)
		if err != nil {
			return err
		}
		if !strings.Contains(m, `isobar_auth_failures_total{reason="forbidden"}`) || strings.Contains(m, `isobar_auth_failures_total{reason="forbidden"} 0`) {
			return fmt.Errorf("no forbidden write counted yet")
		}
		return nil
	})
	for name, cl := range map[string]apiClient{"team-a": teamA, "team-b": teamB} {
		got, err := writersSeen(cl)
		require.NoError(t, err)
		require.Len(t, got, 1, "%s sees only its own writer's series: %v", name, got)
	}

	// A caller with read on both tenants reads them at once, each series
	// naming its tenant.
	raw, err := apiClient{base: fe.URL + "/prometheus", header: withHeader(bearerHeader("tok-analyst"), "X-Scope-OrgID", "team-a|team-b")}.
		get("/api/v1/query", url.Values{"query": {"count by (__tenant_id__, writer) (up)"}})
	require.NoError(t, err)
	var across struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(raw, &across))
	var pairs []string
	for _, r := range across.Result {
		pairs = append(pairs, r.Metric["__tenant_id__"]+"/"+r.Metric["writer"])
	}
	slices.Sort(pairs)
	require.Equal(t, []string{"team-a/a", "team-b/b"}, pairs)

	// A rules caller loads a group; the ruler evaluates it through the
	// frontend and writes the result back to team-a.
	group := "name: e2e-auth\ninterval: 1s\nrules:\n  - record: e2e:writers:count\n    expr: count(up)\n"
	code, resp, err := postRaw(httpClient, ruler.URL+"/prometheus/config/v1/rules/auth", []byte(group),
		withHeader(basicHeader("rules-a", "pw-rules-a"), "Content-Type", "application/yaml"))
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code, resp)
	code, resp, err = postRaw(httpClient, ruler.URL+"/prometheus/config/v1/rules/auth", []byte(group),
		withHeader(bearerHeader("tok-grafana-a"), "Content-Type", "application/yaml"))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, code, "a reader cannot change rules: %s", resp)
	waitFor(t, 60*time.Second, "the recording rule's output in team-a", func() error {
		raw, err := teamA.get("/api/v1/query", url.Values{"query": {"e2e:writers:count"}})
		if err != nil {
			return err
		}
		if !strings.Contains(string(raw), `"value":[`) || !strings.Contains(string(raw), `"1"]`) {
			return fmt.Errorf("answer: %s", raw)
		}
		return nil
	})
	raw, err = teamB.get("/api/v1/query", url.Values{"query": {"e2e:writers:count"}})
	require.NoError(t, err)
	require.JSONEq(t, `{"resultType":"vector","result":[]}`, string(raw), "team-b does not see team-a's rules' output")

	checkAuthDecisions(t, c.distributor.URL, fe.URL)

	// A caller added to the file works without a restart; removed, it
	// stops working. The reload period is an hour: the processes see the
	// change through their watch of the file's directory.
	late := apiClient{base: fe.URL + "/prometheus", header: bearerHeader("tok-late")}
	writeAtomically(t, tokens, authTokensFile(fmt.Sprintf("  - name: late\n    token: %s\n    tenants: [team-a]\n    rights: [read]\n", sha256Hex("tok-late"))))
	waitFor(t, 10*time.Second, "a token added to the file to work", func() error {
		_, err := late.get("/api/v1/query", url.Values{"query": {"vector(1)"}})
		return err
	})
	writeAtomically(t, tokens, authTokensFile(""))
	waitFor(t, 10*time.Second, "a token removed from the file to stop working", func() error {
		code, _, err := late.getRaw("/api/v1/query", url.Values{"query": {"vector(1)"}})
		if err != nil || code != http.StatusUnauthorized {
			return fmt.Errorf("status %d, %v", code, err)
		}
		return nil
	})

	// The same decisions in a single binary.
	single := startIsobar(t, t.TempDir(), authFlags...)
	checkAuthDecisions(t, single.URL, single.URL)

	// An address that keeps failing is slowed down, then let in again.
	var limited bool
	for range 40 {
		code, _, err := httpGet(single.URL+"/prometheus/api/v1/query?query=1", bearerHeader("tok-guess"))
		require.NoError(t, err)
		if code == http.StatusTooManyRequests {
			limited = true
			break
		}
		require.Equal(t, http.StatusUnauthorized, code)
	}
	require.True(t, limited, "failures from one address are limited")
	waitFor(t, 5*time.Second, "the address to be let in again", func() error {
		code, _, err := httpGet(single.URL+"/prometheus/api/v1/query?query=1", bearerHeader("tok-grafana-a"))
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("status %d, %v", code, err)
		}
		return nil
	})
	for _, p := range []*isobar{c.distributor, c.querier, fe, ruler, single} {
		require.True(t, p.running(), "every process is alive")
	}
}
