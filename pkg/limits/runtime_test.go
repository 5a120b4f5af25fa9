package limits

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// startRuntimeConfig writes doc to a file and starts the runtime
// configuration over it, checked every 20 ms.
func startRuntimeConfig(t *testing.T, o *Overrides, doc string) (file string, reg *prometheus.Registry, err error) {
	file = filepath.Join(t.TempDir(), "runtime.yaml")
	require.NoError(t, os.WriteFile(file, []byte(doc), 0o600))
	reg = prometheus.NewRegistry()
	m, err := NewRuntimeConfig(RuntimeConfig{File: file, ReloadPeriod: 20 * time.Millisecond}, o, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	if err := services.StartAndAwaitRunning(context.Background(), m); err != nil {
		return file, reg, err
	}
	t.Cleanup(func() { require.NoError(t, services.StopAndAwaitTerminated(context.Background(), m)) })
	return file, reg, nil
}

func TestRuntimeConfigOverridesTheConfigurationFile(t *testing.T) {
	var static map[string]yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(`
team-a: {ingestion_rate: 50, max_exemplars: 7}
team-b: {ingestion_rate: 60}
`), &static))
	d := defaults(t)
	o, err := NewOverrides(d, static)
	require.NoError(t, err)
	var changes atomic.Int32
	o.OnChange(func() { changes.Add(1) })

	file, reg, err := startRuntimeConfig(t, o, `
overrides:
  team-a: {ingestion_rate: 500}
  team-c: {out_of_order_time_window: 1h}
`)
	require.NoError(t, err)
	require.InDelta(t, 500.0, o.For("team-a").IngestionRate, 0, "the runtime file wins")
	require.Equal(t, 7, o.For("team-a").MaxExemplars, "fields it leaves out keep the configuration file's")
	require.InDelta(t, 60.0, o.For("team-b").IngestionRate, 0, "tenants it leaves out keep the configuration file's")
	require.Equal(t, model.Duration(time.Hour), o.For("team-c").OutOfOrderTimeWindow)
	require.Equal(t, d, *o.For("team-d"))
	require.EqualValues(t, 1, changes.Load())

	// A change is put in force; the listeners hear of it.
	require.NoError(t, os.WriteFile(file, []byte("overrides:\n  team-c: {out_of_order_time_window: 2h}\n"), 0o600))
	require.Eventually(t, func() bool { return o.For("team-c").OutOfOrderTimeWindow == model.Duration(2*time.Hour) }, 5*time.Second, 10*time.Millisecond)
	require.InDelta(t, 50.0, o.For("team-a").IngestionRate, 0, "an entry removed falls back to the configuration file")
	require.EqualValues(t, 2, changes.Load())

	// A bad file is refused whole: the last good one stays.
	for _, bad := range []string{
		"overrides:\n  team-c: {out_of_order_time_window: 3h}\n  team-e: {ingestion_rate: -1}\n",
		"overrides:\n  team-c: {out_of_order_time_widow: 3h}\n",
		"overridez: {}\n",
		"overrides: [\n",
	} {
		require.NoError(t, os.WriteFile(file, []byte(bad), 0o600))
		require.Eventually(t, func() bool { return gauge(t, reg, "isobar_runtime_config_last_reload_successful") == 0 }, 5*time.Second, 10*time.Millisecond, bad)
		require.Equal(t, model.Duration(2*time.Hour), o.For("team-c").OutOfOrderTimeWindow, bad)
		require.Equal(t, d, *o.For("team-e"), bad)
		// Good again: in force again.
		require.NoError(t, os.WriteFile(file, []byte("overrides:\n  team-c: {out_of_order_time_window: 4h}\n"), 0o600))
		require.Eventually(t, func() bool { return gauge(t, reg, "isobar_runtime_config_last_reload_successful") == 1 }, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, model.Duration(4*time.Hour), o.For("team-c").OutOfOrderTimeWindow)
		require.NoError(t, os.WriteFile(file, []byte("overrides:\n  team-c: {out_of_order_time_window: 2h}\n"), 0o600))
		require.Eventually(t, func() bool { return o.For("team-c").OutOfOrderTimeWindow == model.Duration(2*time.Hour) }, 5*time.Second, 10*time.Millisecond)
	}
}

func TestRuntimeConfigRefusesABadFileAtStart(t *testing.T) {
	o, err := NewOverrides(defaults(t), nil)
	require.NoError(t, err)
	_, _, err = startRuntimeConfig(t, o, "overrides:\n  team-a: {ingestion_burst_size: 0}\n")
	require.ErrorContains(t, err, `limits of tenant "team-a": ingestion burst size must be positive`)
}

// gauge reads the one series of a gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			require.Len(t, f.GetMetric(), 1)
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestRuntimeConfigPageAndMetricsShowTheLimitsInForce(t *testing.T) {
	d := defaults(t)
	o, err := NewOverrides(d, nil)
	require.NoError(t, err)
	_, _, err = startRuntimeConfig(t, o, "overrides:\n  team-a: {ingestion_rate: 500, out_of_order_time_window: 90s}\n")
	require.NoError(t, err)

	get := func(query string) (int, string) {
		w := httptest.NewRecorder()
		o.ServeHTTP(w, httptest.NewRequest("GET", "/runtime_config"+query, nil))
		return w.Code, w.Body.String()
	}
	code, body := get("?mode=diff")
	require.Equal(t, 200, code)
	require.YAMLEq(t, "overrides:\n  team-a: {ingestion_rate: 500, out_of_order_time_window: 1m30s}\n", body)

	code, body = get("")
	require.Equal(t, 200, code)
	var all struct {
		Defaults  Limits            `yaml:"defaults"`
		Overrides map[string]Limits `yaml:"overrides"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(body), &all))
	require.Equal(t, d, all.Defaults)
	want := d
	want.IngestionRate, want.OutOfOrderTimeWindow = 500, model.Duration(90*time.Second)
	require.Equal(t, map[string]Limits{"team-a": want}, all.Overrides)

	code, body = get("?mode=nonsense")
	require.Equal(t, 400, code)
	require.Contains(t, body, "use all or diff")

	reg := prometheus.NewRegistry()
	reg.MustRegister(o.Collector())
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			if got[f.GetName()] == nil {
				got[f.GetName()] = map[string]float64{}
			}
			got[f.GetName()][strings.TrimSpace(key)] = m.GetGauge().GetValue()
		}
	}
	// Every numeric limit of a tenant with overrides, its defaults too, so
	// that a dashboard can set any limit against its use.
	require.Len(t, got["isobar_limits_overrides"], len(got["isobar_limits_defaults"]))
	require.Greater(t, len(got["isobar_limits_defaults"]), 20)
	require.InDelta(t, 500.0, got["isobar_limits_overrides"]["limit=ingestion_rate tenant=team-a"], 0)
	require.InDelta(t, 90.0, got["isobar_limits_overrides"]["limit=out_of_order_time_window tenant=team-a"], 0)
	require.InDelta(t, float64(d.MaxExemplars), got["isobar_limits_overrides"]["limit=max_exemplars tenant=team-a"], 0)
	require.InDelta(t, d.IngestionRate, got["isobar_limits_defaults"]["limit=ingestion_rate"], 0)
	require.InDelta(t, 600.0, got["isobar_limits_defaults"]["limit=creation_grace_period"], 0)
}
