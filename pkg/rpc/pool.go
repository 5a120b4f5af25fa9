package rpc

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	_ "github.com/grafana/dskit/grpcencoding/snappy" // registers the snappy compressor
	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
)

// PooledIngester is a pooled connection to one ingester, for pushes and
// reads.
type PooledIngester struct {
	*IngesterClient
	grpc_health_v1.HealthClient
	cc *grpc.ClientConn
}

// Close closes the connection.
func (c *PooledIngester) Close() error { return c.cc.Close() }

// NewIngesterPool returns a pool of connections to the ingesters of r: it
// health-checks them and drops those of members that left the ring. who
// names the user of the pool in its metric; compression is a gRPC
// compressor name ("snappy"), or empty for none.
func NewIngesterPool(who string, r dskitring.ReadRing, compression string, logger *slog.Logger, reg prometheus.Registerer) *client.Pool {
	return newPool("ingester", who, r, compression, logger, reg, func(cc *grpc.ClientConn) client.PoolClient {
		return &PooledIngester{IngesterClient: NewIngesterClient(cc), HealthClient: grpc_health_v1.NewHealthClient(cc), cc: cc}
	})
}

// PooledStoreGateway is a pooled connection to one store-gateway.
type PooledStoreGateway struct {
	*StoreGatewayClient
	grpc_health_v1.HealthClient
	cc *grpc.ClientConn
}

// Close closes the connection.
func (c *PooledStoreGateway) Close() error { return c.cc.Close() }

// NewStoreGatewayPool is NewIngesterPool for the store-gateways of r.
func NewStoreGatewayPool(who string, r dskitring.ReadRing, compression string, logger *slog.Logger, reg prometheus.Registerer) *client.Pool {
	return newPool("store-gateway", who, r, compression, logger, reg, func(cc *grpc.ClientConn) client.PoolClient {
		return &PooledStoreGateway{StoreGatewayClient: NewStoreGatewayClient(cc), HealthClient: grpc_health_v1.NewHealthClient(cc), cc: cc}
	})
}

func newPool(kind, who string, r dskitring.ReadRing, compression string, logger *slog.Logger, reg prometheus.Registerer, wrap func(*grpc.ClientConn) client.PoolClient) *client.Pool {
	factory := client.PoolAddrFunc(func(addr string) (client.PoolClient, error) {
		opts := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(ClientTenantInterceptor),
			grpc.WithStreamInterceptor(ClientTenantStreamInterceptor),
		}
		if compression != "" {
			opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(compression)))
		}
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("dial %s %s: %w", kind, addr, err)
		}
		return wrap(cc), nil
	})
	clients := promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name:        "isobar_" + strings.ReplaceAll(kind, "-", "_") + "_clients",
		Help:        "Connections held to " + kind + "s.",
		ConstLabels: prometheus.Labels{"client": who},
	})
	return client.NewPool(kind, client.PoolConfig{
		CheckInterval:      15 * time.Second,
		HealthCheckEnabled: true,
		HealthCheckTimeout: time.Second,
	}, client.NewRingServiceDiscovery(r), factory, clients, isolog.GoKit(logger))
}
