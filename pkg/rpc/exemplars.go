package rpc

import (
	"context"
	"fmt"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	queryExemplarsMethod = "/isobar.IngesterReader/QueryExemplars"
	// The Go methods are named QueryMetadata because an ingester already
	// has a MetricMetadata method (the in-process api.MetadataQuerier).
	metricMetadataMethod = "/isobar.IngesterReader/MetricMetadata"
)

// QueryExemplars asks the ingester for the exemplars matching req. The
// answer comes in frames of a bounded size.
func (c *IngesterClient) QueryExemplars(ctx context.Context, req *ExemplarsRequest) (*ExemplarsResponse, error) {
	resp := &ExemplarsResponse{}
	err := receiveFrames(ctx, c.cc, &readerServiceDesc, queryExemplarsMethod, req, func(f *ExemplarsResponse) {
		resp.Series = appendFrame(resp.Series, f.Series)
	})
	return resp, err
}

// QueryMetadata asks the ingester for the metric metadata req selects
// (gRPC method MetricMetadata). The answer comes in frames of a bounded
// size.
func (c *IngesterClient) QueryMetadata(ctx context.Context, req *MetadataRequest) (*MetadataResponse, error) {
	resp := &MetadataResponse{}
	err := receiveFrames(ctx, c.cc, &readerServiceDesc, metricMetadataMethod, req, func(f *MetadataResponse) {
		resp.Metadata = appendFrame(resp.Metadata, f.Metadata)
	})
	return resp, err
}

// exemplarFrames cuts an exemplar answer into frames.
func exemplarFrames(r *ExemplarsResponse) []*ExemplarsResponse {
	var out []*ExemplarsResponse
	for _, f := range bySize(r.Series, func(ts prompb.TimeSeries) int { return ts.Size() }) {
		out = append(out, &ExemplarsResponse{Series: f})
	}
	return out
}

// metadataFrames cuts a metadata answer into frames.
func metadataFrames(r *MetadataResponse) []*MetadataResponse {
	var out []*MetadataResponse
	for _, f := range bySize(r.Metadata, func(m prompb.MetricMetadata) int { return m.Size() }) {
		out = append(out, &MetadataResponse{Metadata: f})
	}
	return out
}

// ServeExemplars runs req on eq and encodes the answer.
func ServeExemplars(eq storage.ExemplarQuerier, req *ExemplarsRequest) (*ExemplarsResponse, error) {
	sets := make([][]*labels.Matcher, 0, len(req.Matchers))
	for _, ms := range req.Matchers {
		set, err := FromLabelMatchers(ms)
		if err != nil {
			return nil, Errorf(CauseBadData, "%v", err)
		}
		sets = append(sets, set)
	}
	res, err := eq.Select(req.Start, req.End, sets...)
	if err != nil {
		return nil, fmt.Errorf("select exemplars: %w", err)
	}
	return NewExemplarsResponse(res), nil
}

// ExemplarsRequest asks for the exemplars in [Start, End] of the series
// matching any of the selectors in Matchers (one matcher list each), as
// storage.ExemplarQuerier.Select does.
type ExemplarsRequest struct {
	Start, End int64
	Matchers   [][]*prompb.LabelMatcher
}

// Marshal encodes the request as protobuf (fields 1 start, 2 end, 3 one
// selector per matcher list, each a message of repeated matchers in field
// 1).
func (r *ExemplarsRequest) Marshal() ([]byte, error) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.Start))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.End))
	for _, ms := range r.Matchers {
		var sel []byte
		for _, m := range ms {
			mb, err := m.Marshal()
			if err != nil {
				return nil, fmt.Errorf("encode matcher %s: %w", m.Name, err)
			}
			sel = protowire.AppendTag(sel, 1, protowire.BytesType)
			sel = protowire.AppendBytes(sel, mb)
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, sel)
	}
	return b, nil
}

// Unmarshal decodes what Marshal encodes.
func (r *ExemplarsRequest) Unmarshal(b []byte) error {
	*r = ExemplarsRequest{}
	return eachField(b, func(num protowire.Number, v uint64, bytes []byte) error {
		switch num {
		case 1:
			r.Start = int64(v)
		case 2:
			r.End = int64(v)
		case 3:
			ms := []*prompb.LabelMatcher{}
			err := eachField(bytes, func(num protowire.Number, _ uint64, bytes []byte) error {
				if num != 1 {
					return nil
				}
				m := &prompb.LabelMatcher{}
				if err := m.Unmarshal(bytes); err != nil {
					return fmt.Errorf("decode matcher: %w", err)
				}
				ms = append(ms, m)
				return nil
			})
			if err != nil {
				return err
			}
			r.Matchers = append(r.Matchers, ms)
		}
		return nil
	})
}

// ExemplarsResponse carries exemplars: per series its labels and its
// exemplars, in the order the ingester's exemplar storage returns them.
type ExemplarsResponse struct {
	Series []prompb.TimeSeries
}

// NewExemplarsResponse encodes the result of an exemplar query.
func NewExemplarsResponse(res []exemplar.QueryResult) *ExemplarsResponse {
	out := &ExemplarsResponse{Series: make([]prompb.TimeSeries, 0, len(res))}
	for _, r := range res {
		ts := prompb.TimeSeries{Labels: toLabels(r.SeriesLabels), Exemplars: make([]prompb.Exemplar, 0, len(r.Exemplars))}
		for _, e := range r.Exemplars {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: toLabels(e.Labels), Value: e.Value, Timestamp: e.Ts})
		}
		out.Series = append(out.Series, ts)
	}
	return out
}

// Results decodes the response into what storage.ExemplarQuerier.Select
// returns. Exemplars on the wire always carry their timestamp.
func (r *ExemplarsResponse) Results() []exemplar.QueryResult {
	out := make([]exemplar.QueryResult, 0, len(r.Series))
	var b labels.ScratchBuilder
	for _, ts := range r.Series {
		qr := exemplar.QueryResult{SeriesLabels: fromLabels(&b, ts.Labels), Exemplars: make([]exemplar.Exemplar, 0, len(ts.Exemplars))}
		for _, e := range ts.Exemplars {
			qr.Exemplars = append(qr.Exemplars, exemplar.Exemplar{Labels: fromLabels(&b, e.Labels), Value: e.Value, Ts: e.Timestamp, HasTs: true})
		}
		out = append(out, qr)
	}
	return out
}

// Marshal encodes the series as repeated field 1, as prompb.QueryResult
// does.
func (r *ExemplarsResponse) Marshal() ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	var b []byte
	for i := range r.Series {
		sb, err := r.Series[i].Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode exemplars of series %d: %w", i, err)
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	return b, nil
}

// Unmarshal decodes what Marshal encodes.
func (r *ExemplarsResponse) Unmarshal(b []byte) error {
	r.Series = r.Series[:0]
	return eachField(b, func(num protowire.Number, _ uint64, bytes []byte) error {
		if num != 1 {
			return nil
		}
		var ts prompb.TimeSeries
		if err := ts.Unmarshal(bytes); err != nil {
			return fmt.Errorf("decode exemplar series: %w", err)
		}
		r.Series = append(r.Series, ts)
		return nil
	})
}

// MetadataRequest asks for the metric metadata of Metric (all families if
// empty), at most Limit families and LimitPerMetric entries per family
// (zero or less: no limit), as api.MetadataQuerier.MetricMetadata does.
type MetadataRequest struct {
	Metric                string
	Limit, LimitPerMetric int
}

// Marshal encodes the request as protobuf (fields 1 metric, 2 limit,
// 3 limit per metric).
func (r *MetadataRequest) Marshal() ([]byte, error) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, r.Metric)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.Limit))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(r.LimitPerMetric)), nil
}

// Unmarshal decodes what Marshal encodes.
func (r *MetadataRequest) Unmarshal(b []byte) error {
	*r = MetadataRequest{}
	return eachField(b, func(num protowire.Number, v uint64, bytes []byte) error {
		switch num {
		case 1:
			r.Metric = string(bytes)
		case 2:
			r.Limit = int(int64(v))
		case 3:
			r.LimitPerMetric = int(int64(v))
		}
		return nil
	})
}

// MetadataResponse carries metric metadata, one entry per family and
// description.
type MetadataResponse struct {
	Metadata []prompb.MetricMetadata
}

// NewMetadataResponse encodes metadata by family name.
func NewMetadataResponse(families map[string][]metadata.Metadata) *MetadataResponse {
	out := &MetadataResponse{}
	for name, ms := range families {
		for _, m := range ms {
			out.Metadata = append(out.Metadata, prompb.MetricMetadata{
				MetricFamilyName: name, Type: ToMetricType(m.Type), Help: m.Help, Unit: m.Unit,
			})
		}
	}
	return out
}

// Families decodes the response into metadata by family name, in the
// order received.
func (r *MetadataResponse) Families() map[string][]metadata.Metadata {
	out := map[string][]metadata.Metadata{}
	for _, m := range r.Metadata {
		out[m.MetricFamilyName] = append(out[m.MetricFamilyName], metadata.Metadata{Type: FromMetricType(m.Type), Help: m.Help, Unit: m.Unit})
	}
	return out
}

// Marshal encodes the entries as repeated field 1.
func (r *MetadataResponse) Marshal() ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	var b []byte
	for i := range r.Metadata {
		mb, err := r.Metadata[i].Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode metadata of %s: %w", r.Metadata[i].MetricFamilyName, err)
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	return b, nil
}

// Unmarshal decodes what Marshal encodes.
func (r *MetadataResponse) Unmarshal(b []byte) error {
	r.Metadata = r.Metadata[:0]
	return eachField(b, func(num protowire.Number, _ uint64, bytes []byte) error {
		if num != 1 {
			return nil
		}
		var m prompb.MetricMetadata
		if err := m.Unmarshal(bytes); err != nil {
			return fmt.Errorf("decode metadata: %w", err)
		}
		r.Metadata = append(r.Metadata, m)
		return nil
	})
}

// ToMetricType is the wire type of a metric type; types the wire does not
// know become UNKNOWN.
func ToMetricType(t model.MetricType) prompb.MetricMetadata_MetricType {
	switch t {
	case model.MetricTypeCounter:
		return prompb.MetricMetadata_COUNTER
	case model.MetricTypeGauge:
		return prompb.MetricMetadata_GAUGE
	case model.MetricTypeHistogram:
		return prompb.MetricMetadata_HISTOGRAM
	case model.MetricTypeGaugeHistogram:
		return prompb.MetricMetadata_GAUGEHISTOGRAM
	case model.MetricTypeSummary:
		return prompb.MetricMetadata_SUMMARY
	case model.MetricTypeInfo:
		return prompb.MetricMetadata_INFO
	case model.MetricTypeStateset:
		return prompb.MetricMetadata_STATESET
	}
	return prompb.MetricMetadata_UNKNOWN
}

// FromMetricType is the metric type of a wire type.
func FromMetricType(t prompb.MetricMetadata_MetricType) model.MetricType {
	switch t {
	case prompb.MetricMetadata_COUNTER:
		return model.MetricTypeCounter
	case prompb.MetricMetadata_GAUGE:
		return model.MetricTypeGauge
	case prompb.MetricMetadata_HISTOGRAM:
		return model.MetricTypeHistogram
	case prompb.MetricMetadata_GAUGEHISTOGRAM:
		return model.MetricTypeGaugeHistogram
	case prompb.MetricMetadata_SUMMARY:
		return model.MetricTypeSummary
	case prompb.MetricMetadata_INFO:
		return model.MetricTypeInfo
	case prompb.MetricMetadata_STATESET:
		return model.MetricTypeStateset
	}
	return model.MetricTypeUnknown
}

func toLabels(ls labels.Labels) []prompb.Label {
	out := make([]prompb.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) { out = append(out, prompb.Label{Name: l.Name, Value: l.Value}) })
	return out
}

func fromLabels(b *labels.ScratchBuilder, ls []prompb.Label) labels.Labels {
	b.Reset()
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}
