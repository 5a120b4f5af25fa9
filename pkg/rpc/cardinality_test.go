package rpc

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func TestCardinalityMessagesRoundTrip(t *testing.T) {
	req := &CardinalityRequest{Kind: CardinalityLabelValues, Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "job", Value: "node.*"}}, LabelNames: []string{"instance", "az"}, Limit: 7}
	b, err := req.Marshal()
	require.NoError(t, err)
	var gotReq CardinalityRequest
	require.NoError(t, gotReq.Unmarshal(b))
	require.Equal(t, *req, gotReq)

	resp := &CardinalityResponse{NumSeries: 10, NumLabelPairs: 4, MinTime: -5, MaxTime: 1 << 50, ChunkCount: 7, Lists: []StatList{
		{Name: "az", Total: 10, Stats: []Stat{{"az-1", 6}, {"az-2", 4}}},
		{Name: "empty"},
	}}
	b, err = resp.Marshal()
	require.NoError(t, err)
	var gotResp CardinalityResponse
	require.NoError(t, gotResp.Unmarshal(b))
	require.Equal(t, *resp, gotResp)
}

func TestMergeCardinality(t *testing.T) {
	// Two ingesters of three answered, replication factor 3: each series
	// is on both, so the answers hold two copies of it.
	a := &CardinalityResponse{NumSeries: 4, NumLabelPairs: 5, MinTime: 10, MaxTime: 20, ChunkCount: 6, Lists: []StatList{
		{Name: SeriesCountByMetricName, Total: 4, Stats: []Stat{{"up", 3}, {"node_load1", 1}}},
		{Name: LabelValueCountByLabelName, Total: 5, Stats: []Stat{{"instance", 3}, {"__name__", 2}}},
	}}
	b := &CardinalityResponse{NumSeries: 4, NumLabelPairs: 5, MinTime: 5, MaxTime: 15, ChunkCount: 6, Lists: []StatList{
		{Name: SeriesCountByMetricName, Total: 4, Stats: []Stat{{"up", 3}, {"node_load1", 1}}},
		{Name: LabelValueCountByLabelName, Total: 5, Stats: []Stat{{"instance", 3}, {"__name__", 2}}},
	}}
	got := MergeCardinality([]*CardinalityResponse{a, b}, 2, 1)
	require.Equal(t, &CardinalityResponse{NumSeries: 4, NumLabelPairs: 5, MinTime: 5, MaxTime: 20, ChunkCount: 6, Lists: []StatList{
		{Name: SeriesCountByMetricName, Total: 4, Stats: []Stat{{"up", 3}}},
		{Name: LabelValueCountByLabelName, Total: 5, Stats: []Stat{{"instance", 3}}},
	}}, got)
}
