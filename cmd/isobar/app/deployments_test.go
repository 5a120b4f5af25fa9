package app

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
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

// TestComposeCluster checks the Compose file without Docker: every isobar
// service's command line loads into a valid configuration, the cluster has
// every component, and the hosts it dials are services of the file.
func TestComposeCluster(t *testing.T) {
	dir := filepath.Join(deploymentsDir, "compose")
	raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yaml"))
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))

	const configInContainer = "/etc/isobar/isobar.yaml"
	var targets []string
	var dialed []string
	for name, svc := range compose.Services {
		if len(svc.Command) == 0 || !strings.HasPrefix(svc.Command[0], "-target=") {
			continue // not isobar
		}
		require.Contains(t, svc.Volumes, "./isobar.yaml:"+configInContainer+":ro", "service %s mounts the shared configuration", name)
		args := make([]string, 0, len(svc.Command))
		for _, a := range svc.Command {
			args = append(args, strings.Replace(a, configInContainer, filepath.Join(dir, "isobar.yaml"), 1))
		}
		cfg, err := Load(args)
		require.NoError(t, err, "service %s", name)
		require.Equal(t, name, cfg.Ring.InstanceID, "service %s", name)
		require.Equal(t, name, cfg.Ring.InstanceAddr, "service %s", name)
		require.Equal(t, "memberlist", cfg.Ring.KVStore.Store)
		require.Equal(t, "s3", cfg.Bucket.Backend)
		targets = append(targets, cfg.Target)
		dialed = append(dialed, cfg.Bucket.S3.Endpoint)
		dialed = append(dialed, cfg.Memberlist.JoinMembers...)
		for _, u := range cfg.QueryFrontend.DownstreamURLs {
			dialed = append(dialed, strings.TrimPrefix(u, "http://"))
		}
	}
	slices.Sort(targets)
	require.Equal(t, []string{TargetCompactor, TargetDistributor, TargetIngester, TargetIngester, TargetIngester, TargetQuerier, TargetQueryFrontend, TargetRuler, TargetRuler, TargetStoreGateway}, targets)
	for _, addr := range dialed {
		host, _, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Contains(t, compose.Services, host, "%s names a service of the Compose file", addr)
	}
}
