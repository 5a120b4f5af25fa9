package bucket

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/testutil/ports"
)

// TestS3Versitygw runs the suite against versitygw, an S3 server, started
// by the test on 127.0.0.1. `make test` installs it and sets
// ISOBAR_VERSITYGW to its path.
func TestS3Versitygw(t *testing.T) {
	bin := os.Getenv("ISOBAR_VERSITYGW")
	if bin == "" {
		t.Skip("ISOBAR_VERSITYGW is not set: run `make test`, which installs versitygw and sets it")
	}
	root := t.TempDir()
	addr := ports.Addr(t)
	const key, secret = "isobar-test-key", "isobar-test-secret"
	logFile, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, "--access", key, "--secret", secret, "--port", addr, "posix", root)
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

	n := 0
	testBucket(t, func(t *testing.T) Bucket {
		n++
		return newTestS3(t, S3Config{
			Endpoint:        addr,
			BucketName:      fmt.Sprintf("isobar-test-%d", n),
			AccessKeyID:     key,
			SecretAccessKey: flagext.SecretWithValue(secret),
			Insecure:        true,
			PathStyle:       true,
		})
	})
}
