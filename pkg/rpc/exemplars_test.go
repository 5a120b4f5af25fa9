package rpc

import (
	"math"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func TestExemplarsMessagesRoundTrip(t *testing.T) {
	req := &ExemplarsRequest{Start: math.MinInt64 / 2, End: math.MaxInt64, Matchers: [][]*prompb.LabelMatcher{
		{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "up"}, {Type: prompb.LabelMatcher_NRE, Name: "job", Value: "a.*"}},
		{}, // a selector without matchers stays one
	}}
	b, err := req.Marshal()
	require.NoError(t, err)
	var gotReq ExemplarsRequest
	require.NoError(t, gotReq.Unmarshal(b))
	require.Equal(t, *req, gotReq)

	res := []exemplar.QueryResult{{
		SeriesLabels: labels.FromStrings("__name__", "up", "job", "a"),
		Exemplars: []exemplar.Exemplar{
			{Labels: labels.FromStrings("trace_id", "x"), Value: 0.5, Ts: 10, HasTs: true},
			{Labels: labels.EmptyLabels(), Value: math.Inf(-1), Ts: -5, HasTs: true},
		},
	}}
	b, err = NewExemplarsResponse(res).Marshal()
	require.NoError(t, err)
	var resp ExemplarsResponse
	require.NoError(t, resp.Unmarshal(b))
	require.Equal(t, res, resp.Results())
}

func TestMetadataMessagesRoundTrip(t *testing.T) {
	req := &MetadataRequest{Metric: "up", Limit: 3, LimitPerMetric: -1}
	b, err := req.Marshal()
	require.NoError(t, err)
	var gotReq MetadataRequest
	require.NoError(t, gotReq.Unmarshal(b))
	require.Equal(t, *req, gotReq)

	families := map[string][]metadata.Metadata{"up": {{Type: model.MetricTypeGauge, Help: "Up."}}}
	for _, typ := range []model.MetricType{
		model.MetricTypeCounter, model.MetricTypeGauge, model.MetricTypeHistogram, model.MetricTypeGaugeHistogram,
		model.MetricTypeSummary, model.MetricTypeInfo, model.MetricTypeStateset, model.MetricTypeUnknown,
	} {
		families["m_"+string(typ)] = []metadata.Metadata{{Type: typ, Help: "h", Unit: "u"}, {Type: typ, Help: "other"}}
	}
	b, err = NewMetadataResponse(families).Marshal()
	require.NoError(t, err)
	var resp MetadataResponse
	require.NoError(t, resp.Unmarshal(b))
	require.Equal(t, families, resp.Families())
}
