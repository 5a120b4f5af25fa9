package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testRuleGroup = `name: fleet
interval: 1s
rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: UpIsFortyTwo
    expr: up == 42
    labels:
      severity: warning
    annotations:
      summary: "{{ $labels.job }} answers 42"
`

// A group posted through the configuration API is evaluated: its
// recording rule's results are queryable, its alert fires, and both
// show in Prometheus' rules and alerts endpoints.
func TestRulerEvaluatesPostedRules(t *testing.T) {
	_, base := startApp(t, "-ruler.min-evaluation-interval=1s")
	now := time.Now().UnixMilli()
	code, msg := do(t, http.MethodPost, base+"/api/v1/push", "", pushBody(t, now, "up"))
	require.Equal(t, http.StatusNoContent, code, msg)

	code, msg = do(t, http.MethodPost, base+"/prometheus/config/v1/rules/team-ns", "", []byte(testRuleGroup))
	require.Equal(t, http.StatusAccepted, code, msg)

	code, body := do(t, http.MethodGet, base+"/prometheus/config/v1/rules", "", nil)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "team-ns:")
	require.Contains(t, body, "record: job:up:sum")
	code, body = do(t, http.MethodGet, base+"/prometheus/config/v1/rules/team-ns/fleet", "", nil)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "name: fleet")

	require.Eventually(t, func() bool {
		_, body := do(t, http.MethodGet, base+"/prometheus/api/v1/alerts", "", nil)
		return strings.Contains(body, `"state":"firing"`)
	}, 20*time.Second, 100*time.Millisecond)
	_, body = do(t, http.MethodGet, base+"/prometheus/api/v1/alerts", "", nil)
	require.Contains(t, body, `"alertname":"UpIsFortyTwo"`)
	require.Contains(t, body, `"summary":"test answers 42"`)

	var rules struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				File  string `json:"file"`
				Rules []struct {
					Name   string `json:"name"`
					Type   string `json:"type"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	_, body = do(t, http.MethodGet, base+"/prometheus/api/v1/rules", "", nil)
	require.NoError(t, json.Unmarshal([]byte(body), &rules), body)
	require.Len(t, rules.Data.Groups, 1)
	require.Equal(t, "fleet", rules.Data.Groups[0].Name)
	require.Equal(t, "team-ns", rules.Data.Groups[0].File)
	require.Len(t, rules.Data.Groups[0].Rules, 2)
	_, body = do(t, http.MethodGet, base+"/prometheus/api/v1/rules?type=record", "", nil)
	require.NotContains(t, body, "UpIsFortyTwo")

	// The recording rule's output, written through the distributor.
	require.Eventually(t, func() bool {
		_, body := do(t, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape("job:up:sum"), "", nil)
		return strings.Contains(body, `"job":"test"`) && strings.Contains(body, `"42"`)
	}, 20*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool {
		_, body := do(t, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(`ALERTS{alertstate="firing"}`), "", nil)
		return strings.Contains(body, `"alertname":"UpIsFortyTwo"`)
	}, 20*time.Second, 100*time.Millisecond, "ALERTS written back")

	// Deleted, it stops.
	code, msg = do(t, http.MethodDelete, base+"/prometheus/config/v1/rules/team-ns/fleet", "", nil)
	require.Equal(t, http.StatusAccepted, code, msg)
	require.Eventually(t, func() bool {
		_, body := do(t, http.MethodGet, base+"/prometheus/api/v1/rules", "", nil)
		return strings.Contains(body, `"groups":[]`)
	}, 10*time.Second, 50*time.Millisecond)
	code, _ = do(t, http.MethodGet, base+"/prometheus/config/v1/rules", "", nil)
	require.Equal(t, http.StatusNotFound, code)
}

// Bad rule groups are refused whole with a 400 that says why, and nothing
// is stored.
func TestRulerRefusesBadRuleGroups(t *testing.T) {
	_, base := startApp(t, "-ruler.max-rules-per-rule-group=2", "-ruler.max-rule-groups-per-tenant=2")
	for _, tc := range []struct {
		name, namespace, body, want string
	}{
		{"malformed YAML", "ns", "name: [", "invalid YAML"},
		{"unknown field", "ns", "name: g\nrulez: []\n", "field rulez not found"},
		{"invalid PromQL", "ns", "name: g\nrules:\n  - record: a:b\n    expr: sum(\n", "parse error"},
		{"no name", "ns", "rules:\n  - record: a:b\n    expr: up\n", "Groupname must not be empty"},
		{"duplicate group", "ns", "groups:\n  - name: g\n    rules: [{record: a:b, expr: up}]\n  - name: g\n    rules: [{record: a:c, expr: up}]\n", "repeated in the same file"},
		{"too many rules", "ns", "name: g\nrules:\n  - {record: a:b, expr: up}\n  - {record: a:c, expr: up}\n  - {record: a:d, expr: up}\n", "-ruler.max-rules-per-rule-group"},
		{"too many groups", "ns", "groups:\n  - {name: a, rules: [{record: a:b, expr: up}]}\n  - {name: b, rules: [{record: a:b, expr: up}]}\n  - {name: c, rules: [{record: a:b, expr: up}]}\n", "-ruler.max-rule-groups-per-tenant"},
		{"interval too short", "ns", "name: g\ninterval: 1s\nrules: [{record: a:b, expr: up}]\n", "-ruler.min-evaluation-interval"},
		{"hidden namespace", ".rules", "name: g\nrules: [{record: a:b, expr: up}]\n", "invalid namespace"},
		{"space in namespace", "a%20b", "name: g\nrules: [{record: a:b, expr: up}]\n", "invalid namespace"},
		{"escaped slash in namespace", "a%2Fb", "name: g\nrules: [{record: a:b, expr: up}]\n", "invalid namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, http.MethodPost, base+"/prometheus/config/v1/rules/"+tc.namespace, "", []byte(tc.body))
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, body, tc.want)
		})
	}
	code, body := do(t, http.MethodGet, base+"/prometheus/config/v1/rules", "", nil)
	require.Equal(t, http.StatusNotFound, code, "nothing stored: %s", body)
}
