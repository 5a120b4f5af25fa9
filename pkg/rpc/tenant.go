package rpc

import (
	"context"

	"github.com/grafana/dskit/user"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// ClientTenantInterceptor sends the tenant of the call's context along
// with the call, as gRPC metadata.
func ClientTenantInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, err := user.InjectIntoGRPCRequest(ctx)
	if err != nil {
		return status.Error(codes.InvalidArgument, "no tenant in the call's context: "+err.Error())
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// ServerTenantInterceptor puts the tenant the client sent into the call's
// context, after checking it: it names directories and bucket prefixes.
func ServerTenantInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	_, ctx, err := user.ExtractFromGRPCRequest(ctx)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "no tenant in the call: "+err.Error())
	}
	id, err := tenant.From(ctx)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := tenant.Validate(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return handler(ctx, req)
}

// ClientTenantStreamInterceptor is ClientTenantInterceptor for streams.
func ClientTenantStreamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, err := user.InjectIntoGRPCRequest(ctx)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "no tenant in the call's context: "+err.Error())
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// ServerTenantStreamInterceptor is ServerTenantInterceptor for streams.
func ServerTenantStreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	_, ctx, err := user.ExtractFromGRPCRequest(ss.Context())
	if err != nil {
		return status.Error(codes.InvalidArgument, "no tenant in the call: "+err.Error())
	}
	id, err := tenant.From(ctx)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := tenant.Validate(id); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return handler(srv, &tenantStream{ServerStream: ss, ctx: ctx})
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tenantStream) Context() context.Context { return s.ctx }
