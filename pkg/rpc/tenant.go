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
