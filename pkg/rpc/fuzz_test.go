package rpc

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// message is a hand-written wire message of this package.
type message interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// FuzzDecoders feeds every hand-written message decoder of the contract
// arbitrary bytes: none may panic, and what one decodes must encode and
// decode again to the same message.
//
//	go test ./pkg/rpc -run '^$' -fuzz '^FuzzDecoders$' -fuzztime 10m
func FuzzDecoders(f *testing.F) {
	seeds := []message{
		&LabelsRequest{Start: 1, End: 2, Name: "job", Matchers: []*prompb.LabelMatcher{{Name: "a", Value: "b"}}, Limit: 3},
		&LabelsResponse{Values: []string{"a", "b"}},
		&BlocksQuery{Query: &prompb.Query{StartTimestampMs: 1, EndTimestampMs: 2}, BlockIDs: []string{"01H"}},
		&BlocksLabelsRequest{LabelsRequest: LabelsRequest{Name: "x"}, BlockIDs: []string{"01H"}},
		&ExemplarsRequest{Start: 1, End: 2, Matchers: [][]*prompb.LabelMatcher{{{Name: "a", Value: "b"}}}},
		&ExemplarsResponse{Series: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "a", Value: "b"}}, Exemplars: []prompb.Exemplar{{Value: 1, Timestamp: 2}}}}},
		&MetadataRequest{Metric: "up", Limit: 1, LimitPerMetric: 2},
		&MetadataResponse{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Help: "h"}}},
		&CardinalityRequest{Kind: CardinalityLabelNames, LabelNames: []string{"a"}, Limit: 4},
		&CardinalityResponse{NumSeries: 1, Lists: []StatList{{Name: "a", Total: 1, Stats: []Stat{{"b", 1}}}}},
	}
	for i, m := range seeds {
		b, err := m.Marshal()
		require.NoError(f, err)
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		fresh := []func() message{
			func() message { return &LabelsRequest{} },
			func() message { return &LabelsResponse{} },
			func() message { return &BlocksQuery{} },
			func() message { return &BlocksLabelsRequest{} },
			func() message { return &ExemplarsRequest{} },
			func() message { return &ExemplarsResponse{} },
			func() message { return &MetadataRequest{} },
			func() message { return &MetadataResponse{} },
			func() message { return &CardinalityRequest{} },
			func() message { return &CardinalityResponse{} },
		}
		newMsg := fresh[int(kind)%len(fresh)]
		m := newMsg()
		if m.Unmarshal(data) != nil {
			return
		}
		b, err := m.Marshal()
		require.NoError(t, err)
		again := newMsg()
		require.NoError(t, again.Unmarshal(b))
		b2, err := again.Marshal()
		require.NoError(t, err)
		require.Equal(t, b, b2, "a decoded message encodes the same way twice")
	})
}
