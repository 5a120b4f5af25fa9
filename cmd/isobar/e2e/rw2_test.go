//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRemoteWrite2FromPrometheus3: a Prometheus 3 scrapes isobar's own
// metrics, classic and native histograms, and remote-writes them with 2.0
// to isobar and to another Prometheus 3, the reference receiver. Both hold
// the same raw data, and the sender counts no failed sample: it checks the
// written-count headers of every answer.
func TestRemoteWrite2FromPrometheus3(t *testing.T) {
	bin := prometheus3Bin(t)
	iso := startIsobar(t, t.TempDir())
	ref := startPrometheusBin(t, bin, "global: {}\n", "--web.enable-remote-write-receiver")
	sender := startPrometheusBin(t, bin, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: iso
    scrape_native_histograms: true
    static_configs: [{targets: ["%s"]}]
remote_write:
  - name: isobar
    url: %s/api/v1/push
    protobuf_message: io.prometheus.write.v2.Request
    send_native_histograms: true
    queue_config: {batch_send_deadline: 500ms, min_backoff: 50ms, max_backoff: 500ms}
  - name: reference
    url: %s/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
    send_native_histograms: true
    queue_config: {batch_send_deadline: 500ms, min_backoff: 50ms, max_backoff: 500ms}
`, hostPort(t, iso.URL), iso.URL, ref.URL))

	// A window of ~10 scrapes that both receivers hold whole: it ends 2s
	// before the newest sample each of them has.
	start := time.Now()
	time.Sleep(12 * time.Second)
	end := time.Now().Add(-2 * time.Second).Truncate(time.Second)
	for _, c := range []apiClient{{base: iso.URL}, {base: ref.URL}} {
		waitFor(t, 30*time.Second, "samples after the window in "+c.base, func() error {
			res, err := c.queryE(`timestamp(up{job="iso"})`, time.Now().UnixMilli())
			if err != nil {
				return err
			}
			if len(res.Series) != 1 || int64(res.Series[0].Points[0].F*1000) <= end.UnixMilli()+1000 {
				return errors.New("not yet")
			}
			return nil
		})
	}
	window := fmt.Sprintf(`{job="iso"}[%ds]`, int(end.Sub(start).Seconds())+1)
	got := rawSamples(t, apiClient{base: iso.URL}, window, end)
	want := rawSamples(t, apiClient{base: ref.URL}, window, end)
	require.Greater(t, len(want), 50, "series scraped")
	histograms := 0
	for _, s := range want {
		if strings.Contains(s, "H=") {
			histograms++
		}
	}
	require.Positive(t, histograms, "native histograms among them")
	t.Logf("%d series, %d of them native histograms, over %s", len(want), histograms, window)
	require.Equal(t, want, got, "isobar holds what the reference Prometheus holds")

	// The sender failed nothing, to either receiver: a 2xx whose headers
	// said nothing was written would have counted as failed.
	_, metrics, err := httpGet(sender.URL+"/metrics", nil)
	require.NoError(t, err)
	sent := 0.0
	for _, line := range strings.Split(metrics, "\n") {
		if m := regexp.MustCompile(`^prometheus_remote_storage_samples_failed_total\{.*\} (\S+)$`).FindStringSubmatch(line); m != nil {
			require.Equal(t, "0", m[1], line)
		}
		if m := regexp.MustCompile(`^prometheus_remote_storage_samples_total\{.*remote_name="isobar".*\} (\S+)$`).FindStringSubmatch(line); m != nil {
			sent, err = strconv.ParseFloat(m[1], 64)
			require.NoError(t, err)
		}
	}
	require.Positive(t, sent)
	_, isoMetrics, err := httpGet(iso.URL+"/metrics", nil)
	require.NoError(t, err)
	require.Regexp(t, `isobar_distributor_push_requests_total\{cause="",code="2xx",protocol="remote_write_2.0"\} [1-9]`, isoMetrics, "the sender spoke 2.0")
	require.NotContains(t, isoMetrics, `protocol="remote_write_1.0"`)
}

// rawSamples returns the raw samples of a range selector at t, one line a
// series, sorted.
func rawSamples(t *testing.T, c apiClient, selector string, at time.Time) []string {
	t.Helper()
	res := c.query(t, selector, at.UnixMilli())
	var out []string
	for _, s := range res.Series {
		names := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			names = append(names, k+"="+v)
		}
		sort.Strings(names)
		var b strings.Builder
		b.WriteString(strings.Join(names, ","))
		for _, p := range s.Points {
			if p.H != nil {
				fmt.Fprintf(&b, " %d:H=%+v", p.T, *p.H)
			} else {
				fmt.Fprintf(&b, " %d:%v", p.T, p.F)
			}
		}
		out = append(out, b.String())
	}
	sort.Strings(out)
	return out
}
