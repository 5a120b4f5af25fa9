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
