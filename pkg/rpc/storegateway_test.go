package rpc

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// fakeStoreGateway holds the blocks in held and answers with fixed data.
type fakeStoreGateway struct {
	held    []string
	frames  int
	tenants chan string
}

func (f *fakeStoreGateway) check(ctx context.Context, ids []string) error {
	id, err := tenant.From(ctx)
	if err != nil {
		return Errorf(CauseBadData, "%v", err)
	}
	f.tenants <- id
	var missing []string
	for _, b := range ids {
		if !slices.Contains(f.held, b) {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return BlocksNotHeld(id, len(ids), missing)
	}
	return nil
}

func (f *fakeStoreGateway) Series(ctx context.Context, req *BlocksQuery, send func(*prompb.ChunkedReadResponse) error) error {
	if err := f.check(ctx, req.BlockIDs); err != nil {
		return err
	}
	for i := 0; i < f.frames; i++ {
		if err := send(&prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{{
			Labels: []prompb.Label{{Name: "__name__", Value: req.Query.Matchers[0].Value}},
			Chunks: []prompb.Chunk{{MinTimeMs: req.Query.StartTimestampMs, MaxTimeMs: req.Query.EndTimestampMs, Type: prompb.Chunk_XOR, Data: []byte{byte(i)}}},
		}}}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStoreGateway) LabelNames(ctx context.Context, req *BlocksLabelsRequest) ([]string, error) {
	if err := f.check(ctx, req.BlockIDs); err != nil {
		return nil, err
	}
	return append([]string{"names"}, req.BlockIDs...), nil
}

func (f *fakeStoreGateway) LabelValues(ctx context.Context, req *BlocksLabelsRequest) ([]string, error) {
	if err := f.check(ctx, req.BlockIDs); err != nil {
		return nil, err
	}
	return []string{"values-of", req.Name}, nil
}

func startStoreGateway(t *testing.T, srv StoreGatewayServer) *StoreGatewayClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(grpc.UnaryInterceptor(ServerTenantInterceptor), grpc.StreamInterceptor(ServerTenantStreamInterceptor))
	RegisterStoreGatewayServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(ClientTenantInterceptor),
		grpc.WithStreamInterceptor(ClientTenantStreamInterceptor))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return NewStoreGatewayClient(cc)
}

func TestStoreGatewayOverGRPC(t *testing.T) {
	fake := &fakeStoreGateway{held: []string{"A", "B"}, frames: 3, tenants: make(chan string, 10)}
	c := startStoreGateway(t, fake)
	ctx := tenant.With(context.Background(), "team-1")

	q := &BlocksQuery{
		Query:    &prompb.Query{StartTimestampMs: 10, EndTimestampMs: 20, Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "up"}}},
		BlockIDs: []string{"A", "B"},
	}
	var got []*prompb.ChunkedReadResponse
	require.NoError(t, c.Series(ctx, q, func(r *prompb.ChunkedReadResponse) error {
		// A frame's memory takes the frame after next: kept, it is copied.
		b, err := r.Marshal()
		require.NoError(t, err)
		kept := &prompb.ChunkedReadResponse{}
		require.NoError(t, kept.Unmarshal(b))
		got = append(got, kept)
		return nil
	}))
	require.Len(t, got, 3)
	for i, r := range got {
		require.Equal(t, "up", r.ChunkedSeries[0].Labels[0].Value)
		require.Equal(t, []byte{byte(i)}, r.ChunkedSeries[0].Chunks[0].Data)
		require.Equal(t, int64(10), r.ChunkedSeries[0].Chunks[0].MinTimeMs)
	}
	require.Equal(t, "team-1", <-fake.tenants, "the tenant travels with the stream")

	names, err := c.LabelNames(ctx, &BlocksLabelsRequest{BlockIDs: []string{"B"}})
	require.NoError(t, err)
	require.Equal(t, []string{"names", "B"}, names)
	<-fake.tenants
	values, err := c.LabelValues(ctx, &BlocksLabelsRequest{LabelsRequest: LabelsRequest{Name: "job"}, BlockIDs: []string{"A"}})
	require.NoError(t, err)
	require.Equal(t, []string{"values-of", "job"}, values)
	<-fake.tenants

	// Blocks the store-gateway does not hold fail the whole call, naming them.
	err = c.Series(ctx, &BlocksQuery{Query: q.Query, BlockIDs: []string{"A", "C", "D"}}, func(*prompb.ChunkedReadResponse) error {
		t.Fatal("no frame expected")
		return nil
	})
	require.Error(t, err)
	require.Equal(t, CauseUnavailable, CauseOf(err))
	require.Equal(t, []string{"C", "D"}, MissingBlocks(err))
	require.Contains(t, err.Error(), `2 of the 3 requested blocks of tenant "team-1"`)
	<-fake.tenants
	_, err = c.LabelValues(ctx, &BlocksLabelsRequest{LabelsRequest: LabelsRequest{Name: "job"}, BlockIDs: []string{"Z"}})
	require.Equal(t, []string{"Z"}, MissingBlocks(err))
	<-fake.tenants

	// No tenant: refused before the server is reached.
	_, err = c.LabelNames(context.Background(), &BlocksLabelsRequest{})
	require.Error(t, err)
	require.Nil(t, MissingBlocks(err))
}

func TestStoreGatewayMessagesRoundTrip(t *testing.T) {
	q := &BlocksQuery{
		Query: &prompb.Query{StartTimestampMs: -3, EndTimestampMs: 99,
			Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "job", Value: "a|b"}}},
		BlockIDs: []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV", "01BX5ZZKBKACTAV9WEVGEMMVRZ"},
	}
	b, err := q.Marshal()
	require.NoError(t, err)
	var gotQ BlocksQuery
	require.NoError(t, gotQ.Unmarshal(b))
	require.Equal(t, q.BlockIDs, gotQ.BlockIDs)
	require.Equal(t, q.Query.String(), gotQ.Query.String())

	r := &BlocksLabelsRequest{
		LabelsRequest: LabelsRequest{Start: 1, End: 2, Name: "n", Limit: 3,
			Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "a", Value: "b"}}},
		BlockIDs: []string{"x", "y"},
	}
	b, err = r.Marshal()
	require.NoError(t, err)
	var gotR BlocksLabelsRequest
	require.NoError(t, gotR.Unmarshal(b))
	require.Equal(t, *r, gotR)

	// The LabelsRequest part is what an ingester decodes: field 6 is
	// ignored, and a plain LabelsRequest decodes with no block IDs.
	var plain LabelsRequest
	require.NoError(t, plain.Unmarshal(b))
	require.Equal(t, r.LabelsRequest, plain)
	pb, err := r.LabelsRequest.Marshal()
	require.NoError(t, err)
	require.NoError(t, gotR.Unmarshal(pb))
	require.Empty(t, gotR.BlockIDs)

	require.Error(t, gotQ.Unmarshal([]byte{0x0a, 0x7f}), "truncated input is an error")
	require.Nil(t, MissingBlocks(Errorf(CauseInternal, "missing blocks: [a]")), "only unavailable errors name missing blocks")
}
