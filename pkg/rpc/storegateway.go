package rpc

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// StoreGatewayServer is the read side of a store-gateway: it answers for
// named blocks of the tenant in the call's context.
//
// A store-gateway answers for every requested block or for none: when it
// does not hold some of them it fails the whole call with an error made by
// BlocksNotHeld (cause CauseUnavailable), and the querier asks another
// replica for them.
type StoreGatewayServer interface {
	// Series sends the series of req.BlockIDs matching req.Query, with the
	// chunks that overlap the query's time range, sorted by labels, in
	// frames of a bounded size.
	Series(ctx context.Context, req *BlocksQuery, send func(*prompb.ChunkedReadResponse) error) error
	// LabelNames returns the sorted label names of the requested blocks.
	LabelNames(ctx context.Context, req *BlocksLabelsRequest) ([]string, error)
	// LabelValues returns the sorted values of req.Name in the requested
	// blocks.
	LabelValues(ctx context.Context, req *BlocksLabelsRequest) ([]string, error)
}

const (
	sgSeriesMethod      = "/isobar.StoreGateway/Series"
	sgLabelNamesMethod  = "/isobar.StoreGateway/LabelNames"
	sgLabelValuesMethod = "/isobar.StoreGateway/LabelValues"
)

var storeGatewayServiceDesc = grpc.ServiceDesc{
	ServiceName: "isobar.StoreGateway",
	HandlerType: (*StoreGatewayServer)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Series", ServerStreams: true, Handler: framesHandler(StoreGatewayServer.Series)},
		{StreamName: "LabelNames", ServerStreams: true, Handler: labelsStreamHandler(StoreGatewayServer.LabelNames)},
		{StreamName: "LabelValues", ServerStreams: true, Handler: labelsStreamHandler(StoreGatewayServer.LabelValues)},
	},
	Metadata: "pkg/rpc/storegateway.go",
}

// RegisterStoreGatewayServer serves srv's reads on s.
func RegisterStoreGatewayServer(s grpc.ServiceRegistrar, srv StoreGatewayServer) {
	s.RegisterService(&storeGatewayServiceDesc, srv)
}

// StoreGatewayClient reads blocks from one store-gateway.
type StoreGatewayClient struct {
	cc grpc.ClientConnInterface
}

// NewStoreGatewayClient returns a client over cc. The connection should
// carry ClientTenantInterceptor and ClientTenantStreamInterceptor.
func NewStoreGatewayClient(cc grpc.ClientConnInterface) *StoreGatewayClient {
	return &StoreGatewayClient{cc: cc}
}

// Series asks the store-gateway for the series of req.BlockIDs matching
// req.Query and hands each frame to recv, which must be done with a frame
// when its call for the next returns (as IngesterClient.QueryStream). An
// error for blocks the store-gateway does not hold lists them: see
// MissingBlocks.
func (c *StoreGatewayClient) Series(ctx context.Context, req *BlocksQuery, recv func(*prompb.ChunkedReadResponse) error) error {
	return receiveChunkFrames(ctx, c.cc, streamDesc(&storeGatewayServiceDesc, "Series"), sgSeriesMethod, req, recv)
}

// LabelNames asks the store-gateway for the label names of req.BlockIDs.
func (c *StoreGatewayClient) LabelNames(ctx context.Context, req *BlocksLabelsRequest) ([]string, error) {
	return c.labels(ctx, sgLabelNamesMethod, req)
}

// LabelValues asks the store-gateway for the values of req.Name in
// req.BlockIDs.
func (c *StoreGatewayClient) LabelValues(ctx context.Context, req *BlocksLabelsRequest) ([]string, error) {
	return c.labels(ctx, sgLabelValuesMethod, req)
}

func (c *StoreGatewayClient) labels(ctx context.Context, method string, req *BlocksLabelsRequest) ([]string, error) {
	return receiveLabels(ctx, c.cc, &storeGatewayServiceDesc, method, req)
}

// BlocksQuery asks a store-gateway for the series of some blocks.
type BlocksQuery struct {
	// Query holds the time range (both ends inclusive, ms) and matchers.
	Query *prompb.Query
	// BlockIDs are the ULIDs of the blocks to read, as strings.
	BlockIDs []string
}

// Marshal encodes the query as protobuf (field 1 the prompb.Query, field 2
// the repeated block IDs).
func (q *BlocksQuery) Marshal() ([]byte, error) {
	var b []byte
	if q.Query != nil {
		qb, err := q.Query.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode query: %w", err)
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, qb)
	}
	return appendBlockIDs(b, 2, q.BlockIDs), nil
}

// Unmarshal decodes what Marshal encodes.
func (q *BlocksQuery) Unmarshal(b []byte) error {
	*q = BlocksQuery{}
	return eachField(b, func(num protowire.Number, _ uint64, bytes []byte) error {
		switch num {
		case 1:
			q.Query = &prompb.Query{}
			if err := q.Query.Unmarshal(bytes); err != nil {
				return fmt.Errorf("decode query: %w", err)
			}
		case 2:
			q.BlockIDs = append(q.BlockIDs, string(bytes))
		}
		return nil
	})
}

// BlocksLabelsRequest asks a store-gateway for label names or values of
// some blocks. Its encoding is LabelsRequest's plus field 6, the repeated
// block IDs, so either side decodes the other's LabelsRequest part.
type BlocksLabelsRequest struct {
	LabelsRequest
	// BlockIDs are the ULIDs of the blocks to read, as strings.
	BlockIDs []string
}

// Marshal encodes the request as protobuf: LabelsRequest's fields 1-5 and
// repeated field 6 for the block IDs.
func (r *BlocksLabelsRequest) Marshal() ([]byte, error) {
	b, err := r.LabelsRequest.Marshal()
	if err != nil {
		return nil, err
	}
	return appendBlockIDs(b, 6, r.BlockIDs), nil
}

// Unmarshal decodes what Marshal encodes.
func (r *BlocksLabelsRequest) Unmarshal(b []byte) error {
	*r = BlocksLabelsRequest{}
	if err := r.LabelsRequest.Unmarshal(b); err != nil {
		return err
	}
	return eachField(b, func(num protowire.Number, _ uint64, bytes []byte) error {
		if num == 6 {
			r.BlockIDs = append(r.BlockIDs, string(bytes))
		}
		return nil
	})
}

func appendBlockIDs(b []byte, num protowire.Number, ids []string) []byte {
	for _, id := range ids {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, id)
	}
	return b
}

// missingBlocksMarker starts the list of blocks in a BlocksNotHeld error's
// message; MissingBlocks finds it again on the client's side.
const missingBlocksMarker = "missing blocks: ["

// BlocksNotHeld is the error of a store-gateway asked for blocks it does not
// hold (not owned, not loaded yet, or gone). Its cause is CauseUnavailable:
// another replica may hold them. The IDs survive gRPC, see MissingBlocks.
func BlocksNotHeld(tenantID string, requested int, ids []string) error {
	return Errorf(CauseUnavailable, "store-gateway does not hold %d of the %d requested blocks of tenant %q; %s%s]",
		len(ids), requested, tenantID, missingBlocksMarker, strings.Join(ids, " "))
}

// MissingBlocks returns the block IDs named by a BlocksNotHeld error, also
// after it crossed gRPC, or nil for any other error.
func MissingBlocks(err error) []string {
	if err == nil || CauseOf(err) != CauseUnavailable {
		return nil
	}
	msg := err.Error()
	i := strings.Index(msg, missingBlocksMarker)
	if i < 0 {
		return nil
	}
	rest := msg[i+len(missingBlocksMarker):]
	j := strings.IndexByte(rest, ']')
	if j < 0 {
		return nil
	}
	return strings.Fields(rest[:j])
}
