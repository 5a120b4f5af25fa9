package workload_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/bench/workload"
)

var (
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

func seriesKey(ls []prompb.Label) string {
	var sb strings.Builder
	for _, l := range ls {
		sb.WriteString(l.Name)
		sb.WriteByte(0)
		sb.WriteString(l.Value)
		sb.WriteByte(0)
	}
	return sb.String()
}

func TestGeneratorSeries(t *testing.T) {
	tests := []struct {
		name     string
		series   int
		seed     int64
		wantJobs []string
	}{
		{name: "empty", series: 0, seed: 1},
		{name: "negative", series: -5, seed: 1},
		{name: "one", series: 1, seed: 1},
		{name: "small", series: 777, seed: 2},
		{name: "all kinds of hosts", series: 20000, seed: 3,
			wantJobs: []string{"node", "libvirt", "openvswitch", "dcgm-exporter", "haproxy"}},
		{name: "larger", series: 60000, seed: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := workload.New(workload.Config{Series: tt.series, Seed: tt.seed})
			require.Equal(t, max(tt.series, 0), g.Len())

			seen := make(map[string]int, g.Len())
			for i := range g.Len() {
				ls := g.Series(i)
				require.GreaterOrEqual(t, len(ls), 8, "series %d: %v", i, ls)
				require.LessOrEqual(t, len(ls), 15, "series %d: %v", i, ls)
				require.True(t, slices.IsSortedFunc(ls, func(a, b prompb.Label) int {
					return strings.Compare(a.Name, b.Name)
				}), "series %d not sorted: %v", i, ls)
				for j, l := range ls {
					require.Regexp(t, labelNameRE, l.Name)
					require.NotEmpty(t, l.Value, "series %d label %s", i, l.Name)
					if j > 0 {
						require.NotEqual(t, ls[j-1].Name, l.Name, "duplicate label name in series %d", i)
					}
				}
				name := labelValue(ls, "__name__")
				require.Regexp(t, metricNameRE, name)
				require.Equal(t, g.MetricName(i), name)
				require.Equal(t, g.Job(i), labelValue(ls, "job"))

				key := seriesKey(ls)
				prev, dup := seen[key]
				require.False(t, dup, "series %d duplicates series %d: %v", i, prev, ls)
				seen[key] = i
			}

			jobs := g.CountByJob()
			total := 0
			for _, n := range jobs {
				total += n
			}
			require.Equal(t, g.Len(), total)
			for _, j := range tt.wantJobs {
				require.Positive(t, jobs[j], "job %s missing: %v", j, jobs)
			}
		})
	}
}

func labelValue(ls []prompb.Label, name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

func TestGeneratorDeterminism(t *testing.T) {
	tests := []struct {
		name       string
		a, b       workload.Config
		wantSameAs bool
	}{
		{name: "same seed", a: workload.Config{Series: 5000, Seed: 7}, b: workload.Config{Series: 5000, Seed: 7}, wantSameAs: true},
		{name: "other seed", a: workload.Config{Series: 5000, Seed: 7}, b: workload.Config{Series: 5000, Seed: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ga, gb := workload.New(tt.a), workload.New(tt.b)
			const ts = 1_760_000_000_000
			reqA := ga.AppendRequest(nil, 0, ga.Len(), ts)
			reqB := gb.AppendRequest(nil, 0, gb.Len(), ts)
			if tt.wantSameAs {
				require.Equal(t, reqA, reqB)
				for i := range ga.Len() {
					require.Equal(t, ga.Series(i), gb.Series(i))
				}
				return
			}
			require.NotEqual(t, reqA, reqB)
		})
	}
}

func TestAppendRequestRoundTrip(t *testing.T) {
	g := workload.New(workload.Config{Series: 30000, Seed: 11})
	tests := []struct {
		name     string
		from, to int
		tMillis  int64
	}{
		{name: "empty range", from: 10, to: 10, tMillis: 1_760_000_000_000},
		{name: "one series", from: 0, to: 1, tMillis: 1_760_000_000_000},
		{name: "batch", from: 2000, to: 4000, tMillis: 1_760_000_015_000},
		{name: "everything", from: 0, to: g.Len(), tMillis: 1_760_000_030_123},
		{name: "zero timestamp", from: 5, to: 50, tMillis: 0},
		{name: "negative timestamp", from: 5, to: 50, tMillis: -1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := g.AppendRequest([]byte("prefix"), tt.from, tt.to, tt.tMillis)
			require.Equal(t, "prefix", string(buf[:6]))

			var req prompb.WriteRequest
			require.NoError(t, req.Unmarshal(buf[6:]))
			require.Len(t, req.Timeseries, tt.to-tt.from)
			require.Empty(t, req.Metadata)
			for k, ts := range req.Timeseries {
				i := tt.from + k
				require.Equal(t, g.Series(i), ts.Labels)
				require.Len(t, ts.Samples, 1)
				require.Equal(t, tt.tMillis, ts.Samples[0].Timestamp)
				require.Equal(t, g.Value(i, tt.tMillis), ts.Samples[0].Value)
				require.Empty(t, ts.Exemplars)
				require.Empty(t, ts.Histograms)
			}
			// The reference encoder produces the same bytes, up to omitted
			// zero values, which gogo leaves out and we always write.
			if tt.tMillis != 0 {
				want, err := req.Marshal()
				require.NoError(t, err)
				if !slices.ContainsFunc(req.Timeseries, func(ts prompb.TimeSeries) bool { return ts.Samples[0].Value == 0 }) {
					require.Equal(t, want, buf[6:])
				}
			}
		})
	}
}

func TestAppendRequestPanicsOutOfRange(t *testing.T) {
	g := workload.New(workload.Config{Series: 10, Seed: 1})
	tests := []struct {
		name     string
		from, to int
	}{
		{name: "negative from", from: -1, to: 3},
		{name: "to past end", from: 0, to: 11},
		{name: "inverted", from: 5, to: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Panics(t, func() { g.AppendRequest(nil, tt.from, tt.to, 1) })
		})
	}
}

func TestAppendMetadataRequest(t *testing.T) {
	tests := []struct {
		name   string
		series int
	}{
		{name: "node only", series: 100},
		{name: "all families", series: 50000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := workload.New(workload.Config{Series: tt.series, Seed: 5})
			var req prompb.WriteRequest
			require.NoError(t, req.Unmarshal(g.AppendMetadataRequest(nil)))
			require.Empty(t, req.Timeseries)
			require.Len(t, req.Metadata, g.MetadataCount())

			present := make(map[string]bool)
			for i := range g.Len() {
				present[g.MetricName(i)] = true
			}
			require.Len(t, req.Metadata, len(present))
			for _, md := range req.Metadata {
				require.True(t, present[md.MetricFamilyName], md.MetricFamilyName)
				require.NotEmpty(t, md.Help)
				wantType := prompb.MetricMetadata_GAUGE
				if strings.HasSuffix(md.MetricFamilyName, "_total") ||
					md.MetricFamilyName == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" ||
					md.MetricFamilyName == "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" {
					wantType = prompb.MetricMetadata_COUNTER
				}
				require.Equal(t, wantType, md.Type, md.MetricFamilyName)
			}
		})
	}
}

func TestValues(t *testing.T) {
	g := workload.New(workload.Config{Series: 20000, Seed: 9})
	const start = 1_760_000_000_000
	steps := []int64{1, 999, 1000, 1001, 15_000, 15_000, 60_000, 3_600_000}
	for i := range g.Len() {
		counter := strings.HasSuffix(g.MetricName(i), "_total")
		prev := g.Value(i, start)
		require.False(t, prev < 0, "series %d negative: %v", i, prev)
		ts := int64(start)
		for _, step := range steps {
			ts += step
			v := g.Value(i, ts)
			require.Equal(t, v, g.Value(i, ts), "value not a function of (series, t)")
			require.False(t, v < 0, "series %d negative: %v", i, v)
			if counter {
				require.GreaterOrEqual(t, v, prev, "counter %d (%s) decreased", i, g.MetricName(i))
			}
			prev = v
		}
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	const series, batch = 200000, 2000
	g := workload.New(workload.Config{Series: series, Seed: 1})
	buf := make([]byte, 0, 4<<20)
	ts := int64(1_760_000_000_000)
	from := 0
	b.ReportAllocs()
	for b.Loop() {
		buf = g.AppendRequest(buf[:0], from, from+batch, ts)
		from += batch
		if from >= series {
			from = 0
			ts += 15_000
		}
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(len(buf))/batch, "bytes/sample")
}
