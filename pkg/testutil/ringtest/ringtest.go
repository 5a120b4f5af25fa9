// Package ringtest runs, for tests, a ring of gRPC servers on 127.0.0.1:
// each server joins one in-memory ring as an ingester, and a ring client and
// a connection pool read it as a distributor or querier would.
package ringtest

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"
	"github.com/grafana/dskit/services"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

// Ring is a running test ring.
type Ring struct {
	Servers []*grpc.Server // in ring order: ingester-0, ingester-1, ...
	Client  *dskitring.Ring
	Pool    *client.Pool
	// Index is a token index of the ring, for replication factor rf.
	Index            *ring.IndexWatcher
	HeartbeatTimeout time.Duration
}

// Start serves one gRPC server per register call (register puts the
// services on it), makes each an ACTIVE ingester of a new in-memory ring,
// and returns a ring client with replication factor rf and a pool of
// connections. Everything stops when the test ends.
func Start(t testing.TB, rf int, register ...func(*grpc.Server)) *Ring {
	t.Helper()
	var servers []*grpc.Server
	var addrs []string
	for _, reg := range register {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := grpc.NewServer(grpc.UnaryInterceptor(rpc.ServerTenantInterceptor), grpc.StreamInterceptor(rpc.ServerTenantStreamInterceptor))
		reg(srv)
		grpc_health_v1.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		servers = append(servers, srv)
		addrs = append(addrs, lis.Addr().String())
	}
	r := Join(t, rf, addrs...)
	r.Servers = servers
	return r
}

// Join makes each address, a gRPC server already serving the ingester
// services and health (perhaps in another process), an ACTIVE ingester of
// a new in-memory ring, and returns a ring client with replication factor
// rf and a pool of connections. Everything stops when the test ends.
func Join(t testing.TB, rf int, addrs ...string) *Ring {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	var rc ring.Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	rc.RegisterFlags(fs, "ringtest")
	require.NoError(t, fs.Parse(nil))
	rc.HeartbeatPeriod = 100 * time.Millisecond
	store, err := ring.NewKV(rc, nil, logger, nil)
	require.NoError(t, err)

	r := &Ring{}
	for i, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		c := rc
		c.InstanceID = fmt.Sprintf("ingester-%d", i)
		c.InstanceAddr = host
		c.InstancePort, err = strconv.Atoi(port)
		require.NoError(t, err)
		lc, err := ring.NewLifecycler(c, ring.Ingesters, store, t.TempDir()+"/tokens", logger, nil)
		require.NoError(t, err)
		run(t, lc)
	}
	r.Client, err = ring.NewClient(rc, ring.Ingesters, rf, store, logger, nil)
	require.NoError(t, err)
	run(t, r.Client)
	require.Eventually(t, func() bool { return r.Client.InstancesWithTokensCount() == len(addrs) }, 10*time.Second, 10*time.Millisecond)
	snappy := rpc.DefaultClientConfig()
	snappy.Compression = "snappy"
	r.Pool = rpc.NewIngesterPool("test", r.Client, snappy, logger, nil)
	run(t, r.Pool)
	r.Index = ring.NewIndexWatcher(store, rf, logger)
	run(t, r.Index)
	require.Eventually(t, func() bool { return r.Index.Index().Sets() > 0 }, 10*time.Second, 10*time.Millisecond)
	r.HeartbeatTimeout = rc.HeartbeatTimeout
	return r
}

func run(t testing.TB, s services.Service) {
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), s))
	t.Cleanup(func() { _ = services.StopAndAwaitTerminated(context.Background(), s) })
}
