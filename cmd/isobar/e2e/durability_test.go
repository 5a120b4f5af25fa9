//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestCrashLosesNoAcknowledgedSample kills isobar with SIGKILL while a
// writer pushes as fast as it can, restarts it on the same data dir and
// requires every sample that was acknowledged with a 2xx to be there with
// its value, and nothing that was never sent.
func TestCrashLosesNoAcknowledgedSample(t *testing.T) {
	const (
		nSeries   = 50
		writeFor  = 3 * time.Second
		minAcked  = 100 // requests; fewer means the writer barely ran
		metric    = "e2e_crash_samples"
		maxInWait = 15 * time.Second
	)
	iso := startIsobar(t, t.TempDir())

	// Request k carries, for every series i, one sample at base+k ms with
	// value value(k, i): timestamps strictly increase per series and stay
	// in the past (base is 30 minutes ago; k stays far below 30 minutes).
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Second).UnixMilli()
	value := func(k, i int) float64 { return float64(k)*1000 + float64(i) + 0.25 }
	names := make([]string, nSeries)
	for i := range names {
		names[i] = fmt.Sprintf("s%03d", i)
	}
	request := func(k int) []byte {
		req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, nSeries)}
		for i := range nSeries {
			req.Timeseries[i] = series([]string{"__name__", metric, "series", names[i]}, sample(base+int64(k), value(k, i)))
		}
		return encodeWrite(req)
	}

	// The writer runs until a push fails (the kill); acked[k] says whether
	// request k got a 2xx. Only the writer writes them until writerDone.
	var (
		acked      []bool
		ackedCount atomic.Int64
		inFlight   = -1 // the request that failed
		writerErr  error
		badStatus  []string
		writerDone = make(chan struct{})
	)
	// Its own client: a short timeout so the writer ends soon after the kill.
	wc := &http.Client{Timeout: 10 * time.Second}
	url := iso.URL + "/api/v1/push"
	go func() {
		defer close(writerDone)
		deadline := time.Now().Add(time.Minute) // a bound in case the kill never comes
		for k := 0; time.Now().Before(deadline); k++ {
			code, body, err := postRaw(wc, url, request(k), rwHeaders(""))
			if err != nil {
				inFlight, writerErr = k, err
				acked = append(acked, false)
				return
			}
			ok := code/100 == 2
			acked = append(acked, ok)
			if ok {
				ackedCount.Add(1)
			} else if len(badStatus) < 5 {
				badStatus = append(badStatus, fmt.Sprintf("request %d: %d %s", k, code, body))
			}
		}
	}()

	// Let it push for writeFor, then kill isobar while it still pushes.
	start := time.Now()
	waitFor(t, maxInWait, fmt.Sprintf("the writer to push for %s and have %d requests acknowledged", writeFor, minAcked), func() error {
		select {
		case <-writerDone:
			t.Fatalf("the writer stopped before the kill: %v", writerErr)
		default:
		}
		if n := ackedCount.Load(); time.Since(start) < writeFor || n < minAcked {
			return fmt.Errorf("%d requests acknowledged after %s", n, time.Since(start).Round(time.Millisecond))
		}
		return nil
	})
	pid := iso.PID()
	ackedBeforeKill := ackedCount.Load()
	iso.Kill9()
	select {
	case <-writerDone:
	case <-time.After(maxInWait):
		t.Fatalf("the writer did not stop within %s of the kill", maxInWait)
	}
	require.Empty(t, badStatus, "pushes answered with a status other than 2xx before the kill")
	require.Error(t, writerErr, "the writer must have been stopped by the kill")
	require.GreaterOrEqual(t, inFlight, 0)
	nAcked := 0
	for _, ok := range acked {
		if ok {
			nAcked++
		}
	}
	t.Logf("killed pid %d with SIGKILL after %s; %d requests (%d samples) acknowledged (%d just before the signal); request %d was in flight: %v",
		pid, time.Since(start).Round(time.Millisecond), nAcked, nAcked*nSeries, ackedBeforeKill, inFlight, writerErr)

	iso.Restart()
	ac := apiClient{base: iso.URL}
	evalAt := time.Now().UnixMilli()
	found := 0
	for i := range nSeries {
		q := fmt.Sprintf(`%s{series=%q}[1h]`, metric, names[i])
		r := ac.query(t, q, evalAt)
		require.Len(t, r.Series, 1, "series %s after the restart", names[i])
		pts := r.Series[0].Points
		got := make(map[int]float64, len(pts))
		for _, p := range pts {
			k := int(p.T - base)
			require.True(t, k >= 0 && k < len(acked), "series %s has a sample at %s that was never sent", names[i], fmtTime(p.T))
			require.Equal(t, value(k, i), p.F, "series %s at %s: value", names[i], fmtTime(p.T))
			got[k] = p.F
		}
		for k, ok := range acked {
			if ok {
				_, present := got[k]
				require.True(t, present, "series %s lost the acknowledged sample of request %d (at %s) in the crash", names[i], k, fmtTime(base+int64(k)))
				found++
			} else {
				// Only the request in flight at the kill may or may not be there.
				require.Equal(t, inFlight, k, "request %d was not acknowledged", k)
			}
		}
	}
	t.Logf("all %d acknowledged samples found with their values after the restart", found)
	require.Equal(t, nAcked*nSeries, found)
}

// TestGracefulShutdownKeepsData pushes floats and native histograms, stops
// isobar with SIGTERM, requires a clean exit, and finds everything again
// after a restart.
func TestGracefulShutdownKeepsData(t *testing.T) {
	const (
		nSeries  = 20
		nSamples = 60
		metric   = "e2e_graceful_samples"
	)
	iso := startIsobar(t, t.TempDir())
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second).UnixMilli()
	value := func(i, j int) float64 { return float64(i)*1e6 + float64(j)*0.5 }
	// Histogram j: zero bucket 1, buckets (0.5,1] 4+j and (1,2] 3+j.
	mkHist := func(j int) *histogram.Histogram {
		return &histogram.Histogram{
			Count: uint64(1 + (4 + j) + (3 + j)), ZeroCount: 1, ZeroThreshold: 0.001, Sum: 100.5 + float64(j), Schema: 0,
			PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
			PositiveBuckets: []int64{int64(4 + j), -1}, // deltas
		}
	}
	// Push one request per timestamp, as a sender would.
	for j := range nSamples {
		req := &prompb.WriteRequest{}
		ts := base + int64(j)*1000
		for i := range nSeries {
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", metric, "series", fmt.Sprintf("s%02d", i)}, sample(ts, value(i, j))))
		}
		hs := series([]string{"__name__", "e2e_graceful_histogram"})
		hs.Histograms = []prompb.Histogram{prompb.FromIntHistogram(ts, mkHist(j))}
		req.Timeseries = append(req.Timeseries, hs)
		mustPush(t, iso.URL, "", req)
	}

	// Before the stop, the data is there.
	checkData := func(when string) {
		t.Helper()
		ac := apiClient{base: iso.URL}
		evalAt := base + nSamples*1000
		r := ac.query(t, metric+"[1h]", evalAt)
		require.Len(t, r.Series, nSeries, "%s: series", when)
		for _, s := range r.Series {
			var i int
			_, err := fmt.Sscanf(s.Metric["series"], "s%02d", &i)
			require.NoError(t, err)
			require.Len(t, s.Points, nSamples, "%s: samples of %v", when, s.Metric)
			for j, p := range s.Points {
				require.Equal(t, base+int64(j)*1000, p.T, "%s: %v", when, s.Metric)
				require.Equal(t, value(i, j), p.F, "%s: %v at %s", when, s.Metric, fmtTime(p.T))
			}
		}
		r = ac.query(t, "e2e_graceful_histogram[1h]", evalAt)
		require.Len(t, r.Series, 1, "%s: histogram series", when)
		require.Len(t, r.Series[0].Points, nSamples, "%s: histogram samples", when)
		for j, p := range r.Series[0].Points {
			h := mkHist(j)
			require.NotNil(t, p.H, "%s: sample %d is not a histogram", when, j)
			require.Equal(t, float64(h.Count), p.H.Count, "%s: histogram %d count", when, j)
			require.Equal(t, h.Sum, p.H.Sum, "%s: histogram %d sum", when, j)
			require.Len(t, p.H.Buckets, 3, "%s: histogram %d buckets (zero bucket and two positive)", when, j)
			require.Equal(t, nativeBucket{Boundaries: 3, Lower: -0.001, Upper: 0.001, Count: 1}, p.H.Buckets[0], "%s: zero bucket %d", when, j)
			require.Equal(t, nativeBucket{Boundaries: 0, Lower: 0.5, Upper: 1, Count: float64(4 + j)}, p.H.Buckets[1], "%s: bucket (0.5,1] of %d", when, j)
			require.Equal(t, nativeBucket{Boundaries: 0, Lower: 1, Upper: 2, Count: float64(3 + j)}, p.H.Buckets[2], "%s: bucket (1,2] of %d", when, j)
		}
	}
	checkData("before the stop")

	code := iso.Stop()
	require.Equal(t, 0, code, "exit code after SIGTERM")
	out := iso.currentLog()
	require.NotEmpty(t, logLines(out, `msg="shutting down"`), "no shutting-down line in the log")
	require.NotEmpty(t, logLines(out, "msg=stopped"), "no msg=stopped line in the log")
	require.NotEmpty(t, logLines(out, `msg="tenant closed"`, "tenant=anonymous"), "the tenant's TSDB was not closed")
	require.Empty(t, logLines(out, "level=ERROR"), "errors logged during the shutdown")

	iso.Restart()
	checkData("after the restart")

	// And it takes new samples after the restart.
	next := base + nSamples*1000
	mustPush(t, iso.URL, "", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series([]string{"__name__", metric, "series", "s00"}, sample(next, 42)),
	}})
	r := apiClient{base: iso.URL}.query(t, metric+`{series="s00"}`, next)
	require.Len(t, r.Series, 1)
	require.Equal(t, point{T: next, F: 42}, r.Series[0].Points[0])
}
