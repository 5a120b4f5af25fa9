package rwproto

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestAppendSeriesForwardsWithoutReencoding splits a request the way a
// distributor does, by series, and checks that each part decodes to exactly
// the series and metadata that went into it.
func TestAppendSeriesForwardsWithoutReencoding(t *testing.T) {
	wr := testRequest(6, 5)
	wr.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Up."}}
	buf, err := wr.Marshal()
	require.NoError(t, err)
	var in Request
	require.NoError(t, in.Unmarshal(buf, Limits{}))

	var even, odd []byte
	for i, ts := range in.Timeseries {
		if i%2 == 0 {
			even = AppendSeries(even, ts.Raw)
		} else {
			odd = AppendSeries(odd, ts.Raw)
		}
	}
	even = AppendMetadata(even, in.Metadata[0].Raw)

	var wantEven, wantOdd prompb.WriteRequest
	for i, ts := range wr.Timeseries {
		if i%2 == 0 {
			wantEven.Timeseries = append(wantEven.Timeseries, ts)
		} else {
			wantOdd.Timeseries = append(wantOdd.Timeseries, ts)
		}
	}
	wantEven.Metadata = wr.Metadata
	for part, want := range map[string]struct {
		body []byte
		wr   *prompb.WriteRequest
	}{"even": {even, &wantEven}, "odd": {odd, &wantOdd}} {
		var got Request
		require.NoError(t, got.Unmarshal(want.body, Limits{}), part)
		requireSameAsPrompb(t, want.wr, &got)
		var viaPrompb prompb.WriteRequest
		require.NoError(t, viaPrompb.Unmarshal(want.body), "prompb reads the %s part too", part)
		require.Len(t, viaPrompb.Timeseries, len(want.wr.Timeseries))
	}
}

// TestEncodeRoundTrips: a decoded series encoded from its fields decodes
// to the same series, exemplars and native histograms included, and to
// the series as changed when its exemplars were.
func TestEncodeRoundTrips(t *testing.T) {
	wr := testRequest(3, 4)
	wr.Timeseries[1].Exemplars = []prompb.Exemplar{
		{Labels: []prompb.Label{{Name: "trace_id", Value: "a1"}}, Value: 1, Timestamp: 1700000000001},
		{Labels: []prompb.Label{{Name: "trace_id", Value: "b2"}}, Value: 2, Timestamp: 1700000000002},
	}
	wr.Timeseries[2].Samples = nil
	wr.Timeseries[2].Histograms = []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 3}, Sum: 1.5, Schema: 1, ZeroThreshold: 1e-128,
		ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1}, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{1, 0}, Timestamp: 1700000000000}}
	buf, err := wr.Marshal()
	require.NoError(t, err)
	var in Request
	require.NoError(t, in.Unmarshal(buf, Limits{}))
	in.Timeseries[1].Exemplars = in.Timeseries[1].Exemplars[1:] // as validation drops one

	var out []byte
	for i := range in.Timeseries {
		raw, err := in.Timeseries[i].Encode()
		require.NoError(t, err)
		out = AppendSeries(out, raw)
	}
	var got prompb.WriteRequest
	require.NoError(t, got.Unmarshal(out))
	want := *wr
	want.Timeseries[1].Exemplars = want.Timeseries[1].Exemplars[1:]
	require.Equal(t, want.Timeseries, got.Timeseries)
}
