package promapi

import (
	"fmt"
	"net/http"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
)

// SeriesProtobuf is the media type a query-frontend accepts from a querier
// for the part of a query it evaluates further itself: the answer's series
// as a prompb.QueryResult, exact where JSON is not (native histograms keep
// their schema and spans). An instant vector comes as series of one point.
// Warnings and infos travel in the WarningHeader and InfoHeader headers.
const SeriesProtobuf = "application/x-isobar-series+protobuf"

// Headers of a SeriesProtobuf answer, one value per warning or info.
const (
	WarningHeader = "X-Isobar-Warning"
	InfoHeader    = "X-Isobar-Info"
)

// SamplesHeader carries, on a querier's answer to a query, the samples its
// evaluation read (the PromQL engine's total samples): the query-frontend
// sizes the shards of the query's next runs by it.
const SamplesHeader = "X-Isobar-Samples"

// AcceptsSeries reports whether r asks for a SeriesProtobuf answer.
func AcceptsSeries(r *http.Request) bool { return r.Header.Get("Accept") == SeriesProtobuf }

// MarshalSeries encodes a matrix or a vector as a SeriesProtobuf answer; a
// scalar is a series without labels, as a rule evaluates it.
func MarshalSeries(v any) ([]byte, error) {
	var res prompb.QueryResult
	switch v := v.(type) {
	case promql.Matrix:
		res.Timeseries = make([]*prompb.TimeSeries, 0, len(v))
		for _, s := range v {
			ts := &prompb.TimeSeries{Labels: toLabels(s.Metric), Samples: make([]prompb.Sample, 0, len(s.Floats))}
			for _, p := range s.Floats {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: p.T, Value: p.F})
			}
			for _, p := range s.Histograms {
				ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(p.T, p.H))
			}
			res.Timeseries = append(res.Timeseries, ts)
		}
	case promql.Vector:
		res.Timeseries = make([]*prompb.TimeSeries, 0, len(v))
		for _, s := range v {
			ts := &prompb.TimeSeries{Labels: toLabels(s.Metric)}
			if s.H != nil {
				ts.Histograms = []prompb.Histogram{prompb.FromFloatHistogram(s.T, s.H)}
			} else {
				ts.Samples = []prompb.Sample{{Timestamp: s.T, Value: s.F}}
			}
			res.Timeseries = append(res.Timeseries, ts)
		}
	case promql.Scalar:
		res.Timeseries = []*prompb.TimeSeries{{Labels: []prompb.Label{}, Samples: []prompb.Sample{{Timestamp: v.T, Value: v.V}}}}
	default:
		return nil, fmt.Errorf("a %T answer has no series", v)
	}
	return res.Marshal()
}

// UnmarshalSeries decodes a SeriesProtobuf answer.
func UnmarshalSeries(b []byte) (promql.Matrix, error) {
	var res prompb.QueryResult
	if err := res.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("decode a series answer: %w", err)
	}
	out := make(promql.Matrix, 0, len(res.Timeseries))
	var lb labels.ScratchBuilder
	for _, ts := range res.Timeseries {
		lb.Reset()
		for _, l := range ts.Labels {
			lb.Add(l.Name, l.Value)
		}
		lb.Sort()
		s := promql.Series{Metric: lb.Labels()}
		if len(ts.Samples) > 0 {
			s.Floats = make([]promql.FPoint, len(ts.Samples))
			for i, p := range ts.Samples {
				s.Floats[i] = promql.FPoint{T: p.Timestamp, F: p.Value}
			}
		}
		if len(ts.Histograms) > 0 {
			s.Histograms = make([]promql.HPoint, len(ts.Histograms))
			for i, h := range ts.Histograms {
				s.Histograms[i] = promql.HPoint{T: h.Timestamp, H: h.ToFloatHistogram()}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func toLabels(ls labels.Labels) []prompb.Label {
	out := make([]prompb.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) { out = append(out, prompb.Label{Name: l.Name, Value: l.Value}) })
	return out
}
