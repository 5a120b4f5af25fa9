package loadgen

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/bench/workload"
)

func TestHistogramBuckets(t *testing.T) {
	tests := []struct {
		name string
		v    uint64
	}{
		{name: "zero", v: 0},
		{name: "exact range", v: 31},
		{name: "first log bucket", v: 32},
		{name: "odd", v: 12345},
		{name: "millisecond", v: uint64(time.Millisecond)},
		{name: "minute", v: uint64(time.Minute)},
		{name: "huge", v: 1<<63 + 12345},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bucketOf(tt.v)
			lo, hi := bucketBounds(b)
			require.LessOrEqual(t, lo, tt.v)
			require.GreaterOrEqual(t, hi, tt.v)
			require.LessOrEqual(t, float64(hi-lo), float64(lo)/(1<<subBits)+1)
			require.Less(t, b, len(newHistogram().counts))
		})
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([]time.Duration, 10000)
	h, a, b := newHistogram(), newHistogram(), newHistogram()
	for i := range values {
		values[i] = time.Duration(rng.ExpFloat64() * float64(5*time.Millisecond))
		h.observe(values[i])
		if i%2 == 0 {
			a.observe(values[i])
		} else {
			b.observe(values[i])
		}
	}
	a.merge(b)
	require.Equal(t, h, a)
	slices.Sort(values)
	tests := []struct {
		name string
		q    float64
	}{
		{name: "p50", q: 0.5}, {name: "p90", q: 0.9}, {name: "p99", q: 0.99}, {name: "max", q: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := values[int(tt.q*float64(len(values)))-1]
			require.InEpsilon(t, float64(want), float64(h.quantile(tt.q)), 0.04)
		})
	}
	require.Equal(t, Latency{}, newHistogram().summary())
}

func TestProcReader(t *testing.T) {
	dir := t.TempDir()
	write := func(path, data string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	}
	write(filepath.Join(dir, "42", "stat"),
		"42 (my (odd) srv) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200 18446744073709551615\n")
	write(filepath.Join(dir, "42", "status"), "Name:\tsrv\nVmPeak:\t  9999 kB\nVmRSS:\t    2048 kB\nThreads:\t8\n")
	write(filepath.Join(dir, "43", "stat"), "43 (x) S 1\n")
	write(filepath.Join(dir, "43", "status"), "Name:\tx\n")

	tests := []struct {
		name    string
		pid     int
		want    procStats
		wantErr string
	}{
		{name: "parses", pid: 42, want: procStats{cpuSeconds: 3, rssBytes: 2 << 20}},
		{name: "short stat", pid: 43, wantErr: "fields"},
		{name: "missing", pid: 44, wantErr: "read /proc stat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &procReader{root: dir, pid: tt.pid, clockTicks: 100}
			got, err := p.read()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	self := newProcReader("/proc", os.Getpid())
	require.Equal(t, 100, self.clockTicks)
	got, err := self.read()
	require.NoError(t, err)
	require.Positive(t, got.rssBytes)
}

func TestAutoLookback(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{name: "full speed", cfg: Config{Series: 1000, Interval: 15 * time.Second}, want: MaxAutoLookback},
		{name: "real time", cfg: Config{Series: 1500, Interval: 15 * time.Second, SamplesPerSecond: 100,
			Duration: time.Hour, WarmupRounds: 1}, want: 30 * time.Second},
		{name: "twice real time", cfg: Config{Series: 1500, Interval: 15 * time.Second, SamplesPerSecond: 200,
			Duration: 10 * time.Minute, WarmupRounds: 1}, want: 10*time.Minute + 30*time.Second},
		{name: "capped", cfg: Config{Series: 1500, Interval: 15 * time.Second, SamplesPerSecond: 1e6,
			Duration: time.Minute}, want: MaxAutoLookback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, autoLookback(tt.cfg))
		})
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	const series, batch = 200000, 2000
	gen := workload.New(workload.Config{Series: series, Seed: 1})
	var raw, comp []byte
	ts := int64(1_760_000_000_000)
	from := 0
	b.ReportAllocs()
	for b.Loop() {
		raw = gen.AppendRequest(raw[:0], from, from+batch, ts)
		comp = s2.EncodeSnappy(comp, raw)
		from += batch
		if from >= series {
			from, ts = 0, ts+15_000
		}
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(len(comp))/batch, "bytes/sample")
}
