package rwproto

import (
	"fmt"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func testRequest(series, labelsPerSeries int) *prompb.WriteRequest {
	wr := &prompb.WriteRequest{}
	for i := range series {
		ls := []prompb.Label{{Name: "__name__", Value: "libvirt_domain_block_stats_read_bytes_total"}}
		for j := 1; j < labelsPerSeries; j++ {
			ls = append(ls, prompb.Label{Name: fmt.Sprintf("label_%02d", j), Value: fmt.Sprintf("value-%d-%d-0f3c9a2e", i, j)})
		}
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  ls,
			Samples: []prompb.Sample{{Value: float64(i) * 1.5, Timestamp: 1700000000000 + int64(i)}},
		})
	}
	return wr
}

// fromPrompb turns a prompb request into the shape Unmarshal produces, for comparison.
func fromPrompb(wr *prompb.WriteRequest) (series []TimeSeries, meta []Metadata) {
	for _, ts := range wr.Timeseries {
		out := TimeSeries{NumLabels: len(ts.Labels)}
		for _, l := range ts.Labels {
			out.Labels = append(out.Labels, labels.Label{Name: l.Name, Value: l.Value})
		}
		for _, s := range ts.Samples {
			out.Samples = append(out.Samples, Sample{Timestamp: s.Timestamp, Value: s.Value})
		}
		for _, e := range ts.Exemplars {
			ex := Exemplar{Value: e.Value, Timestamp: e.Timestamp}
			for _, l := range e.Labels {
				ex.Labels = append(ex.Labels, labels.Label{Name: l.Name, Value: l.Value})
			}
			out.Exemplars = append(out.Exemplars, ex)
		}
		out.Histograms = ts.Histograms
		series = append(series, out)
	}
	for _, m := range wr.Metadata {
		meta = append(meta, Metadata{Type: m.Type, MetricFamilyName: m.MetricFamilyName, Help: m.Help, Unit: m.Unit})
	}
	return series, meta
}

func requireSameAsPrompb(t testing.TB, wr *prompb.WriteRequest, got *Request) {
	wantSeries, wantMeta := fromPrompb(wr)
	require.Len(t, got.Timeseries, len(wantSeries))
	for i := range wantSeries {
		g, w := got.Timeseries[i], wantSeries[i]
		require.Equal(t, w.NumLabels, g.NumLabels, "series %d", i)
		require.Equal(t, len(w.Labels), len(g.Labels), "series %d", i)
		for j := range w.Labels {
			require.Equal(t, w.Labels[j], g.Labels[j])
		}
		require.Equal(t, len(w.Samples), len(g.Samples))
		for j := range w.Samples {
			require.Equal(t, w.Samples[j].Timestamp, g.Samples[j].Timestamp)
			require.Equal(t, math.Float64bits(w.Samples[j].Value), math.Float64bits(g.Samples[j].Value))
		}
		require.Equal(t, len(w.Exemplars), len(g.Exemplars))
		for j := range w.Exemplars {
			require.Equal(t, w.Exemplars[j].Timestamp, g.Exemplars[j].Timestamp)
			require.Equal(t, len(w.Exemplars[j].Labels), len(g.Exemplars[j].Labels))
		}
		require.Equal(t, len(w.Histograms), len(g.Histograms))
		for j := range w.Histograms {
			wb, err := w.Histograms[j].Marshal()
			require.NoError(t, err)
			gb, err := g.Histograms[j].Marshal()
			require.NoError(t, err)
			require.Equal(t, wb, gb, "histogram %d of series %d", j, i)
		}
	}
	require.Equal(t, len(wantMeta), len(got.Metadata))
	for i := range wantMeta {
		g := got.Metadata[i]
		g.Raw = nil
		require.Equal(t, wantMeta[i], g)
	}
}

func TestUnmarshalMatchesPrompb(t *testing.T) {
	full := testRequest(3, 4)
	full.Timeseries[0].Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 2, Timestamp: 1700000000001}}
	full.Timeseries[1].Samples = append(full.Timeseries[1].Samples, prompb.Sample{Value: math.NaN(), Timestamp: 1700000015000})
	full.Timeseries[2].Samples = nil
	full.Timeseries[2].Histograms = []prompb.Histogram{{
		Count: &prompb.Histogram_CountInt{CountInt: 5}, Sum: 12.5, Schema: 3, ZeroThreshold: 1e-128,
		ZeroCount:      &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1},
		PositiveSpans:  []prompb.BucketSpan{{Offset: 0, Length: 2}},
		PositiveDeltas: []int64{2, 0}, Timestamp: 1700000000000,
	}}
	full.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests.", Unit: ""}}

	for name, wr := range map[string]*prompb.WriteRequest{
		"empty":        {},
		"floats":       testRequest(10, 12),
		"all features": full,
	} {
		t.Run(name, func(t *testing.T) {
			buf, err := wr.Marshal()
			require.NoError(t, err)
			var r Request
			require.NoError(t, r.Unmarshal(buf, Limits{}))
			requireSameAsPrompb(t, wr, &r)
		})
	}
}

func TestUnmarshalReusesRequest(t *testing.T) {
	big, err := testRequest(50, 12).Marshal()
	require.NoError(t, err)
	small := testRequest(2, 3)
	smallBuf, err := small.Marshal()
	require.NoError(t, err)

	var r Request
	require.NoError(t, r.Unmarshal(big, Limits{}))
	require.NoError(t, r.Unmarshal(smallBuf, Limits{}))
	requireSameAsPrompb(t, small, &r)
}

func TestUnmarshalLimits(t *testing.T) {
	buf, err := testRequest(5, 40).Marshal()
	require.NoError(t, err)

	var r Request
	require.ErrorContains(t, r.Unmarshal(buf, Limits{MaxSeries: 4}), "more than 4 series")

	require.NoError(t, r.Unmarshal(buf, Limits{MaxLabelsPerSeries: 30}))
	for _, ts := range r.Timeseries {
		require.Equal(t, 40, ts.NumLabels)
		require.Len(t, ts.Labels, 31, "one label past the limit is kept, the rest only counted")
	}
}

func TestUnmarshalMalformed(t *testing.T) {
	good, err := testRequest(2, 3).Marshal()
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		buf     []byte
		wantErr string
	}{
		{name: "truncated", buf: good[:len(good)-3], wantErr: "truncated"},
		{name: "length past end", buf: []byte{0x0a, 0x7f, 0x01}, wantErr: "truncated"},
		{name: "varint overflow", buf: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, wantErr: "overflows"},
		{name: "field zero", buf: []byte{0x02, 0x00}, wantErr: "field number 0"},
		{name: "unterminated group", buf: []byte{0x0b}, wantErr: "truncated"},
		{name: "stray end group", buf: []byte{0x0c}, wantErr: "wire type 4"},
		{name: "not protobuf", buf: []byte("hello, this is not protobuf"), wantErr: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			err := r.Unmarshal(tc.buf, Limits{})
			require.Error(t, err)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// FuzzUnmarshal checks the decoder against prompb's generated one: no panics,
// and whenever prompb accepts the input, the decoded requests are equal.
func FuzzUnmarshal(f *testing.F) {
	for _, wr := range []*prompb.WriteRequest{testRequest(1, 1), testRequest(3, 5), {}} {
		b, err := wr.Marshal()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, buf []byte) {
		var r Request
		ourErr := r.Unmarshal(buf, Limits{})
		var wr prompb.WriteRequest
		if wr.Unmarshal(buf) != nil {
			return
		}
		require.NoError(t, ourErr, "prompb accepts this input")
		requireSameAsPrompb(t, &wr, &r)
	})
}

// BenchmarkUnmarshal measures decoding a typical Prometheus batch.
//
//	go test ./pkg/rwproto -run '^$' -bench Unmarshal -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkUnmarshal(b *testing.B) {
	for _, series := range []int{100, 2000} {
		b.Run(fmt.Sprintf("series=%d", series), func(b *testing.B) {
			buf, err := testRequest(series, 12).Marshal()
			require.NoError(b, err)
			var r Request
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if err := r.Unmarshal(buf, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(series*b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// TestDecodedObjectsAreBudgeted: requests of empty messages, which decode
// to many times their size in structs, are refused; real requests, tiny
// native histograms included, are not.
func TestDecodedObjectsAreBudgeted(t *testing.T) {
	emptyHistograms := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}}
	emptyHistograms.Histograms = make([]prompb.Histogram, 250_000)
	emptyMetadata := make([]prompb.MetricMetadata, 250_000)
	emptySeries := make([]prompb.TimeSeries, 250_000)
	tinyHistograms := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}}
	for i := range 10_000 {
		// What Prometheus sends for a histogram that saw nothing: 33 bytes.
		tinyHistograms.Histograms = append(tinyHistograms.Histograms, prompb.Histogram{Schema: 3, ZeroThreshold: 1e-128, Sum: 0.5,
			Count: &prompb.Histogram_CountInt{CountInt: 0}, ZeroCount: &prompb.Histogram_ZeroCountInt{}, Timestamp: 1_700_000_000_000 + int64(i)})
	}
	for _, tc := range []struct {
		name   string
		wr     *prompb.WriteRequest
		refuse bool
	}{
		{"250k empty native histograms", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{emptyHistograms}}, true},
		{"250k empty metadata", &prompb.WriteRequest{Metadata: emptyMetadata}, true},
		{"250k empty series", &prompb.WriteRequest{Timeseries: emptySeries}, true},
		{"10k tiny native histograms", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{tinyHistograms}}, false},
		{"2000 series of 10 labels", testRequest(2000, 10), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf, err := tc.wr.Marshal()
			require.NoError(t, err)
			var r Request
			err = r.Unmarshal(buf, Limits{})
			if tc.refuse {
				require.ErrorIs(t, err, ErrTooManyObjects)
				return
			}
			require.NoError(t, err)
		})
	}
}
