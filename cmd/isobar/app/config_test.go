package app

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "isobar.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestLoad(t *testing.T) {
	file := writeFile(t, `
data_dir: /from/file
multitenancy_enabled: true
server:
  http_listen_port: 9100
ingester:
  close_idle_tenant_after: 5m
limits:
  ingestion_rate: 10
  out_of_order_time_window: 1h
tenant_limits:
  team-a:
    ingestion_rate: 20
`)
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, c *Config)
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, c *Config) {
			require.Equal(t, "all", c.Target)
			require.Equal(t, "./data", c.DataDir)
			require.Equal(t, 9009, c.Server.HTTPListenPort)
			require.False(t, c.MultitenancyEnabled)
			require.Equal(t, filepath.Join("data", "tsdb"), c.Ingester.Dir)
		}},
		{name: "file over defaults", args: []string{"-config.file", file}, check: func(t *testing.T, c *Config) {
			require.Equal(t, "/from/file", c.DataDir)
			require.True(t, c.MultitenancyEnabled)
			require.Equal(t, 9100, c.Server.HTTPListenPort)
			require.Equal(t, 5*time.Minute, c.Ingester.CloseIdleTenantAfter)
			require.InDelta(t, 10.0, c.Limits.IngestionRate, 0)
			require.Equal(t, model.Duration(time.Hour), c.Limits.OutOfOrderTimeWindow)
			require.Equal(t, 30, c.Limits.MaxLabelNamesPerSeries, "fields the file leaves out keep their default")
			require.Contains(t, c.TenantLimits, "team-a")
		}},
		{name: "flags over file", args: []string{"-config.file", file, "-data.dir", "/from/flag", "-distributor.ingestion-rate-limit", "30"}, check: func(t *testing.T, c *Config) {
			require.Equal(t, "/from/flag", c.DataDir)
			require.InDelta(t, 30.0, c.Limits.IngestionRate, 0)
			require.Equal(t, 9100, c.Server.HTTPListenPort)
		}},
		// Flags that collect values hold each once, file or not.
		{name: "list flags with a file", args: []string{"-data.dir", "/d", "-config.file", file, "-memberlist.bind-addr", "127.0.0.1", "-memberlist.join", "127.0.0.1:7946"}, check: func(t *testing.T, c *Config) {
			require.Equal(t, []string{"127.0.0.1"}, []string(c.Memberlist.TCPTransport.BindAddrs))
			require.Equal(t, []string{"127.0.0.1:7946"}, []string(c.Memberlist.JoinMembers))
			require.True(t, c.MultitenancyEnabled, "the file is read though a flag with a value comes first")
		}},
		{name: "empty file", args: []string{"-config.file", writeFile(t, "")}, check: func(t *testing.T, c *Config) {
			require.Equal(t, "./data", c.DataDir)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args)
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown yaml key", args: []string{"-config.file", writeFile(t, "data_dri: x\n")}, wantErr: "field data_dri not found"},
		{name: "unknown flag", args: []string{"-no.such-flag"}, wantErr: "flag provided but not defined"},
		{name: "unknown target", args: []string{"-target", "storage"}, wantErr: `unknown -target "storage"`},
		{name: "cluster target needs a shared ring", args: []string{"-target", "ingester"}, wantErr: "set -ring.store=memberlist"},
		{name: "cluster ingester needs an address", args: []string{"-target", "ingester", "-ring.store", "memberlist"}, wantErr: "-ring.instance-addr"},
		{name: "bad limit", args: []string{"-distributor.ingestion-rate-limit", "-1"}, wantErr: "ingestion rate limit must be positive"},
		{name: "bad scheme", args: []string{"-validation.name-validation-scheme", "ascii"}, wantErr: "unknown name validation scheme"},
		{name: "missing file", args: []string{"-config.file", "/does/not/exist.yaml"}, wantErr: "read config file"},
		{name: "stray argument", args: []string{"run"}, wantErr: "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
