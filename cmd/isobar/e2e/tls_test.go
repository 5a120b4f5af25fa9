//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/testutil/tlstest"
)

var grpcListenRE = regexp.MustCompile(`msg="gRPC server listening".*\baddr=(\S+)`)

// TestClusterWithMutualTLS runs a cluster whose gRPC between components
// is mutual TLS and whose memberlist gossip is TLS with a cluster label:
// writes reach the ingesters and reads come back through the querier; a
// gRPC client without a certificate, or with one another CA signed, is
// refused by every ingester.
func TestClusterWithMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, "isobar", "127.0.0.1")
	c := startCluster(t,
		"-internal-grpc.tls-cert-file="+cert, "-internal-grpc.tls-key-file="+key, "-internal-grpc.tls-ca-file="+ca.CertFile,
		"-memberlist.tls-enabled=true", "-memberlist.tls-cert-path="+cert, "-memberlist.tls-key-path="+key, "-memberlist.tls-ca-path="+ca.CertFile,
		"-memberlist.cluster-label=e2e-tls")

	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{}
	for i := range 100 {
		req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_tls_up", "hypervisor", fmt.Sprintf("cmp-%03d", i)}, sample(now, 1)))
	}
	mustPush(t, c.distributor.URL, "", req)
	res := apiClient{base: c.querier.URL}.query(t, "count(e2e_tls_up)", now)
	require.Len(t, res.Series, 1)
	require.Equal(t, 100.0, res.Series[0].Points[0].F)

	stranger := tlstest.NewCA(t)
	strangerCert, strangerKey := stranger.Issue(t, "stranger", "127.0.0.1")
	pair, err := tls.LoadX509KeyPair(strangerCert, strangerKey)
	require.NoError(t, err)
	own, err := tls.LoadX509KeyPair(cert, key)
	require.NoError(t, err)
	cas := ca.Pool(t)
	for _, ing := range c.ingesters {
		m := grpcListenRE.FindStringSubmatch(ing.currentLog())
		require.NotNil(t, m, "the ingester logs its gRPC address")
		addr := m[1]
		check := func(creds credentials.TransportCredentials) error {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithUnaryInterceptor(rpc.ClientTenantInterceptor))
			require.NoError(t, err)
			defer cc.Close()
			ctx, cancel := context.WithTimeout(tenant.With(context.Background(), "anonymous"), 5*time.Second)
			defer cancel()
			_, err = grpc_health_v1.NewHealthClient(cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
			return err
		}
		require.NoError(t, check(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{own}, RootCAs: cas})), "a member's certificate")
		require.Error(t, check(insecure.NewCredentials()), "plain text")
		require.Error(t, check(credentials.NewTLS(&tls.Config{RootCAs: cas})), "no client certificate")
		require.Error(t, check(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: cas})), "a certificate of another CA")
	}
}
