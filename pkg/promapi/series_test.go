package promapi

import (
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
)

func TestSeriesRoundTrip(t *testing.T) {
	h := &histogram.FloatHistogram{Schema: -53, Count: 3, Sum: 5, CustomValues: []float64{0.1, 1},
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []float64{1, 1, 1}, CounterResetHint: histogram.GaugeType,
		NegativeSpans: []histogram.Span{}} // as decoded: empty, not nil
	m := promql.Matrix{
		{Metric: labels.FromStrings("a", "1"), Floats: []promql.FPoint{{T: -1, F: math.Inf(1)}, {T: math.MaxInt64, F: 1e-300}}},
		{Metric: labels.FromStrings("a", "2", "b", "x"), Histograms: []promql.HPoint{{T: 7, H: h}}},
	}
	b, err := MarshalSeries(m)
	require.NoError(t, err)
	got, err := UnmarshalSeries(b)
	require.NoError(t, err)
	require.Equal(t, m, got)

	v := promql.Vector{{Metric: labels.FromStrings("a", "1"), T: 5, F: 2}, {Metric: labels.FromStrings("a", "2"), T: 5, H: h}}
	b, err = MarshalSeries(v)
	require.NoError(t, err)
	got, err = UnmarshalSeries(b)
	require.NoError(t, err)
	require.Equal(t, promql.Matrix{
		{Metric: labels.FromStrings("a", "1"), Floats: []promql.FPoint{{T: 5, F: 2}}},
		{Metric: labels.FromStrings("a", "2"), Histograms: []promql.HPoint{{T: 5, H: h}}},
	}, got)

	// A scalar is a series without labels, as a rule evaluates it.
	b, err = MarshalSeries(promql.Scalar{T: 1, V: 3})
	require.NoError(t, err)
	got, err = UnmarshalSeries(b)
	require.NoError(t, err)
	require.Equal(t, promql.Matrix{{Metric: labels.EmptyLabels(), Floats: []promql.FPoint{{T: 1, F: 3}}}}, got)

	_, err = MarshalSeries(promql.String{T: 1, V: "x"})
	require.ErrorContains(t, err, "has no series")
}

// FuzzUnmarshalSeries: whatever a querier sends, decoding fails cleanly or
// gives series that encode again.
func FuzzUnmarshalSeries(f *testing.F) {
	b, err := MarshalSeries(promql.Matrix{{Metric: labels.FromStrings("a", "1"), Floats: []promql.FPoint{{T: 1, F: 1}},
		Histograms: []promql.HPoint{{T: 2, H: &histogram.FloatHistogram{Count: 1, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []float64{1}}}}}})
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalSeries(b)
		if err != nil {
			return
		}
		_, err = MarshalSeries(m)
		require.NoError(t, err)
	})
}
