//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestRuntimeConfigChangesLimitsWithoutRestart: limits in the runtime
// configuration file take effect for tenants already writing (the rate
// limit, the out-of-order window), other tenants keep theirs, a bad file is
// refused with the last good one kept, and the page and metrics show what
// is in force.
func TestRuntimeConfigChangesLimitsWithoutRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "runtime.yaml")
	write := func(doc string) { require.NoError(t, os.WriteFile(file, []byte(doc), 0o600)) }
	write("overrides:\n  team-a: {ingestion_rate: 1000000}\n")
	iso := startIsobar(t, t.TempDir(), "-auth.multitenancy-enabled=true", "-runtime-config.file="+file, "-runtime-config.reload-period=100ms")

	now := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	batch := func(name string, ts int64, n int) *prompb.WriteRequest {
		req := &prompb.WriteRequest{}
		for i := range n {
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", name, "i", fmt.Sprint(i)}, sample(ts, float64(i))))
		}
		return req
	}
	for _, id := range []string{"team-a", "team-b"} {
		mustPush(t, iso.URL, id, batch("e2e_runtime", now, 100))
	}
	waitInForce := func(want string) {
		waitFor(t, 10*time.Second, "the runtime configuration to be in force", func() error {
			code, body, err := httpGet(iso.URL+"/runtime_config?mode=diff", nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK || !strings.Contains(body, want) {
				return fmt.Errorf("%d: %s", code, body)
			}
			return nil
		})
	}

	write("overrides:\n  team-a: {ingestion_rate: 10, ingestion_burst_size: 10, out_of_order_time_window: 1h}\n")
	waitInForce("ingestion_burst_size: 10")
	code, body, err := push(iso.URL, "team-a", batch("e2e_runtime", now+15_000, 100))
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, code, body)
	require.Contains(t, body, "ingestion rate limit of 10 samples/s with burst 10")
	mustPush(t, iso.URL, "team-b", batch("e2e_runtime", now+15_000, 100))

	// The window opened for team-a only.
	older := now - 10*60_000
	mustPush(t, iso.URL, "team-a", batch("e2e_runtime", older, 1))
	code, body, err = push(iso.URL, "team-b", batch("e2e_runtime", older, 1))
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, code, body)
	res := apiClient{base: iso.URL, tenant: "team-a"}.query(t, `e2e_runtime{i="0"}`, older)
	require.Len(t, res.Series, 1, "the out-of-order sample is stored")

	// A bad file: refused whole, counted, logged; the last good one stays.
	write("overrides:\n  team-a: {ingestion_rate: 1000000}\n  team-c: {ingestion_rate: -5}\n")
	waitFor(t, 10*time.Second, "the bad file to be refused", func() error {
		_, metrics, err := httpGet(iso.URL+"/metrics", nil)
		if err != nil {
			return err
		}
		if !strings.Contains(metrics, `isobar_runtime_config_last_reload_successful{config="runtime-config"} 0`) {
			return errors.New("isobar_runtime_config_last_reload_successful is not 0")
		}
		return nil
	})
	require.NotEmpty(t, logLines(iso.currentLog(), `limits of tenant \"team-c\": ingestion rate limit must be positive, is -5`))
	code, body, err = push(iso.URL, "team-a", batch("e2e_runtime", now+30_000, 100))
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, code, "the last good file is in force: %s", body)
	_, metrics, err := httpGet(iso.URL+"/metrics", nil)
	require.NoError(t, err)
	require.Contains(t, metrics, `isobar_limits_overrides{limit="ingestion_rate",tenant="team-a"} 10`)
	require.Contains(t, metrics, `isobar_limits_overrides{limit="out_of_order_time_window",tenant="team-a"} 3600`)

	// Fixed: in force, and team-a writes at full speed again.
	write("overrides:\n  team-a: {ingestion_rate: 500000}\n")
	waitInForce("ingestion_rate: 500000")
	mustPush(t, iso.URL, "team-a", batch("e2e_runtime", now+30_000, 100))
}
