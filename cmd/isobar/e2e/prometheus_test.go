//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPrometheusRemoteWriteMatchesPrometheus lets a real Prometheus 2.42
// scrape itself and isobar and remote-write everything to isobar, then asks
// both the same PromQL at the same past times and requires the same answers.
//
// Boundaries. Prometheus 3 (isobar's engine) selects (t-range, t] where 2.42
// selects [t-range, t], so a sample exactly on t-range would be counted by
// one and not the other. Every sample in this test carries the timestamp of
// its scrape, and the test learns every scrape timestamp from the raw `up`
// samples. All evaluation times, range starts/ends and window edges are then
// placed on one millisecond-of-the-second offset that no scrape in the window
// uses (the one furthest from all of them; steps and ranges are whole
// seconds, so every boundary has that same offset). A fixed ".500" would
// usually work too, but scrapes are jittered and per-target offsets are
// hashed, so the test computes it instead of hoping.
//
// Lag. Remote write trails the scrapes by seconds. Before comparing
// queries the test polls until isobar holds exactly the raw samples
// Prometheus has over the whole window the queries read (every series,
// every timestamp, every value) and only then requires equal query results,
// once, without retries.
func TestPrometheusRemoteWriteMatchesPrometheus(t *testing.T) {
	prometheusBin(t) // fail fast when it is missing
	iso := startIsobar(t, t.TempDir())

	// Prometheus 2.42 with native histograms enabled asks for the protobuf
	// format and then ingests a histogram that has native buckets only as
	// native; it cannot keep the classic buckets too (scrape_classic_histograms
	// came in 2.45). To compare both forms, isobar's /metrics is also
	// scraped through this proxy, which asks for the text format, where
	// isobar_request_duration_seconds is a classic histogram.
	classic := httptest.NewServer(textFormatProxy(t, iso.URL))
	t.Cleanup(classic.Close)

	cfg := fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["%s"]}]
  - job_name: isobar
    static_configs: [{targets: ["%s"]}]
  - job_name: isobar_classic
    static_configs: [{targets: ["%s"]}]
remote_write:
  - url: %s/api/v1/push
    send_native_histograms: true
    queue_config: {batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 1s}
    metadata_config: {send: true, send_interval: 2s}
`, promAddrPlaceholder, hostPort(t, iso.URL), hostPort(t, classic.URL), iso.URL)
	prom := startPrometheus(t, cfg, "--enable-feature=native-histograms")
	pc, ic := apiClient{base: prom.URL}, apiClient{base: iso.URL}
	jobs := []string{"isobar", "isobar_classic", "prometheus"}

	// Let Prometheus scrape for ~30s: 15s of range queries over rates of 10s
	// windows, plus margins.
	const needScrapes = 33
	waitFor(t, 2*time.Minute, fmt.Sprintf("Prometheus to scrape every job %d times", needScrapes), func() error {
		r, err := pc.queryE("count_over_time(up[2m])", time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if len(r.Series) != len(jobs) {
			return fmt.Errorf("want %d targets, have %d", len(jobs), len(r.Series))
		}
		for _, s := range r.Series {
			if s.Points[0].F < needScrapes {
				return fmt.Errorf("job %s scraped %v times", s.Metric["job"], s.Points[0].F)
			}
		}
		return nil
	})

	// Every scrape timestamp, from which the evaluation times are chosen.
	up := pc.query(t, "up[2m]", time.Now().UnixMilli())
	require.Len(t, up.Series, len(jobs))
	var firstCommon, lastCommon int64 = math.MinInt64, math.MaxInt64
	var scrapeTimes []int64
	for _, s := range up.Series {
		require.NotEmpty(t, s.Points)
		firstCommon = max(firstCommon, s.Points[0].T)
		lastCommon = min(lastCommon, s.Points[len(s.Points)-1].T)
		healthy := 0
		for _, p := range s.Points {
			scrapeTimes = append(scrapeTimes, p.T)
			if p.F == 1 {
				healthy++
			}
		}
		// A scrape may time out on a loaded machine; both servers then hold
		// the same up=0, so only a target that mostly fails is an error.
		require.Greater(t, healthy, len(s.Points)*3/4, "target %v is mostly down", s.Metric)
	}
	frac, dist := pickFraction(scrapeTimes)
	require.Positive(t, dist, "every millisecond of the second holds a scrape; cannot avoid boundaries")

	// evalEnd is before the latest scrape of every target, so Prometheus
	// holds everything at or before it.
	evalEnd := (lastCommon/1000-1)*1000 + frac
	rangeStart := evalEnd - 15_000
	const rateWindow = 10_000
	require.GreaterOrEqual(t, rangeStart-rateWindow, firstCommon,
		"not enough data before the first evaluation time: scrapes from %s, range from %s", fmtTime(firstCommon), fmtTime(rangeStart))
	instantTimes := []int64{rangeStart, evalEnd - 7_000, evalEnd}
	t.Logf("scrapes from %s to %s; boundaries at .%03d (nearest scrape %dms away); range [%s, %s]",
		fmtTime(firstCommon), fmtTime(lastCommon), frac, dist, fmtTime(rangeStart), fmtTime(evalEnd))

	// Wait until isobar holds exactly the raw samples Prometheus has over
	// everything the queries below read.
	rawWindow := (evalEnd-(rangeStart-rateWindow))/1000 + 2
	rawQ := fmt.Sprintf(`{__name__=~".+"}[%ds]`, rawWindow)
	promRaw := pc.query(t, rawQ, evalEnd)
	require.Greater(t, len(promRaw.Series), 300, "Prometheus should hold hundreds of series")
	histPoints := 0
	for _, s := range promRaw.Series {
		for _, p := range s.Points {
			require.NotEqual(t, frac, p.T%1000, "sample of %v at %s sits on the chosen boundary offset", s.Metric, fmtTime(p.T))
			if p.H != nil {
				histPoints++
			}
		}
	}
	require.Positive(t, histPoints, "Prometheus scraped no native histogram samples")
	start := time.Now()
	waitFor(t, 45*time.Second, "isobar to hold exactly Prometheus' raw samples of the window", func() error {
		got, err := ic.queryE(rawQ, evalEnd)
		if err != nil {
			return err
		}
		if d := diffResults(promRaw, got, 0); d != "" {
			return fmt.Errorf("%s differs (want %d series, %d samples; got %d series, %d samples):\n%s",
				rawQ, len(promRaw.Series), promRaw.numPoints(), len(got.Series), got.numPoints(), d)
		}
		return nil
	})
	t.Logf("isobar caught up %s after the window closed: %d series, %d samples (%d native histograms) identical",
		time.Since(start).Round(time.Millisecond), len(promRaw.Series), promRaw.numPoints(), histPoints)

	const relTol = 1e-9
	queries := []struct {
		name, q string
		series  int // exact number of series Prometheus must answer with; -1: at least one
	}{
		{"up", `up`, 3},
		{"http_rate_by_job", `sum by (job)(rate(prometheus_http_requests_total[10s]))`, 1},
		{"classic_histogram_quantile", `histogram_quantile(0.9, sum by (le)(rate(isobar_request_duration_seconds_bucket[10s])))`, 1},
		{"classic_histogram_quantile_by_route", `histogram_quantile(0.5, sum by (le, route)(rate(isobar_request_duration_seconds_bucket{job="isobar_classic"}[10s])))`, -1},
		{"count_by_job", `count by (job)({__name__=~".+"})`, 3},
		{"head_samples_rate", `rate(prometheus_tsdb_head_samples_appended_total[10s])`, -1},
		{"native_histogram_rate", `sum(rate(isobar_request_duration_seconds[10s]))`, 1},
		{"native_histogram_count", `histogram_count(sum(rate(isobar_request_duration_seconds[10s])))`, 1},
		{"native_histogram_sum", `histogram_sum(sum by (route)(rate(isobar_request_duration_seconds[10s])))`, -1},
		{"increase_over_window", `increase(prometheus_http_requests_total{handler="/metrics"}[10s])`, 1},
		{"scalar_arith", `scalar(sum(up)) * 2`, 1},
	}
	for _, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			checkCount := func(r result, what string) {
				if q.series < 0 {
					require.NotEmpty(t, r.Series, "Prometheus: empty result for %s %s", what, q.q)
				} else {
					require.Len(t, r.Series, q.series, "Prometheus: %s %s", what, q.q)
				}
			}
			for _, ts := range instantTimes {
				want := pc.query(t, q.q, ts)
				checkCount(want, "instant query at "+fmtTime(ts))
				got := ic.query(t, q.q, ts)
				require.Empty(t, diffResults(want, got, relTol), "instant query %s at %s: isobar (got) differs from Prometheus (want)", q.q, fmtTime(ts))
			}
			for _, step := range []time.Duration{time.Second, 2 * time.Second} {
				want := pc.queryRange(t, q.q, rangeStart, evalEnd, step)
				checkCount(want, "range query step "+step.String())
				require.Positive(t, want.numPoints())
				got := ic.queryRange(t, q.q, rangeStart, evalEnd, step)
				require.Empty(t, diffResults(want, got, relTol), "range query %s [%s, %s] step %s: isobar (got) differs from Prometheus (want)",
					q.q, fmtTime(rangeStart), fmtTime(evalEnd), step)
			}
		})
	}

	// histogram_quantile over native histograms: Prometheus 3 (isobar's
	// engine) interpolates exponentially inside an exponential bucket where
	// 2.42 interpolated linearly, and walks the buckets down from the top
	// for q >= 0.5 where 2.42 walked up, so at a rank that falls between two
	// populated buckets the two pick different edges of the gap. The
	// histograms they interpolate in are required identical above; here
	// each answer must be a q-quantile of Prometheus' histogram under its
	// own interpolation: the histogram's cumulative count at the answer
	// equals q times its count. That holds for every edge convention and
	// every scrape timing, and fails for any other value.
	t.Run("native_histogram_quantile", func(t *testing.T) {
		const hq = `sum(rate(isobar_request_duration_seconds[10s]))`
		const qq = `histogram_quantile(0.9, ` + hq + `)`
		check := func(what string, want, got, hists result) {
			require.Len(t, want.Series, 1, "%s: Prometheus %s", what, qq)
			require.Len(t, got.Series, 1, "%s: isobar %s", what, qq)
			require.Len(t, hists.Series, 1, "%s: Prometheus %s", what, hq)
			wp, gp, hp := want.Series[0].Points, got.Series[0].Points, hists.Series[0].Points
			require.Equal(t, len(wp), len(gp), "%s: number of points", what)
			require.Equal(t, len(wp), len(hp), "%s: number of histogram points", what)
			finite := 0
			for i := range wp {
				require.Equal(t, wp[i].T, gp[i].T, "%s: point %d", what, i)
				require.Equal(t, wp[i].T, hp[i].T, "%s: point %d", what, i)
				require.NotNil(t, hp[i].H)
				if math.IsNaN(wp[i].F) {
					require.True(t, math.IsNaN(gp[i].F), "%s at %s: Prometheus 2.42 NaN, isobar %v", what, fmtTime(wp[i].T), gp[i].F)
					continue
				}
				require.True(t, isQuantile(hp[i].H, 0.9, wp[i].F, false),
					"%s at %s: Prometheus 2.42's %v is no 0.9-quantile (linear) of %+v", what, fmtTime(wp[i].T), wp[i].F, *hp[i].H)
				require.True(t, isQuantile(hp[i].H, 0.9, gp[i].F, true),
					"%s at %s: isobar's %v is no 0.9-quantile (exponential) of %+v; Prometheus 2.42 (linear) answered %v", what, fmtTime(wp[i].T), gp[i].F, *hp[i].H, wp[i].F)
				finite++
			}
			require.Positive(t, finite, "%s: every quantile is NaN", what)
		}
		for _, ts := range instantTimes {
			check("instant query at "+fmtTime(ts), pc.query(t, qq, ts), ic.query(t, qq, ts), pc.query(t, hq, ts))
		}
		check("range query", pc.queryRange(t, qq, rangeStart, evalEnd, time.Second), ic.queryRange(t, qq, rangeStart, evalEnd, time.Second),
			pc.queryRange(t, hq, rangeStart, evalEnd, time.Second))
	})

	// The series endpoint, bounded to the compared window: only series with
	// samples in it, which isobar is known to hold.
	t.Run("series", func(t *testing.T) {
		window := url.Values{"start": {fmtTime(rangeStart - rateWindow)}, "end": {fmtTime(evalEnd)}}
		for _, m := range []string{
			`up`,
			`{__name__=~"isobar_request_duration_seconds.*", route="GET /metrics"}`,
			`{job=~".+"}`,
		} {
			want := pc.seriesSetWith(t, window, m)
			require.NotEmpty(t, want, "Prometheus: series %s", m)
			require.Equal(t, want, ic.seriesSetWith(t, window, m), "series %s", m)
		}
		require.Len(t, pc.seriesSet(t, "up"), len(jobs))
		require.Equal(t, pc.seriesSet(t, "up"), ic.seriesSet(t, "up"))
	})

	// Label names and values are not bounded by time on the head. Every
	// query above creates series in Prometheus' own metrics (new handler
	// label values) that isobar receives a moment later, so these compare
	// the whole head and poll briefly for such stragglers. The names and
	// values compared here are static once every job was scraped.
	// The scraped isobar keeps creating series (a histogram's first
	// observation, a new route): Prometheus' answer is read again on each
	// try, after isobar's, so that a name isobar got through remote write
	// is in it too.
	eventually := func(t *testing.T, what string, wantOf, get func() []string) {
		t.Helper()
		waitFor(t, 15*time.Second, what+" of isobar to equal Prometheus'", func() error {
			got := get()
			if want := wantOf(); !slices.Equal(want, got) {
				return fmt.Errorf("want %q,\ngot %q", want, got)
			}
			return nil
		})
	}
	t.Run("label_values", func(t *testing.T) {
		require.Equal(t, jobs, pc.labelValues(t, "job"))
		require.Equal(t, jobs, ic.labelValues(t, "job"))
		want := pc.labelValues(t, "__name__")
		require.Greater(t, len(want), 100)
		require.Contains(t, want, "isobar_request_duration_seconds_bucket")
		eventually(t, "metric names", func() []string { return pc.labelValues(t, "__name__") }, func() []string { return ic.labelValues(t, "__name__") })
	})

	t.Run("label_names", func(t *testing.T) {
		want := pc.labelNames(t)
		require.Contains(t, want, "le")
		require.Contains(t, want, "route")
		eventually(t, "label names", func() []string { return pc.labelNames(t) }, func() []string { return ic.labelNames(t) })
	})

	t.Run("metadata", func(t *testing.T) {
		want := pc.metadata(t, "prometheus_http_requests_total")
		require.Equal(t, map[string][]metadataEntry{
			"prometheus_http_requests_total": {{Type: "counter", Help: "Counter of HTTP requests.", Unit: ""}},
		}, want, "Prometheus' own metadata")
		// Metadata is sent every 2s; it has been sent many times by now.
		var got map[string][]metadataEntry
		waitFor(t, 10*time.Second, "isobar to serve the metadata Prometheus sent", func() error {
			got = ic.metadata(t, "prometheus_http_requests_total")
			if !slices.ContainsFunc(got["prometheus_http_requests_total"], func(e metadataEntry) bool { return e.Type == "counter" }) {
				return fmt.Errorf("no counter metadata for prometheus_http_requests_total: %q", got)
			}
			return nil
		})
		require.Equal(t, want, got, "isobar's metadata for prometheus_http_requests_total")

		// All families: the same set as Prometheus' targets report. A family
		// that appeared in a scrape just now (a metric made at the first
		// query of its kind) reaches isobar with the next metadata send,
		// 2s later: compare until they agree.
		var diffs []string
		var wantAll map[string][]metadataEntry
		waitFor(t, 15*time.Second, "isobar's metadata to equal Prometheus'", func() error {
			var gotAll map[string][]metadataEntry
			wantAll, gotAll = pc.metadata(t, ""), ic.metadata(t, "")
			diffs = diffs[:0]
			for name, w := range wantAll {
				if g := sortedMeta(gotAll[name]); !slices.Equal(sortedMeta(w), g) {
					diffs = append(diffs, fmt.Sprintf("%s: want %q, got %q", name, sortedMeta(w), g))
				}
			}
			for name, g := range gotAll {
				if _, ok := wantAll[name]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s: unexpected %q", name, g))
				}
			}
			if len(diffs) > 0 {
				sort.Strings(diffs)
				return fmt.Errorf("%d of %d families differ: %s", len(diffs), len(wantAll), strings.Join(diffs, "; "))
			}
			return nil
		})
		require.Greater(t, len(wantAll), 100)
		require.Empty(t, diffs, "isobar /api/v1/metadata differs from Prometheus' for %d of %d families", len(diffs), len(wantAll))
	})
}

// pickFraction returns the millisecond-of-the-second offset furthest (on
// the circle of 1000ms) from the offsets of all the given timestamps,
// preferring 500 among equals, and that distance.
func pickFraction(timestamps []int64) (frac, dist int64) {
	var used [1000]bool
	for _, ts := range timestamps {
		used[((ts%1000)+1000)%1000] = true
	}
	frac, dist = -1, -1
	for cand := int64(0); cand < 1000; cand++ {
		d := int64(1000)
		for off := int64(0); off < 1000; off++ {
			if used[off] {
				diff := (cand - off + 1000) % 1000
				d = min(d, diff, 1000-diff)
			}
		}
		if d > dist || (d == dist && abs64(cand-500) < abs64(frac-500)) {
			frac, dist = cand, d
		}
	}
	return frac, dist
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// isQuantile reports whether x is a q-quantile of h: whether h's
// cumulative count at x, interpolated inside x's bucket (exponentially in
// an exponential bucket that does not touch zero when exponential is set,
// else linearly), is q times its count. Buckets the API leaves out hold
// nothing, so anywhere in a gap between populated buckets the cumulative
// count is that of the buckets below. The rank is taken both from the
// bottom and, as Prometheus 3 does for q >= 0.5, from the top (they differ
// when float rounding left the bucket sum a little off the count). The
// zero bucket is taken both whole and, as Prometheus 3 does when no bucket
// is negative, from zero up.
func isQuantile(h *nativeHistogram, q, x float64, exponential bool) bool {
	for _, zeroFromZero := range []bool{false, true} {
		below, sum := 0.0, 0.0
		for _, b := range h.Buckets {
			sum += b.Count
			lower := b.Lower
			if zeroFromZero && lower < 0 && b.Upper > 0 {
				lower = 0
			}
			switch {
			case b.Upper <= x:
				below += b.Count
			case lower < x:
				f := (x - lower) / (b.Upper - lower)
				if exponential && lower > 0 {
					f = math.Log(x/lower) / math.Log(b.Upper/lower)
				} else if exponential && b.Upper < 0 {
					f = 1 - math.Log(x/b.Upper)/math.Log(lower/b.Upper)
				}
				below += f * b.Count
			}
		}
		tol := 1e-6 * math.Max(h.Count, sum)
		if math.Abs(below-q*h.Count) <= tol || math.Abs(below-(sum-(1-q)*h.Count)) <= tol {
			return true
		}
	}
	return false
}

func sortedMeta(ms []metadataEntry) []metadataEntry {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b metadataEntry) int {
		return strings.Compare(a.Type+"\x00"+a.Help+"\x00"+a.Unit, b.Type+"\x00"+b.Help+"\x00"+b.Unit)
	})
	return out
}

// textFormatProxy forwards to target asking for the text exposition format.
func textFormatProxy(t *testing.T, target string) http.Handler {
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.Header.Set("Accept", "text/plain;version=0.0.4")
	}
	return rp
}

func hostPort(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	return u.Host
}
