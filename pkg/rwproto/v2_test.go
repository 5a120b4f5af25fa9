package rwproto

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// v2Of writes wr as a 2.0 request: the same series, samples (with start
// timestamps st), native histograms and exemplars, and each series with the
// metadata of its family in wr.
func v2Of(t testing.TB, wr *prompb.WriteRequest, st int64) *writev2.Request {
	syms := writev2.NewSymbolTable()
	out := &writev2.Request{}
	for _, ts := range wr.Timeseries {
		var lb labels.ScratchBuilder
		for _, l := range ts.Labels {
			lb.Add(l.Name, l.Value)
		}
		ls := lb.Labels()
		s := writev2.TimeSeries{LabelsRefs: syms.SymbolizeLabels(ls, nil)}
		for _, x := range ts.Samples {
			s.Samples = append(s.Samples, writev2.Sample{Value: x.Value, Timestamp: x.Timestamp, StartTimestamp: st})
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				s.Histograms = append(s.Histograms, writev2.FromFloatHistogram(0, h.Timestamp, h.ToFloatHistogram()))
			} else {
				s.Histograms = append(s.Histograms, writev2.FromIntHistogram(0, h.Timestamp, h.ToIntHistogram()))
			}
		}
		for _, e := range ts.Exemplars {
			var eb labels.ScratchBuilder
			for _, l := range e.Labels {
				eb.Add(l.Name, l.Value)
			}
			s.Exemplars = append(s.Exemplars, writev2.Exemplar{LabelsRefs: syms.SymbolizeLabels(eb.Labels(), nil), Value: e.Value, Timestamp: e.Timestamp})
		}
		for _, m := range wr.Metadata {
			if familyName(ls.Get(labels.MetricName), m.Type) == m.MetricFamilyName {
				s.Metadata = writev2.Metadata{Type: writev2.Metadata_MetricType(m.Type), HelpRef: syms.Symbolize(m.Help), UnitRef: syms.Symbolize(m.Unit)}
			}
		}
		out.Timeseries = append(out.Timeseries, s)
	}
	out.Symbols = syms.Symbols()
	return out
}

func fullRequest() *prompb.WriteRequest {
	wr := testRequest(4, 4)
	wr.Timeseries[0].Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 2, Timestamp: 1700000000001}}
	wr.Timeseries[1].Samples = append(wr.Timeseries[1].Samples, prompb.Sample{Value: math.NaN(), Timestamp: 1700000015000})
	wr.Timeseries[2].Samples = nil
	wr.Timeseries[2].Labels[0].Value = "rpc_duration_seconds"
	wr.Timeseries[2].Histograms = []prompb.Histogram{{
		Count: &prompb.Histogram_CountInt{CountInt: 5}, Sum: 12.5, Schema: 3, ZeroThreshold: 1e-128,
		ZeroCount:      &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1},
		PositiveSpans:  []prompb.BucketSpan{{Offset: 0, Length: 2}},
		PositiveDeltas: []int64{2, 0}, Timestamp: 1700000000000,
	}}
	wr.Timeseries[3].Labels[0].Value = "rpc_requests_bucket"
	wr.Metadata = []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "libvirt_domain_block_stats_read_bytes_total", Help: "Bytes read.", Unit: "bytes"},
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "rpc_duration_seconds", Help: "RPC latency."},
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "rpc_requests", Help: "Classic buckets."},
	}
	return wr
}

// A 2.0 request decodes to what the same data sent as 1.0 decodes to, and
// each series' Raw is its 1.0 encoding, start timestamps included.
func TestUnmarshalV2MatchesV1(t *testing.T) {
	wr := fullRequest()
	buf, err := v2Of(t, wr, 1699999990000).Marshal()
	require.NoError(t, err)
	var r Request
	require.NoError(t, r.UnmarshalV2(buf, Limits{}))
	requireSameAsPrompb(t, wr, &r)
	for _, ts := range r.Timeseries {
		require.Nil(t, ts.Raw, "encoded only when forwarded")
	}
	require.NoError(t, r.EncodeRaw())

	var body []byte
	for _, ts := range r.Timeseries {
		body = AppendSeries(body, ts.Raw)
		for _, s := range ts.Samples {
			require.Equal(t, int64(1699999990000), s.StartTimestamp)
		}
	}
	for _, m := range r.Metadata {
		body = AppendMetadata(body, m.Raw)
	}
	var v1 Request
	require.NoError(t, v1.Unmarshal(body, Limits{}))
	requireSameAsPrompb(t, wr, &v1)
	require.Equal(t, int64(1699999990000), v1.Timeseries[0].Samples[0].StartTimestamp, "forwarded with the series")
	var viaPrompb prompb.WriteRequest
	require.NoError(t, viaPrompb.Unmarshal(body), "a 1.0 reader reads the forwarded body")

	// Decoding again into the same Request reuses it without mixing the two.
	require.NoError(t, r.UnmarshalV2(buf, Limits{}))
	requireSameAsPrompb(t, wr, &r)
}

func TestUnmarshalV2RefusesBadRequests(t *testing.T) {
	good := v2Of(t, testRequest(2, 3), 0)
	for _, tc := range []struct {
		name   string
		mutate func(*writev2.Request)
		want   string
	}{
		{"first symbol not empty", func(r *writev2.Request) { r.Symbols[0] = "x" }, "must start with the empty string"},
		{"label reference out of the table", func(r *writev2.Request) { r.Timeseries[1].LabelsRefs[3] = 999 }, "symbol reference 999 out of the table"},
		{"odd label references", func(r *writev2.Request) { r.Timeseries[0].LabelsRefs = r.Timeseries[0].LabelsRefs[:3] }, "names and values come in pairs"},
		{"help reference out of the table", func(r *writev2.Request) { r.Timeseries[0].Metadata.HelpRef = 1 << 20 }, "symbol reference 1048576"},
		{"exemplar reference out of the table", func(r *writev2.Request) {
			r.Timeseries[0].Exemplars = []writev2.Exemplar{{LabelsRefs: []uint32{1, 77}}}
		}, "symbol reference 77"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := *good
			req.Symbols = append([]string(nil), good.Symbols...)
			req.Timeseries = append([]writev2.TimeSeries(nil), good.Timeseries...)
			for i := range req.Timeseries {
				req.Timeseries[i].LabelsRefs = append([]uint32(nil), good.Timeseries[i].LabelsRefs...)
			}
			tc.mutate(&req)
			buf, err := req.Marshal()
			require.NoError(t, err)
			var r Request
			require.ErrorContains(t, r.UnmarshalV2(buf, Limits{}), tc.want)
		})
	}
	buf, err := good.Marshal()
	require.NoError(t, err)
	var r Request
	require.ErrorContains(t, r.UnmarshalV2(buf, Limits{MaxSeries: 1}), "more than 1 series")
	require.Error(t, r.UnmarshalV2(buf[:len(buf)-3], Limits{}), "truncated")
	require.NoError(t, r.UnmarshalV2(buf, Limits{MaxLabelsPerSeries: 1}))
	require.Equal(t, 3, r.Timeseries[0].NumLabels, "over-long label sets keep their count")
	require.Len(t, r.Timeseries[0].Labels, 2)
}

func FuzzUnmarshalV2(f *testing.F) {
	for _, wr := range []*prompb.WriteRequest{fullRequest(), testRequest(1, 1), {}} {
		b, err := v2Of(f, wr, 5).Marshal()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0x22, 0x00, 0x2a, 0x04, 0x0a, 0x02, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, buf []byte) {
		var want writev2.Request
		if want.Unmarshal(buf) != nil {
			return // we may skip a known field of the wrong type that gogo refuses
		}
		var r Request
		if err := r.UnmarshalV2(buf, Limits{}); err != nil {
			// Only what gogo does not check: the references and the table,
			// and a packed run of references whose last varint is cut
			// (gogo reads it on into the bytes after the run).
			msg := err.Error()
			require.True(t, errors.Is(err, ErrBadSymbols) || strings.Contains(msg, "symbol reference") || strings.Contains(msg, "come in pairs") ||
				strings.Contains(msg, "overflows 32 bits") || errors.Is(err, ErrTooManyObjects) ||
				(strings.Contains(msg, "label references") && errors.Is(err, ErrTruncated)), "gogo accepts this input: %v", err)
			return
		}
		require.Len(t, r.Timeseries, len(want.Timeseries))
		require.NoError(t, r.EncodeRaw())
		for i, ts := range want.Timeseries {
			var b labels.ScratchBuilder
			ls, err := ts.ToLabels(&b, want.Symbols)
			require.NoError(t, err)
			var got labels.ScratchBuilder
			for _, l := range r.Timeseries[i].Labels {
				got.Add(l.Name, l.Value)
			}
			got.Sort() // as gogo's side does: we keep the order sent, for validation to judge
			require.Equal(t, ls.String(), got.Labels().String(), "series %d", i)
			require.Len(t, r.Timeseries[i].Samples, len(ts.Samples))
			// Its 1.0 encoding reads back the same.
			var v1 Request
			require.NoError(t, v1.Unmarshal(AppendSeries(nil, r.Timeseries[i].Raw), Limits{}))
			require.Len(t, v1.Timeseries[0].Labels, len(r.Timeseries[i].Labels))
			require.Len(t, v1.Timeseries[0].Samples, len(ts.Samples))
		}
	})
}

// BenchmarkUnmarshalV2 measures decoding a 2.0 batch, encoding each series
// for the ingesters included.
//
//	go test ./pkg/rwproto -run '^$' -bench UnmarshalV2 -count 6
func BenchmarkUnmarshalV2(b *testing.B) {
	for _, series := range []int{100, 2000} {
		b.Run(fmt.Sprintf("series=%d", series), func(b *testing.B) {
			buf, err := v2Of(b, testRequest(series, 12), 0).Marshal()
			require.NoError(b, err)
			var r Request
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if err := r.UnmarshalV2(buf, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(series*b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
