package rpc

import (
	"flag"
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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
)

// DefaultMaxMsgSize is the default bound of one gRPC message between
// components, either way: large enough for any frame we send (frames are
// about a megabyte) and for the largest push a distributor forwards.
const DefaultMaxMsgSize = 100 << 20

// ClientConfig configures the gRPC connections to one kind of component.
type ClientConfig struct {
	// Compression is a gRPC compressor name ("snappy"), or empty for none.
	Compression    string `yaml:"grpc_compression"`
	MaxRecvMsgSize int    `yaml:"grpc_max_recv_msg_size"`
	MaxSendMsgSize int    `yaml:"grpc_max_send_msg_size"`
	// Credentials secure the connections (TLSConfig.ClientCredentials);
	// nil: plain text. Set by the process, not by a flag of its own.
	Credentials credentials.TransportCredentials `yaml:"-"`
}

// RegisterFlagsWithPrefix registers the flags under prefix ("ingester.client").
func (c *ClientConfig) RegisterFlagsWithPrefix(f *flag.FlagSet, prefix, kind string) {
	f.StringVar(&c.Compression, prefix+".grpc-compression", "", "Compress gRPC to "+kind+"s: empty for none (cheapest inside a data centre) or snappy.")
	f.IntVar(&c.MaxRecvMsgSize, prefix+".grpc-max-recv-msg-size", DefaultMaxMsgSize, "Largest gRPC message, in bytes, taken from "+kind+"s; keep it equal to their -server.grpc-max-send-msg-size-bytes.")
	f.IntVar(&c.MaxSendMsgSize, prefix+".grpc-max-send-msg-size", DefaultMaxMsgSize, "Largest gRPC message, in bytes, sent to "+kind+"s; keep it equal to their -server.grpc-max-recv-msg-size-bytes.")
}

// DefaultClientConfig is the configuration the flags default to.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{MaxRecvMsgSize: DefaultMaxMsgSize, MaxSendMsgSize: DefaultMaxMsgSize}
}

// Validate checks the configuration; prefix names its flags.
func (c *ClientConfig) Validate(prefix string) error {
	if c.Compression != "" && c.Compression != "snappy" {
		return fmt.Errorf("unknown -%s.grpc-compression %q: use snappy or leave it empty", prefix, c.Compression)
	}
	if c.MaxRecvMsgSize <= 0 || c.MaxSendMsgSize <= 0 {
		return fmt.Errorf("-%s.grpc-max-recv-msg-size and -%s.grpc-max-send-msg-size must be positive", prefix, prefix)
	}
	return nil
}

// DialOptions are the options of a connection made with c.
func (c ClientConfig) DialOptions() []grpc.DialOption {
	call := []grpc.CallOption{grpc.MaxCallRecvMsgSize(c.MaxRecvMsgSize), grpc.MaxCallSendMsgSize(c.MaxSendMsgSize)}
	if c.Compression != "" {
		call = append(call, grpc.UseCompressor(c.Compression))
	}
	creds := c.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUnaryInterceptor(ClientTenantInterceptor),
		grpc.WithStreamInterceptor(ClientTenantStreamInterceptor),
		grpc.WithDefaultCallOptions(call...),
	}
}

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
// names the user of the pool in its metric.
func NewIngesterPool(who string, r dskitring.ReadRing, cfg ClientConfig, logger *slog.Logger, reg prometheus.Registerer) *client.Pool {
	return newPool("ingester", who, r, cfg, logger, reg, func(cc *grpc.ClientConn) client.PoolClient {
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
func NewStoreGatewayPool(who string, r dskitring.ReadRing, cfg ClientConfig, logger *slog.Logger, reg prometheus.Registerer) *client.Pool {
	return newPool("store-gateway", who, r, cfg, logger, reg, func(cc *grpc.ClientConn) client.PoolClient {
		return &PooledStoreGateway{StoreGatewayClient: NewStoreGatewayClient(cc), HealthClient: grpc_health_v1.NewHealthClient(cc), cc: cc}
	})
}

func newPool(kind, who string, r dskitring.ReadRing, cfg ClientConfig, logger *slog.Logger, reg prometheus.Registerer, wrap func(*grpc.ClientConn) client.PoolClient) *client.Pool {
	factory := client.PoolAddrFunc(func(addr string) (client.PoolClient, error) {
		cc, err := grpc.NewClient(addr, cfg.DialOptions()...)
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
