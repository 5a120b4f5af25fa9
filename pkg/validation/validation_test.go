package validation

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
)

const now = int64(1_700_000_000_000)

func defaultLimits(t testing.TB) *limits.Limits {
	var l limits.Limits
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	l.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	return &l
}

func series(kv ...string) rwproto.TimeSeries {
	ts := rwproto.TimeSeries{Samples: []rwproto.Sample{{Timestamp: now, Value: 1}}}
	for i := 0; i+1 < len(kv); i += 2 {
		ts.Labels = append(ts.Labels, labels.Label{Name: kv[i], Value: kv[i+1]})
	}
	ts.NumLabels = len(ts.Labels)
	return ts
}

func TestSeries(t *testing.T) {
	l := defaultLimits(t)
	many := []string{"__name__", "up"}
	for i := range 30 {
		many = append(many, fmt.Sprintf("l%02d", i), "v")
	}
	future := series("__name__", "up")
	future.Samples[0].Timestamp = now + 11*60*1000
	past := series("__name__", "up")
	past.Samples[0].Timestamp = now - 31*24*3600*1000
	minInt := series("__name__", "up")
	minInt.Samples[0].Timestamp = math.MinInt64
	pastHist := series("__name__", "h")
	pastHist.Samples = nil
	pastHist.Histograms = []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 0}, Timestamp: math.MinInt64}}
	noSamples := series("__name__", "up")
	noSamples.Samples = nil
	badHist := series("__name__", "h")
	badHist.Samples = nil
	badHist.Histograms = []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 1}, Schema: 0, Timestamp: now,
		PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{5, 0}}}

	for _, tc := range []struct {
		name   string
		ts     rwproto.TimeSeries
		reason Reason
		msg    string
	}{
		{name: "valid", ts: series("__name__", "node_cpu_seconds_total", "cpu", "0", "mode", "idle")},
		{name: "no name", ts: series("job", "a"), reason: MissingMetricName, msg: "no metric name"},
		{name: "bad metric name", ts: series("__name__", "1up"), reason: InvalidMetricName, msg: `invalid metric name "1up"`},
		{name: "bad label name", ts: series("__name__", "up", "a-b", "x"), reason: InvalidLabelName, msg: `invalid label name "a-b"`},
		{name: "empty value", ts: series("__name__", "up", "job", ""), reason: EmptyLabelValue, msg: `label "job" has an empty value`},
		{name: "bad utf8", ts: series("__name__", "up", "job", "\xff"), reason: InvalidLabelValue, msg: "not valid UTF-8"},
		{name: "duplicate", ts: series("__name__", "up", "job", "a", "job", "b"), reason: DuplicateLabel, msg: `duplicate label name "job"`},
		{name: "unsorted", ts: series("__name__", "up", "job", "a", "instance", "b"), reason: LabelsNotSorted, msg: `"instance" comes after "job"`},
		{name: "too many", ts: series(many...), reason: TooManyLabels, msg: "31 labels, more than the limit of 30 (-validation.max-label-names-per-series)"},
		{name: "long name", ts: series("__name__", "up", strings.Repeat("a", 1025), "x"), reason: LabelNameTooLong, msg: "-validation.max-length-label-name"},
		{name: "long value", ts: series("__name__", "up", "a", strings.Repeat("x", 2049)), reason: LabelValueTooLong, msg: "2049 bytes long"},
		{name: "future", ts: future, reason: TooFarInFuture, msg: "more than 10m in the future"},
		{name: "past", ts: past, reason: TooFarInPast, msg: "more than 30d in the past (-validation.past-grace-period)"},
		{name: "the int64 minimum", ts: minInt, reason: TooFarInPast, msg: "more than 30d in the past"},
		{name: "histogram at the int64 minimum", ts: pastHist, reason: TooFarInPast, msg: "histogram timestamp"},
		{name: "no samples", ts: noSamples, reason: NoSamples, msg: "no samples"},
		{name: "bad histogram", ts: badHist, reason: InvalidHistogram, msg: "invalid native histogram"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Labels(l, &tc.ts)
			if err == nil {
				_, err = Samples(l, &tc.ts, now)
			}
			if tc.reason == "" {
				require.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			require.Equal(t, tc.reason, err.Reason)
			require.Contains(t, err.Error(), tc.msg)
			require.Contains(t, err.Error(), "{", "the message names the series")
		})
	}
}

func TestUTF8Scheme(t *testing.T) {
	ts := series("__name__", "http.server.duration", "service.name", "api")
	l := defaultLimits(t)
	require.NotNil(t, Labels(l, &ts))
	l.NameValidationScheme = "utf8"
	require.Nil(t, Labels(l, &ts))
}

func TestExemplarsDroppedNotSeries(t *testing.T) {
	ts := series("__name__", "up")
	ts.Exemplars = []rwproto.Exemplar{
		{Labels: []labels.Label{{Name: "trace_id", Value: "abc"}}, Timestamp: now},
		{Labels: []labels.Label{{Name: "trace_id", Value: strings.Repeat("x", 200)}}, Timestamp: now},
		{Labels: []labels.Label{{Name: "trace_id", Value: "def"}}, Timestamp: now + 3600_000},
		{Labels: []labels.Label{{Name: "trace_id", Value: "ghi"}}, Timestamp: math.MinInt64},
	}
	dropped, err := Samples(defaultLimits(t), &ts, now)
	require.Nil(t, err)
	require.Equal(t, 3, dropped)
	require.Len(t, ts.Exemplars, 1)
	require.Equal(t, "abc", ts.Exemplars[0].Labels[0].Value)
}

// BenchmarkValidate measures checking a typical private-cloud series: its
// labels (once per new series) and its samples (every request).
//
//	go test ./pkg/validation -run '^$' -bench . -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkValidate(b *testing.B) {
	ts := series("__name__", "libvirt_domain_interface_stats_receive_bytes_total", "az", "az1", "domain", "instance-0004f2a1",
		"flavor", "m1.large", "hypervisor", "cmp-r1a-0421.dc1.example", "instance", "10.2.4.21:9177",
		"instance_uuid", "3f2b8c1e-6a4d-4e8f-9b7a-1c2d3e4f5a6b", "job", "libvirt", "project_id", "4c8e2f1a9b7d4e6f8a0b1c2d3e4f5a6b",
		"region", "region-one", "target_device", "tap3f2b8c1e-6a")
	l := defaultLimits(b)
	b.Run("part=labels", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := Labels(l, &ts); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "series/s")
	})
	b.Run("part=samples", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Samples(l, &ts, now); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
	})
}

// TestLegacyNamesMatchModel checks the lookup table against the model
// package's definition of legacy names.
func TestLegacyNamesMatchModel(t *testing.T) {
	l := &limits.Limits{NameValidationScheme: "legacy"}
	for _, s := range []string{"", "a", "_", ":", "a:b", "1a", "a1", "__name__", "a-b", "a.b", "é", "A_Z_0_9", ":x", "x:", "\xff", "a b"} {
		require.Equal(t, model.LegacyValidation.IsValidLabelName(s), validLabelName(l, s), "label name %q", s)
		require.Equal(t, model.LegacyValidation.IsValidMetricName(s), validMetricName(l, s), "metric name %q", s)
	}
}

func FuzzLegacyNames(f *testing.F) {
	f.Add("node_cpu_seconds_total")
	f.Add("a:b")
	f.Fuzz(func(t *testing.T, s string) {
		l := &limits.Limits{NameValidationScheme: "legacy"}
		require.Equal(t, model.LegacyValidation.IsValidLabelName(s), validLabelName(l, s))
		require.Equal(t, model.LegacyValidation.IsValidMetricName(s), validMetricName(l, s))
	})
}
