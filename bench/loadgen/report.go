package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// WriteSummary writes a human-readable summary of r to w.
func (r *Result) WriteSummary(w io.Writer) error {
	p := &printer{w: w}
	p.printf("target       %s\n", r.URL)
	p.printf("workload     %d series (%s), seed %d, built in %.2fs\n",
		r.Series, formatCounts(r.SeriesByJob), r.Seed, r.GeneratorBuildSeconds)
	limit := "full speed"
	if r.SamplesPerSecondLimit > 0 {
		limit = fmt.Sprintf("%.0f samples/s", r.SamplesPerSecondLimit)
	}
	p.printf("sending      batch %d, concurrency %d, interval %s, lookback %s, %s\n",
		r.Batch, r.Concurrency, seconds(r.IntervalSeconds), seconds(r.LookbackSeconds), limit)
	if r.FirstTimestamp != 0 {
		p.printf("timestamps   %s .. %s\n", formatMillis(r.FirstTimestamp), formatMillis(r.LastTimestamp))
	}
	if r.Metadata != nil {
		p.printf("metadata     %d families: %s\n", r.Metadata.Families, r.Metadata.Status)
	}
	p.phase("warmup", &r.Warmup)
	p.phase("steady", &r.Steady)
	p.printf("total        %d samples accepted, %d failed\n", r.TotalSamplesAccepted, r.TotalSamplesFailed)
	if s := r.Server; s != nil {
		p.printf("server pid %d (/proc, %d ticks/s)\n", s.PID, s.ClockTicks)
		p.printf("  steady     %.2f CPU-s (%.2f cores), %.3f CPU-s per million samples\n",
			s.SteadyCPUSeconds, s.SteadyCores, s.CPUSecondsPerMillionSamples)
		p.printf("  creation   %.2f CPU-s, %.1f µs per new series (%.1f µs net of sample cost)\n",
			s.WarmupCPUSeconds, s.CreationMicrosPerSeries, s.CreationMicrosPerSeriesNet)
		p.printf("  rss        %s at start, %s after warmup, %s at end: %.0f B per active series (%.0f B growth)\n",
			mib(s.RSSBytesStart), mib(s.RSSBytesAfterWarmup), mib(s.RSSBytesEnd),
			s.RSSBytesPerSeries, s.RSSDeltaBytesPerSeries)
	}
	elapsed := r.Warmup.Seconds + r.Steady.Seconds
	if elapsed > 0 {
		p.printf("loadgen      %.2f CPU-s (%.2f cores)\n", r.LoadgenCPUSeconds, r.LoadgenCPUSeconds/elapsed)
	}
	return p.err
}

// printer writes formatted text and remembers the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) phase(name string, ph *PhaseResult) {
	if ph.Requests == 0 {
		p.printf("%-12s not run\n", name)
		return
	}
	cut := ""
	if !ph.Completed {
		cut = " (cut short)"
	}
	p.printf("%-12s %.2fs%s, %.2f rounds, %d samples accepted (%.0f samples/s), %d failed\n",
		name, ph.Seconds, cut, ph.Rounds, ph.SamplesAccepted, ph.SamplesPerSecond, ph.SamplesFailed)
	var bytesPerSample float64
	if n := ph.SamplesAccepted + ph.SamplesFailed; n > 0 {
		bytesPerSample = float64(ph.RequestBytes) / float64(n)
	}
	p.printf("  requests   %d (%d failed), %.1f compressed B/sample\n", ph.Requests, ph.FailedRequests, bytesPerSample)
	l := ph.Latency
	p.printf("  latency    p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  mean %.2fms\n",
		l.P50Millis, l.P90Millis, l.P99Millis, l.MaxMillis, l.MeanMillis)
	for _, k := range slices.Sorted(maps.Keys(ph.Errors)) {
		p.printf("  error %-8s %d requests, e.g. %q\n", k, ph.Errors[k], ph.ErrorExamples[k])
	}
}

func formatCounts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func formatMillis(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

func mib(b int64) string {
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
