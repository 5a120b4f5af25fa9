package queryable

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/testutil/ringtest"
)

// replicaEnv, set to a series count, makes the test binary serve one
// replica of heapWorkload instead of running tests: it prints its gRPC
// address and serves until its standard input closes.
const replicaEnv = "ISOBAR_TEST_SERVE_REPLICA"

func TestMain(m *testing.M) {
	if n := os.Getenv(replicaEnv); n != "" {
		if err := serveReplica(n); err != nil {
			fmt.Fprintln(os.Stderr, "serve replica:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// heapWorkload is series i of the heap benchmark: a vNIC counter whose
// port label is over 200 bytes long, as OpenStack port names with their
// project and network IDs are.
func heapWorkload(i int) labels.Labels {
	return labels.FromStrings("__name__", "openstack_vnic_rx_bytes_total", "hypervisor", fmt.Sprintf("cmp-%04d", i%1000), "port", fmt.Sprintf("%06d-%s", i, strings.Repeat("x", 200)))
}

func serveReplica(count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("series count %q: %w", count, err)
	}
	dir, err := os.MkdirTemp("", "isobar-replica-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := tsdb.Open(dir, slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		return fmt.Errorf("open TSDB: %w", err)
	}
	defer db.Close()
	for start := 0; start < n; start += 10_000 {
		app := db.Appender(context.Background())
		for i := start; i < min(n, start+10_000); i++ {
			ls := heapWorkload(i)
			for ts := t0; ts <= t0+4*15_000; ts += 15_000 {
				if _, err := app.Append(0, ls, ts, float64(ts/15_000)); err != nil {
					return fmt.Errorf("append: %w", err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(rpc.ServerTenantInterceptor), grpc.StreamInterceptor(rpc.ServerTenantStreamInterceptor))
	rpc.RegisterIngesterReaderServer(srv, &dbReader{db: db})
	grpc_health_v1.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	fmt.Println(lis.Addr().String())
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

// remoteReplicas starts n processes that each serve a replica of the
// first series of heapWorkload, joins them into a ring, and returns a
// queryable over it that reads with replication factor 3.
func remoteReplicas(b *testing.B, n, series int) *Ingesters {
	outs := make([]*bufio.Reader, n)
	for i := range outs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", replicaEnv, series))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		require.NoError(b, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(b, err)
		require.NoError(b, cmd.Start())
		b.Cleanup(func() {
			_ = stdin.Close()
			_ = cmd.Wait()
		})
		outs[i] = bufio.NewReader(stdout)
	}
	addrs := make([]string, n)
	for i, out := range outs {
		line, err := out.ReadString('\n')
		require.NoError(b, err, "replica %d did not start", i)
		addrs[i] = strings.TrimSpace(line)
	}
	r := ringtest.Join(b, 3, addrs...)
	return NewIngesters(r.Client, r.Pool)
}
