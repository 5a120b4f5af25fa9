package promapi

import (
	"io"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/jsonutil"
	"github.com/prometheus/prometheus/util/stats"
)

// The encoding reproduces what Prometheus' web/api/v1 writes with
// jsoniter.ConfigCompatibleWithStandardLibrary plus the custom encoders it
// registers globally in json_codec.go. Instead of registering global
// encoders, the types those encoders cover (matrices, vectors, series,
// samples, points, labels and exemplars) are written by hand below, and
// everything else goes through the same jsoniter configuration by
// reflection. Two details matter for byte equality:
//
//   - Plain Go strings encoded by reflection (error messages, warnings, label
//     names and values in lists, format_query output) are HTML-escaped,
//     while labels written by the custom encoders are not.
//   - Timestamps and sample values go through util/jsonutil exactly as in
//     Prometheus.
var jsonAPI = jsoniter.ConfigCompatibleWithStandardLibrary

const (
	// flushThreshold is how many buffered bytes make the encoder pass them
	// on to the writer at the next series or sample boundary, so that large
	// query results are streamed instead of held in memory whole.
	flushThreshold = 64 << 10
	// maxPooledBuffer is the largest encoding buffer handed back to
	// jsoniter's stream pool; larger ones are dropped.
	maxPooledBuffer = 1 << 20
)

// QueryData is the "data" of query and query_range responses.
type QueryData struct {
	ResultType parser.ValueType
	Result     parser.Value
	Stats      stats.QueryStats // nil: left out
}

// Encode calls write on a pooled stream writing to out and flushes it. The
// stream passes its buffer on to out only at series and sample boundaries
// once flushThreshold bytes have accumulated, and at the end; it returns the
// first encoding or write error, in which case the rest of the buffer is not
// written.
func Encode(out io.Writer, write func(*jsoniter.Stream)) error {
	s := jsonAPI.BorrowStream(out)
	defer func() {
		if cap(s.Buffer()) > maxPooledBuffer {
			s.SetBuffer(nil)
		}
		jsonAPI.ReturnStream(s)
	}()
	write(s)
	if s.Error != nil {
		return s.Error
	}
	return s.Flush()
}

// maybeFlush passes the buffer on once it holds flushThreshold bytes. It
// reports false once the stream has failed, to stop encoding early (for
// example when the client went away).
func maybeFlush(s *jsoniter.Stream) bool {
	if s.Buffered() >= flushThreshold {
		_ = s.Flush() // The error is kept in s.Error.
	}
	return s.Error == nil
}

// WriteSuccess writes the envelope of a successful response:
// {"status":"success","data":...,"warnings":[...],"infos":[...]}, leaving out
// empty warnings and infos.
func WriteSuccess(s *jsoniter.Stream, data any, warnings, infos []string) {
	s.WriteObjectStart()
	s.WriteObjectField("status")
	s.WriteString("success")
	if data != nil {
		s.WriteMore()
		s.WriteObjectField("data")
		writeData(s, data)
	}
	writeStrings(s, "warnings", warnings)
	writeStrings(s, "infos", infos)
	s.WriteObjectEnd()
}

// WriteFailure writes the envelope of an error response:
// {"status":"error","errorType":"...","error":"..."}.
func WriteFailure(s *jsoniter.Stream, errorType, message string) {
	s.WriteObjectStart()
	s.WriteObjectField("status")
	s.WriteString("error")
	s.WriteMore()
	s.WriteObjectField("errorType")
	s.WriteStringWithHTMLEscaped(errorType)
	s.WriteMore()
	s.WriteObjectField("error")
	s.WriteStringWithHTMLEscaped(message)
	s.WriteObjectEnd()
}

// writeStrings writes `,"field":["a","b"]`, or nothing when vals is empty.
func writeStrings(s *jsoniter.Stream, field string, vals []string) {
	if len(vals) == 0 {
		return
	}
	s.WriteMore()
	s.WriteObjectField(field)
	s.WriteArrayStart()
	for i, v := range vals {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteStringWithHTMLEscaped(v)
	}
	s.WriteArrayEnd()
}

// writeData writes the "data" value of a successful response.
func writeData(s *jsoniter.Stream, data any) {
	switch v := data.(type) {
	case *QueryData:
		writeQueryData(s, v)
	case []labels.Labels:
		s.WriteArrayStart()
		for i, l := range v {
			if i > 0 {
				s.WriteMore()
				if !maybeFlush(s) {
					return
				}
			}
			writeLabels(s, l)
		}
		s.WriteArrayEnd()
	case []exemplar.QueryResult:
		writeExemplarResults(s, v)
	default:
		s.WriteVal(v)
	}
}

// writeQueryData writes {"resultType":"...","result":...,"stats":...}.
func writeQueryData(s *jsoniter.Stream, d *QueryData) {
	s.WriteObjectStart()
	s.WriteObjectField("resultType")
	s.WriteString(string(d.ResultType))
	s.WriteMore()
	s.WriteObjectField("result")
	switch v := d.Result.(type) {
	case promql.Matrix:
		writeMatrix(s, v)
	case promql.Vector:
		writeVector(s, v)
	default:
		// promql.Scalar and promql.String marshal themselves.
		s.WriteVal(v)
	}
	if d.Stats != nil {
		s.WriteMore()
		s.WriteObjectField("stats")
		s.WriteVal(d.Stats)
	}
	s.WriteObjectEnd()
}

// writeMatrix writes [series,...]; an empty matrix is [].
func writeMatrix(s *jsoniter.Stream, m promql.Matrix) {
	s.WriteArrayStart()
	for i := range m {
		if i > 0 {
			s.WriteMore()
			if !maybeFlush(s) {
				return
			}
		}
		writeSeries(s, &m[i])
	}
	s.WriteArrayEnd()
}

// writeSeries writes
// {"metric":{...},"values":[[ts,"v"],...],"histograms":[[ts,{...}],...]},
// leaving out empty "values" and "histograms".
func writeSeries(s *jsoniter.Stream, series *promql.Series) {
	s.WriteObjectStart()
	s.WriteObjectField("metric")
	writeLabels(s, series.Metric)
	if len(series.Floats) > 0 {
		s.WriteMore()
		s.WriteObjectField("values")
		s.WriteArrayStart()
		for i, p := range series.Floats {
			if i > 0 {
				s.WriteMore()
			}
			writeFPoint(s, p)
		}
		s.WriteArrayEnd()
	}
	if len(series.Histograms) > 0 {
		s.WriteMore()
		s.WriteObjectField("histograms")
		s.WriteArrayStart()
		for i, p := range series.Histograms {
			if i > 0 {
				s.WriteMore()
			}
			writeHPoint(s, p)
		}
		s.WriteArrayEnd()
	}
	s.WriteObjectEnd()
}

// writeVector writes [sample,...]; an empty vector is [].
func writeVector(s *jsoniter.Stream, v promql.Vector) {
	s.WriteArrayStart()
	for i := range v {
		if i > 0 {
			s.WriteMore()
			if !maybeFlush(s) {
				return
			}
		}
		writeSample(s, &v[i])
	}
	s.WriteArrayEnd()
}

// writeSample writes {"metric":{...},"value":[ts,"v"]} for a float sample
// and {"metric":{...},"histogram":[ts,{...}]} for a histogram sample.
func writeSample(s *jsoniter.Stream, smpl *promql.Sample) {
	s.WriteObjectStart()
	s.WriteObjectField("metric")
	writeLabels(s, smpl.Metric)
	s.WriteMore()
	if smpl.H == nil {
		s.WriteObjectField("value")
		writeFPoint(s, promql.FPoint{T: smpl.T, F: smpl.F})
	} else {
		s.WriteObjectField("histogram")
		writeHPoint(s, promql.HPoint{T: smpl.T, H: smpl.H})
	}
	s.WriteObjectEnd()
}

// writeFPoint writes [ts,"v"].
func writeFPoint(s *jsoniter.Stream, p promql.FPoint) {
	s.WriteArrayStart()
	jsonutil.MarshalTimestamp(p.T, s)
	s.WriteMore()
	jsonutil.MarshalFloat(p.F, s)
	s.WriteArrayEnd()
}

// writeHPoint writes [ts,{"count":"c","sum":"s","buckets":[...]}].
func writeHPoint(s *jsoniter.Stream, p promql.HPoint) {
	s.WriteArrayStart()
	jsonutil.MarshalTimestamp(p.T, s)
	s.WriteMore()
	jsonutil.MarshalHistogram(p.H, s)
	s.WriteArrayEnd()
}

// writeLabels writes {"name":"value",...} in label order, without HTML
// escaping.
func writeLabels(s *jsoniter.Stream, ls labels.Labels) {
	s.WriteObjectStart()
	first := true
	ls.Range(func(l labels.Label) {
		if !first {
			s.WriteMore()
		}
		first = false
		s.WriteObjectField(l.Name)
		s.WriteString(l.Value)
	})
	s.WriteObjectEnd()
}

// writeExemplarResults writes
// [{"seriesLabels":{...},"exemplars":[{"labels":{...},"value":"v","timestamp":ts},...]},...].
// A nil exemplar list is null, as reflection writes it in Prometheus.
func writeExemplarResults(s *jsoniter.Stream, results []exemplar.QueryResult) {
	s.WriteArrayStart()
	for i := range results {
		if i > 0 {
			s.WriteMore()
			if !maybeFlush(s) {
				return
			}
		}
		res := &results[i]
		s.WriteObjectStart()
		s.WriteObjectField("seriesLabels")
		writeLabels(s, res.SeriesLabels)
		s.WriteMore()
		s.WriteObjectField("exemplars")
		if res.Exemplars == nil {
			s.WriteNil()
		} else {
			s.WriteArrayStart()
			for j := range res.Exemplars {
				if j > 0 {
					s.WriteMore()
				}
				writeExemplar(s, &res.Exemplars[j])
			}
			s.WriteArrayEnd()
		}
		s.WriteObjectEnd()
	}
	s.WriteArrayEnd()
}

// writeExemplar writes {"labels":{...},"value":"v","timestamp":ts}.
func writeExemplar(s *jsoniter.Stream, e *exemplar.Exemplar) {
	s.WriteObjectStart()
	s.WriteObjectField("labels")
	writeLabels(s, e.Labels)
	s.WriteMore()
	s.WriteObjectField("value")
	jsonutil.MarshalFloat(e.Value, s)
	s.WriteMore()
	s.WriteObjectField("timestamp")
	jsonutil.MarshalTimestamp(e.Ts, s)
	s.WriteObjectEnd()
}
