package promapi

import (
	"errors"
	"math"
	"strings"
	"testing"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// encodeSuccess renders a success envelope to a string.
func encodeSuccess(t testing.TB, data any, warnings, infos []string) string {
	t.Helper()
	var out strings.Builder
	require.NoError(t, Encode(&out, func(s *jsoniter.Stream) {
		WriteSuccess(s, data, warnings, infos)
	}))
	return out.String()
}

// The expected bytes below were checked against jsoniter with the encoders
// Prometheus 3.16 registers in web/api/v1/json_codec.go.
func TestEncodeSuccess(t *testing.T) {
	weird := labels.FromStrings("__name__", "x<y>&z", "a\"b", "line\nbreak\t\u2028 ü \x01", "le", "+Inf")
	// Schema 0, two populated buckets: (0.5,1] with 1 and (1,2] with 2.
	hist := (&histogram.Histogram{Count: 3, Sum: 5, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1}}).ToFloat(nil)
	for _, tc := range []struct {
		name     string
		data     any
		warnings []string
		infos    []string
		want     string
	}{
		{
			name:     "vector: labels are not HTML-escaped, warnings are",
			data:     &QueryData{ResultType: parser.ValueTypeVector, Result: promql.Vector{{Metric: weird, T: -1500, F: math.NaN()}, {Metric: labels.EmptyLabels(), T: 5, F: math.Inf(1)}, {Metric: labels.FromStrings("a", "b"), T: 1700000000123, F: 1e-7}, {Metric: labels.FromStrings("a", "d"), T: 0, F: 1e21}}},
			warnings: []string{"a<b"},
			want:     "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{\"__name__\":\"x<y>&z\",\"a\\\"b\":\"line\\nbreak\\t\u2028 ü \\u0001\",\"le\":\"+Inf\"},\"value\":[-1.500,\"NaN\"]},{\"metric\":{},\"value\":[0.005,\"+Inf\"]},{\"metric\":{\"a\":\"b\"},\"value\":[1700000000.123,\"1e-07\"]},{\"metric\":{\"a\":\"d\"},\"value\":[0,\"1e+21\"]}]},\"warnings\":[\"a\\u003cb\"]}",
		},
		{
			name:  "matrix with floats and histograms",
			data:  &QueryData{ResultType: parser.ValueTypeMatrix, Result: promql.Matrix{{Metric: labels.FromStrings("a", "b"), Floats: []promql.FPoint{{T: 1, F: 1}, {T: 1001, F: math.Inf(-1)}}, Histograms: []promql.HPoint{{T: 2, H: hist}}}}},
			infos: []string{"i&"},
			want:  `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[0.001,"1"],[1.001,"-Inf"]],"histograms":[[0.002,{"count":"3","sum":"5","buckets":[[0,"0.5","1","1"],[0,"1","2","2"]]}]]}]},"infos":["i\u0026"]}`,
		},
		{
			name: "series without points",
			data: &QueryData{ResultType: parser.ValueTypeMatrix, Result: promql.Matrix{{Metric: labels.FromStrings("a", "b")}}},
			want: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"}}]}}`,
		},
		{
			name: "scalar goes through its MarshalJSON",
			data: &QueryData{ResultType: parser.ValueTypeScalar, Result: promql.Scalar{T: 1700000000120, V: math.NaN()}},
			want: `{"status":"success","data":{"resultType":"scalar","result":[1700000000.12,"NaN"]}}`,
		},
		{
			name: "exemplars: a nil list is null",
			data: []exemplar.QueryResult{{SeriesLabels: labels.FromStrings("a", "<b>"), Exemplars: []exemplar.Exemplar{{Labels: labels.FromStrings("t", "1"), Value: 1.5, Ts: 1700000000001}}}, {SeriesLabels: labels.FromStrings("a", "b")}},
			want: `{"status":"success","data":[{"seriesLabels":{"a":"<b>"},"exemplars":[{"labels":{"t":"1"},"value":"1.5","timestamp":1700000000.001}]},{"seriesLabels":{"a":"b"},"exemplars":null}]}`,
		},
		{
			name: "series list",
			data: []labels.Labels{labels.FromStrings("a", "<b>"), labels.EmptyLabels()},
			want: `{"status":"success","data":[{"a":"<b>"},{}]}`,
		},
		{
			name: "string list is HTML-escaped",
			data: []string{"<a>", "b&c"},
			want: `{"status":"success","data":["\u003ca\u003e","b\u0026c"]}`,
		},
		{
			name: "empty lists",
			data: []string{},
			want: `{"status":"success","data":[]}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, encodeSuccess(t, tc.data, tc.warnings, tc.infos))
		})
	}
}

func TestEncodeFailure(t *testing.T) {
	var out strings.Builder
	require.NoError(t, Encode(&out, func(s *jsoniter.Stream) {
		WriteFailure(s, "bad_data", `invalid parameter "x<y>&\"": boom`)
	}))
	require.Equal(t, `{"status":"error","errorType":"bad_data","error":"invalid parameter \"x\u003cy\u003e\u0026\\\"\": boom"}`, out.String())
}

func TestEncodeError(t *testing.T) {
	// Reflection-encoded values that jsoniter cannot write fail the
	// response instead of producing broken JSON.
	var out strings.Builder
	err := Encode(&out, func(s *jsoniter.Stream) {
		WriteSuccess(s, math.NaN(), nil, nil)
	})
	require.Error(t, err)
	require.Empty(t, out.String())
}

// BenchmarkEncodeMatrix encodes a range query answer of 1000 series with
// 100 points each.
func BenchmarkEncodeMatrix(b *testing.B) {
	const (
		numSeries = 1000
		numPoints = 100
	)
	m := make(promql.Matrix, numSeries)
	for i := range m {
		m[i].Metric = labels.FromStrings("__name__", "http_requests_total", "instance", "10.0.0.1:9090", "job", "api", "series", string(rune('a'+i%26))+string(rune('a'+i/26%26)))
		m[i].Floats = make([]promql.FPoint, numPoints)
		for j := range m[i].Floats {
			m[i].Floats[j] = promql.FPoint{T: 1700000000000 + int64(j)*15000, F: float64(i*numPoints+j) / 7}
		}
	}
	data := &QueryData{ResultType: parser.ValueTypeMatrix, Result: m}
	var out countingWriter
	iterations := 0
	b.ReportAllocs()
	for b.Loop() {
		err := Encode(&out, func(s *jsoniter.Stream) {
			WriteSuccess(s, data, nil, nil)
		})
		if err != nil {
			b.Fatal(err)
		}
		iterations++
	}
	b.SetBytes(int64(out.n / iterations))
	b.ReportMetric(float64(iterations*numSeries*numPoints)/b.Elapsed().Seconds(), "points/s")
}

// countingWriter discards what is written and counts the bytes.
type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	return len(p), nil
}

// chunkWriter records every Write and fails after failAfter writes when
// failAfter > 0.
type chunkWriter struct {
	chunks    []string
	failAfter int
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	if c.failAfter > 0 && len(c.chunks) >= c.failAfter {
		return 0, errBoom
	}
	c.chunks = append(c.chunks, string(p))
	return len(p), nil
}

func bigMatrix(numSeries, numPoints int) promql.Matrix {
	m := make(promql.Matrix, numSeries)
	for i := range m {
		m[i].Metric = labels.FromStrings("__name__", "m", "i", strings.Repeat("x", i%7)+string(rune('a'+i%26)))
		for j := range numPoints {
			m[i].Floats = append(m[i].Floats, promql.FPoint{T: int64(j) * 1000, F: float64(i + j)})
		}
	}
	return m
}

func TestEncodeStreamsLargeResults(t *testing.T) {
	m := bigMatrix(500, 100)
	var want strings.Builder
	want.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for i := range m {
		if i > 0 {
			want.WriteString(",")
		}
		var one strings.Builder
		require.NoError(t, Encode(&one, func(s *jsoniter.Stream) { writeSeries(s, &m[i]) }))
		want.WriteString(one.String())
	}
	want.WriteString(`]}}`)

	var w chunkWriter
	require.NoError(t, Encode(&w, func(s *jsoniter.Stream) {
		WriteSuccess(s, &QueryData{ResultType: parser.ValueTypeMatrix, Result: m}, nil, nil)
	}))
	require.Greater(t, len(w.chunks), 2)
	for _, c := range w.chunks[:len(w.chunks)-1] {
		require.GreaterOrEqual(t, len(c), flushThreshold)
	}
	require.Equal(t, want.String(), strings.Join(w.chunks, ""))

	// A failing writer stops the encoding at the next boundary.
	failing := chunkWriter{failAfter: 1}
	err := Encode(&failing, func(s *jsoniter.Stream) {
		WriteSuccess(s, &QueryData{ResultType: parser.ValueTypeMatrix, Result: m}, nil, nil)
	})
	require.ErrorIs(t, err, errBoom)
	require.Len(t, failing.chunks, 1)
}

var errBoom = errors.New("boom")
