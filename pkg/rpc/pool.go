package rpc

import (
	"fmt"
	"log/slog"
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
			return nil, fmt.Errorf("dial ingester %s: %w", addr, err)
		}
		return &PooledIngester{IngesterClient: NewIngesterClient(cc), HealthClient: grpc_health_v1.NewHealthClient(cc), cc: cc}, nil
	})
	clients := promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name:        "isobar_ingester_clients",
		Help:        "Connections held to ingesters.",
		ConstLabels: prometheus.Labels{"client": who},
	})
	return client.NewPool("ingester", client.PoolConfig{
		CheckInterval:      15 * time.Second,
		HealthCheckEnabled: true,
		HealthCheckTimeout: time.Second,
	}, client.NewRingServiceDiscovery(r), factory, clients, isolog.GoKit(logger))
}
