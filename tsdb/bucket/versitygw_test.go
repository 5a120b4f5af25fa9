package bucket

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/testutil/ports"
	"github.com/isobar-tsdb/isobar/pkg/testutil/tlstest"
)

// TestS3Versitygw runs the suite against versitygw, an S3 server, started
// by the test on 127.0.0.1. `make test` installs it and sets
// ISOBAR_VERSITYGW to its path.
func TestS3Versitygw(t *testing.T) {
	addr := startVersitygw(t)
	n := 0
	testBucket(t, func(t *testing.T) Bucket {
		n++
		return newTestS3(t, S3Config{
			Endpoint:        addr,
			BucketName:      fmt.Sprintf("isobar-test-%d", n),
			AccessKeyID:     versitygwKey,
			SecretAccessKey: flagext.SecretWithValue(versitygwSecret),
			Insecure:        true,
			PathStyle:       true,
		})
	})
}

const versitygwKey, versitygwSecret = "isobar-test-key", "isobar-test-secret"

// startVersitygw starts versitygw on 127.0.0.1 with args added, and
// returns its address.
func startVersitygw(t *testing.T, args ...string) string {
	t.Helper()
	bin := os.Getenv("ISOBAR_VERSITYGW")
	if bin == "" {
		t.Skip("ISOBAR_VERSITYGW is not set: run `make test`, which installs versitygw and sets it")
	}
	root := t.TempDir()
	addr := ports.Addr(t)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	require.NoError(t, err)
	args = append(append([]string{"--access", versitygwKey, "--secret", versitygwSecret, "--port", addr}, args...), "posix", root)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("versitygw output:\n%s", out)
		}
	})
	ready := false
	for deadline := time.Now().Add(30 * time.Second); !ready && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			ready = true
		}
	}
	require.True(t, ready, "versitygw did not listen on %s", addr)
	return addr
}

// An S3 server whose certificate a private CA signed: with the CA in
// -bucket.s3.ca-file the bucket works; without it every call fails on
// the certificate, never silently in plain text.
func TestS3WithAPrivateCA(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, "s3", "127.0.0.1")
	addr := startVersitygw(t, "--cert", cert, "--key", key)
	cfg := S3Config{Endpoint: addr, BucketName: "isobar-ca", AccessKeyID: versitygwKey, SecretAccessKey: flagext.SecretWithValue(versitygwSecret), PathStyle: true}

	_, err := NewS3(S3Config{Endpoint: addr, BucketName: "isobar-ca", CAFile: ca.CertFile, Insecure: true}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "-bucket.s3.ca-file is for HTTPS")

	untrusted, err := NewS3(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	_, err = untrusted.Client().BucketExists(context.Background(), cfg.BucketName)
	require.ErrorContains(t, err, "certificate signed by unknown authority")

	cfg.CAFile = ca.CertFile
	b := newTestS3(t, cfg)
	require.NoError(t, b.Upload(context.Background(), "tenant/object", strings.NewReader("payload")))
	r, err := b.Get(context.Background(), "tenant/object")
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, "payload", string(got))
}
