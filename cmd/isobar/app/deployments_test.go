package app

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

const deploymentsDir = "../../../deployments"

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load([]string{"-config.file", filepath.Join(deploymentsDir, "single-binary", "isobar.yaml")})
	require.NoError(t, err)
	require.Equal(t, TargetAll, cfg.Target)
	require.Contains(t, cfg.TenantLimits, "openstack-region-one")
}

// TestDashboardQueriesExistingMetrics parses every query of the Grafana
// dashboard and requires each metric it reads to be exposed by a running
// isobar, so renaming a metric cannot silently empty a panel.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deploymentsDir, "grafana", "isobar-overview.json"))
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.Panels)

	_, url := startApp(t)
	now := time.Now()
	code, _ := do(t, http.MethodPost, url+"/api/v1/push", "", pushBody(t, now.UnixMilli(), "up"))
	require.Equal(t, http.StatusNoContent, code)
	// Rejections, so the per-tenant rejection counters exist.
	code, _ = do(t, http.MethodPost, url+"/api/v1/push", "", pushBody(t, now.Add(time.Hour).UnixMilli(), "from_the_future"))
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = do(t, http.MethodPost, url+"/api/v1/push", "", pushBody(t, now.Add(-time.Minute).UnixMilli(), "up"))
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = do(t, http.MethodGet, url+"/api/v1/query?query=up", "", nil)
	require.Equal(t, http.StatusOK, code)
	code, exposition := do(t, http.MethodGet, url+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, code)

	grafanaVars := strings.NewReplacer("$__rate_interval", "1m", "$job", ".+")
	p := parser.NewParser(parser.Options{})
	for _, panel := range dash.Panels {
		require.NotEmpty(t, panel.Targets, panel.Title)
		for _, target := range panel.Targets {
			expr, err := p.ParseExpr(grafanaVars.Replace(target.Expr))
			require.NoError(t, err, "panel %q: %s", panel.Title, target.Expr)
			for _, sel := range parser.ExtractSelectors(expr) {
				for _, m := range sel {
					if m.Name != "__name__" {
						continue
					}
					exposed := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m.Value) + `[{ ]`)
					require.Regexp(t, exposed, exposition, "panel %q reads %s, which isobar does not expose", panel.Title, m.Value)
				}
			}
		}
	}
}
