//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"
)

// s3Server is a running S3-compatible server (versitygw over a directory)
// on 127.0.0.1 holding one bucket.
type s3Server struct {
	*proc
	Endpoint, Bucket, AccessKey, SecretKey string
}

// versitygwBin finds versitygw, which scripts/install-test-deps.sh installs
// in $(go env GOPATH)/bin, or fails the test: a missing peer must not look
// like a pass.
func versitygwBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ISOBAR_VERSITYGW"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("versitygw"); err == nil {
		return bin
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	require.NoError(t, err)
	bin := filepath.Join(strings.TrimSpace(string(out)), "bin", "versitygw")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("versitygw (the S3 server of the tests) is not installed: run `make test-deps` (scripts/install-test-deps.sh): %v", err)
	}
	return bin
}

// startS3 starts an S3 server on a free port of 127.0.0.1 and creates its bucket.
func startS3(t *testing.T) *s3Server {
	t.Helper()
	root := t.TempDir()
	const bucket = "isobar-e2e"
	// versitygw's posix backend serves each directory of root as a bucket.
	require.NoError(t, os.Mkdir(filepath.Join(root, bucket), 0o755))
	s := &s3Server{Bucket: bucket, AccessKey: "isobar-e2e-key", SecretKey: "isobar-e2e-secret"}
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		s.Endpoint = addr
		s.proc = newProc(t, "versitygw", versitygwBin(t), []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr, "posix", root})
		s.start()
		err := s.waitReady()
		if err == nil {
			return s
		}
		if attempt < 3 && !s.running() {
			continue // the port was taken meanwhile
		}
		t.Fatalf("versitygw did not start: %v\n%s", err, s.currentLog())
	}
}

func (s *s3Server) client(t *testing.T) *minio.Client {
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	require.NoError(t, err)
	return c
}

func (s *s3Server) waitReady() error {
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		if !s.running() {
			return errors.New("versitygw exited")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok, err := c.BucketExists(ctx, s.Bucket)
		cancel()
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bucket %s not reachable after %s: exists=%v err=%v", s.Bucket, readyTimeout, ok, err)
		}
		time.Sleep(pollInterval)
	}
}

// flags point an isobar at the bucket.
func (s *s3Server) flags() []string {
	return []string{
		"-bucket.backend=s3", "-bucket.s3.endpoint=" + s.Endpoint, "-bucket.s3.bucket-name=" + s.Bucket,
		"-bucket.s3.access-key-id=" + s.AccessKey, "-bucket.s3.secret-access-key=" + s.SecretKey, "-bucket.s3.insecure=true",
	}
}
