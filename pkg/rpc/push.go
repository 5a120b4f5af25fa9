package rpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// PushRequest carries an encoded remote-write 1.0 WriteRequest from a
// distributor to an ingester. The distributor builds it from the series'
// bytes as they arrived (rwproto.AppendSeries): nothing is encoded again.
type PushRequest struct {
	Body []byte
	// Segments, on the client, are sent one after the other as the body
	// instead of Body, without being copied together first.
	Segments [][]byte

	buf mem.Buffer // the pooled memory Body lives in, on the server
}

// PushResponse is the empty answer to a successful push.
type PushResponse struct{}

// Names on the wire.
const (
	// CodecName is the gRPC content subtype of Isobar's byte messages.
	CodecName  = "isobar-raw"
	pushMethod = "/isobar.Ingester/Push"
)

func init() {
	// gRPC looks codecs up by content subtype in its own registry, so this
	// one registration is what lets any server in the process decode pushes.
	encoding.RegisterCodecV2(rawCodec{})
}

// rawCodec moves PushRequest bodies as they are: the body already is the
// protobuf encoding of a WriteRequest.
type rawCodec struct{}

func (rawCodec) Name() string { return CodecName }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *PushRequest:
		if m.Segments != nil {
			out := make(mem.BufferSlice, len(m.Segments))
			for i, seg := range m.Segments {
				out[i] = mem.SliceBuffer(seg)
			}
			return out, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(m.Body)}, nil
	case *PushResponse:
		return nil, nil
	case *prompb.ChunkedReadResponse: // the bulk of every query: into a pooled buffer, freed once sent
		size := m.Size()
		pool := mem.DefaultBufferPool()
		buf := pool.Get(size)
		if _, err := m.MarshalToSizedBuffer((*buf)[:size]); err != nil {
			pool.Put(buf)
			return nil, err
		}
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	case interface{ Marshal() ([]byte, error) }: // prompb's and our messages
		b, err := m.Marshal()
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	return nil, fmt.Errorf("%s codec cannot marshal %T", CodecName, v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *PushRequest:
		// gRPC reuses its receive buffers and the decoded request points
		// into the body, so the body is gathered into a pooled buffer that
		// the handler frees once the push is done.
		m.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		m.Body = m.buf.ReadOnlyData()
		return nil
	case *PushResponse:
		return nil
	case *chunkFrame: // the bulk of every query
		return m.unmarshal(data)
	case interface{ Unmarshal([]byte) error }: // these copy what they keep
		return m.Unmarshal(data.Materialize())
	}
	return fmt.Errorf("%s codec cannot unmarshal %T", CodecName, v)
}

// IngesterServer is the ingester side of the push contract.
type IngesterServer interface {
	// PushBody stores the WriteRequest in body for the tenant in ctx. body
	// is reused once PushBody returns: nothing of it may be kept.
	PushBody(ctx context.Context, body []byte) error
}

var ingesterServiceDesc = grpc.ServiceDesc{
	ServiceName: "isobar.Ingester",
	HandlerType: (*IngesterServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Push",
		Handler:    pushHandler,
	}},
	Metadata: "pkg/rpc/push.go",
}

// RegisterIngesterServer serves srv's pushes on s.
func RegisterIngesterServer(s grpc.ServiceRegistrar, srv IngesterServer) {
	s.RegisterService(&ingesterServiceDesc, srv)
}

func pushHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := &PushRequest{}
	if err := dec(in); err != nil {
		return nil, err
	}
	defer func() {
		if in.buf != nil {
			in.buf.Free() // PushBody keeps nothing of the body
		}
	}()
	push := func(ctx context.Context, req any) (any, error) {
		if err := srv.(IngesterServer).PushBody(ctx, req.(*PushRequest).Body); err != nil {
			return nil, ToStatus(err)
		}
		return &PushResponse{}, nil
	}
	if interceptor == nil {
		return push(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: pushMethod}, push)
}

// IngesterClient pushes to one ingester.
type IngesterClient struct {
	cc grpc.ClientConnInterface
}

// NewIngesterClient returns a client over cc.
func NewIngesterClient(cc grpc.ClientConnInterface) *IngesterClient {
	return &IngesterClient{cc: cc}
}

// Push sends body, an encoded WriteRequest, for the tenant in ctx. Errors
// carry the cause the ingester gave them.
func (c *IngesterClient) Push(ctx context.Context, body []byte, opts ...grpc.CallOption) error {
	opts = append(opts, grpc.CallContentSubtype(CodecName))
	return FromStatus(c.cc.Invoke(ctx, pushMethod, &PushRequest{Body: body}, &PushResponse{}, opts...))
}

// PushSegments is Push of the body made of segs, in order. The segments
// must not change until it returns.
func (c *IngesterClient) PushSegments(ctx context.Context, segs [][]byte, opts ...grpc.CallOption) error {
	opts = append(opts, grpc.CallContentSubtype(CodecName))
	return FromStatus(c.cc.Invoke(ctx, pushMethod, &PushRequest{Segments: segs}, &PushResponse{}, opts...))
}

// ToStatus turns an error into a gRPC status whose code carries its cause.
// The cause also travels as an ErrorInfo detail, so that the client tells a
// tenant over its limits (ResourceExhausted, from us) from a message over
// gRPC's size limit (ResourceExhausted, from gRPC itself).
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isRPCError(err) {
		return err
	}
	cause := CauseOf(err)
	code := codes.Internal
	switch cause {
	case CauseBadData:
		code = codes.InvalidArgument
	case CauseTenantLimit:
		code = codes.ResourceExhausted
	case CauseUnavailable:
		code = codes.Unavailable
	case CauseDeduplicated:
		code = codes.AlreadyExists
	}
	st := status.New(code, err.Error())
	if withCause, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: causeDomain, Reason: cause.String()}); derr == nil {
		st = withCause
	}
	return st.Err()
}

// causeDomain names the ErrorInfo details that carry a Cause.
const causeDomain = "isobar"

// MessageSizeFlags names the flags that bound gRPC messages between
// components, for errors about a message over them.
const MessageSizeFlags = "-server.grpc-max-send-msg-size-bytes and -server.grpc-max-recv-msg-size-bytes on the server, " +
	"-ingester.client.grpc-max-recv-msg-size / -store-gateway.client.grpc-max-recv-msg-size (and the -send- ones) on the client"

// FromStatus turns a gRPC error back into an error with a cause. Failures
// to reach the ingester at all are unavailable: another replica may answer.
// A message over gRPC's size limits is our own configuration's fault, never
// a tenant limit that a sender would retry forever: it is internal, and
// its message names the flags.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Cause: CauseUnavailable, Msg: err.Error()}
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == causeDomain {
			return &Error{Cause: causeNamed(info.GetReason()), Msg: st.Message()}
		}
	}
	cause := CauseInternal
	switch st.Code() {
	case codes.InvalidArgument:
		cause = CauseBadData
	case codes.ResourceExhausted:
		return &Error{Cause: CauseInternal, Msg: fmt.Sprintf("a gRPC message between components is over its size limit (%s): raise %s", st.Message(), MessageSizeFlags)}
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		cause = CauseUnavailable
	}
	return &Error{Cause: cause, Msg: st.Message()}
}

func causeNamed(name string) Cause {
	for _, c := range []Cause{CauseBadData, CauseTenantLimit, CauseUnavailable, CauseDeduplicated} {
		if c.String() == name {
			return c
		}
	}
	return CauseInternal
}

func isRPCError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
