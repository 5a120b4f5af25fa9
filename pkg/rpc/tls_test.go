package rpc

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isobar-tsdb/isobar/pkg/testutil/tlstest"
)

func TestTLSConfigValidate(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, "member", "127.0.0.1")
	for _, c := range []struct {
		cfg TLSConfig
		err string
	}{
		{cfg: TLSConfig{}},
		{cfg: TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CertFile}},
		{cfg: TLSConfig{CertFile: cert, KeyFile: key}, err: "set all three or none"},
		{cfg: TLSConfig{CertFile: cert, KeyFile: ca.CertFile, CAFile: ca.CertFile}, err: "-internal-grpc.tls-key-file"},
		{cfg: TLSConfig{CertFile: cert, KeyFile: key, CAFile: key}, err: "no PEM certificate"},
		{cfg: TLSConfig{CertFile: cert, KeyFile: key, CAFile: "/nonexistent"}, err: "-internal-grpc.tls-ca-file"},
	} {
		err := c.cfg.Validate()
		if c.err == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorContains(t, err, c.err)
	}
}

// A server with the credentials of a TLSConfig answers clients with a
// certificate of its CA, and refuses those without one or with another
// CA's.
func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, "member", "127.0.0.1")
	cfg := TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CertFile}
	addr, clientCreds := serveTLS(t, cfg)

	check := func(creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		require.NoError(t, err)
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = grpc_health_v1.NewHealthClient(cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		return err
	}
	require.NoError(t, check(clientCreds))

	require.Error(t, check(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(t)})), "no client certificate")
	other := tlstest.NewCA(t)
	otherCert, otherKey := other.Issue(t, "stranger", "127.0.0.1")
	_, strangerCreds, err := TLSConfig{CertFile: otherCert, KeyFile: otherKey, CAFile: ca.CertFile}.Credentials()
	require.NoError(t, err)
	require.Error(t, check(strangerCreds), "a certificate of another CA")

	_, wrongName, err := TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CertFile, ServerName: "elsewhere"}.Credentials()
	require.NoError(t, err)
	require.Error(t, check(wrongName), "the server's certificate does not name it")
}

// A certificate renewed on disk is what the next connection gets, without
// a restart; a half-written renewal keeps the last good one.
func TestRenewedCertificateServesNewConnections(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, "member-1", "127.0.0.1")
	addr, _ := serveTLS(t, TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CertFile})

	client, err := tls.LoadX509KeyPair(cert, key)
	require.NoError(t, err)
	served := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{client}, RootCAs: ca.Pool(t), NextProtos: []string{"h2"}})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	require.Equal(t, "member-1", served())

	renew := func(name string) {
		newCert, newKey := ca.Issue(t, name, "127.0.0.1")
		later := time.Now().Add(time.Minute)
		for _, f := range [][2]string{{newCert, cert}, {newKey, key}} {
			b, err := os.ReadFile(f[0])
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(f[1], b, 0o600))
			require.NoError(t, os.Chtimes(f[1], later, later))
		}
	}
	renew("member-2")
	require.Equal(t, "member-2", served())

	require.NoError(t, os.WriteFile(key, []byte("half written"), 0o600))
	require.NoError(t, os.Chtimes(key, time.Now().Add(2*time.Minute), time.Now().Add(2*time.Minute)))
	require.Equal(t, "member-2", served(), "the last good pair")
}

// serveTLS serves gRPC health checks on 127.0.0.1 with cfg's server
// credentials until the test ends, and returns the address and cfg's
// client credentials.
func serveTLS(t *testing.T, cfg TLSConfig) (string, credentials.TransportCredentials) {
	t.Helper()
	server, client, err := cfg.Credentials()
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.Creds(server))
	grpc_health_v1.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), client
}
