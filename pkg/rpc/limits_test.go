package rpc

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// bigReader answers with n label values or n series whose labels are
// valueLen bytes long.
type bigReader struct {
	IngesterReaderServer
	n, valueLen int
}

func (r *bigReader) values() []string {
	out := make([]string, r.n)
	for i := range out {
		out[i] = fmt.Sprintf("%08d", i) + strings.Repeat("v", r.valueLen-8)
	}
	return out
}

func (r *bigReader) LabelValues(context.Context, *LabelsRequest) ([]string, error) {
	return r.values(), nil
}

func (r *bigReader) LabelNames(context.Context, *LabelsRequest) ([]string, error) { return nil, nil }

func (r *bigReader) QueryStream(_ context.Context, _ *prompb.Query, send func(*prompb.ChunkedReadResponse) error) error {
	var all []*prompb.ChunkedSeries
	for _, v := range r.values() {
		all = append(all, &prompb.ChunkedSeries{Labels: []prompb.Label{{Name: "v", Value: v}}})
	}
	return send(&prompb.ChunkedReadResponse{ChunkedSeries: all})
}

// startReader serves srv with a gRPC server that sends at most maxSend
// bytes per message, and returns a client that takes at most maxRecv.
func startReader(t *testing.T, srv IngesterReaderServer, maxSend, maxRecv int) *IngesterClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(grpc.MaxSendMsgSize(maxSend), grpc.StreamInterceptor(ServerTenantStreamInterceptor))
	RegisterIngesterReaderServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), ClientConfig{MaxRecvMsgSize: maxRecv, MaxSendMsgSize: maxRecv}.DialOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return NewIngesterClient(cc)
}

// Label values far larger together than one gRPC message arrive whole, in
// order, in frames.
func TestLabelValuesStreamPastTheMessageLimit(t *testing.T) {
	srv := &bigReader{n: 10_000, valueLen: 1024} // ~10 MB of values
	c := startReader(t, srv, 2<<20, 2<<20)
	got, err := c.LabelValues(tenant.With(context.Background(), "t"), &LabelsRequest{Name: "v"})
	require.NoError(t, err)
	require.Equal(t, srv.values(), got)

	empty, err := startReader(t, &bigReader{}, 2<<20, 2<<20).LabelValues(tenant.With(context.Background(), "t"), &LabelsRequest{Name: "v"})
	require.NoError(t, err)
	require.Empty(t, empty)
}

func (r *bigReader) QueryExemplars(context.Context, *ExemplarsRequest) (*ExemplarsResponse, error) {
	resp := &ExemplarsResponse{}
	for _, v := range r.values() {
		resp.Series = append(resp.Series, prompb.TimeSeries{
			Labels:    []prompb.Label{{Name: "v", Value: v}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t"}}, Value: 1, Timestamp: 2}},
		})
	}
	return resp, nil
}

func (r *bigReader) QueryMetadata(context.Context, *MetadataRequest) (*MetadataResponse, error) {
	resp := &MetadataResponse{}
	for _, v := range r.values() {
		resp.Metadata = append(resp.Metadata, prompb.MetricMetadata{MetricFamilyName: v, Type: prompb.MetricMetadata_GAUGE, Help: "h"})
	}
	return resp, nil
}

// Exemplar and metadata answers larger than one message arrive whole.
func TestExemplarsAndMetadataStreamPastTheMessageLimit(t *testing.T) {
	srv := &bigReader{n: 5000, valueLen: 1024}
	c := startReader(t, srv, 2<<20, 2<<20)
	ctx := tenant.With(context.Background(), "t")
	want, err := srv.QueryExemplars(ctx, nil)
	require.NoError(t, err)
	got, err := c.QueryExemplars(ctx, &ExemplarsRequest{})
	require.NoError(t, err)
	require.Equal(t, want.Series, got.Series)

	wantMeta, err := srv.QueryMetadata(ctx, nil)
	require.NoError(t, err)
	gotMeta, err := c.QueryMetadata(ctx, &MetadataRequest{})
	require.NoError(t, err)
	require.Equal(t, wantMeta.Metadata, gotMeta.Metadata)
}

// A frame over the limit (here a server that ignores framing) is an
// internal error that names the flags to raise, not a tenant limit.
func TestMessageOverTheLimitNamesTheFlags(t *testing.T) {
	c := startReader(t, &bigReader{n: 5000, valueLen: 1024}, 100<<20, 1<<20)
	err := c.QueryStream(tenant.With(context.Background(), "t"), &prompb.Query{}, func(*prompb.ChunkedReadResponse) error { return nil })
	require.Error(t, err)
	require.Equal(t, CauseInternal, CauseOf(err))
	require.Contains(t, err.Error(), "-ingester.client.grpc-max-recv-msg-size")
}

// chunkQuerier is a storage.ChunkQuerier over a fixed list of series.
type chunkQuerier struct {
	storage.LabelQuerier
	series []storage.ChunkSeries
}

func (q chunkQuerier) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.ChunkSeriesSet {
	return &listChunkSeriesSet{series: q.series, i: -1}
}

type listChunkSeriesSet struct {
	series []storage.ChunkSeries
	i      int
}

func (s *listChunkSeriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *listChunkSeriesSet) At() storage.ChunkSeries           { return s.series[s.i] }
func (s *listChunkSeriesSet) Err() error                        { return nil }
func (s *listChunkSeriesSet) Warnings() annotations.Annotations { return nil }

// ServeChunkQuery counts labels in a frame's size: series with long labels
// and one small chunk each still come in frames of about maxFrameBytes.
func TestFramesAreSizedByEncodedBytes(t *testing.T) {
	var series []storage.ChunkSeries
	for i := range 5000 {
		ls := labels.FromStrings("__name__", "m", "v", fmt.Sprintf("%08d", i)+strings.Repeat("v", 1016))
		series = append(series, storage.NewListChunkSeriesFromSamples(ls, []chunks.Sample{sample{t: int64(i), f: 1}}))
	}
	var sizes []int
	total := 0
	err := ServeChunkQuery(context.Background(), chunkQuerier{series: series}, &prompb.Query{EndTimestampMs: 5000}, func(r *prompb.ChunkedReadResponse) error {
		sizes = append(sizes, r.Size())
		total += len(r.ChunkedSeries)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 5000, total)
	require.Greater(t, len(sizes), 4, "5 MB of labels must not go as one frame")
	for _, s := range sizes {
		require.LessOrEqual(t, s, maxFrameBytes+2048)
	}
}

type sample struct {
	t int64
	f float64
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample           { return s }
