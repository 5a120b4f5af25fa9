package bucket

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func defaultConfig(t *testing.T, args ...string) Config {
	t.Helper()
	var cfg Config
	f := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(f)
	// The application sets the directory from -data.dir when the flag is empty.
	cfg.Filesystem.Dir = "./data/bucket"
	require.NoError(t, f.Parse(args))
	return cfg
}

func TestConfigFlags(t *testing.T) {
	cfg := defaultConfig(t)
	require.Equal(t, BackendFilesystem, cfg.Backend)
	require.Equal(t, "./data/bucket", cfg.Filesystem.Dir)
	require.True(t, cfg.S3.PathStyle)
	require.Equal(t, 3, cfg.Retry.MaxRetries)
	require.NoError(t, cfg.Validate())

	cfg = defaultConfig(t,
		"-bucket.backend=s3",
		"-bucket.s3.endpoint=127.0.0.1:9000",
		"-bucket.s3.bucket-name=blocks",
		"-bucket.s3.region=eu-west-1",
		"-bucket.s3.access-key-id=AKID",
		"-bucket.s3.secret-access-key=hunter2",
		"-bucket.s3.insecure",
		"-bucket.s3.path-style=false",
		"-bucket.max-retries=5",
		"-bucket.retry-min-backoff=1s",
		"-bucket.retry-max-backoff=1m",
	)
	require.NoError(t, cfg.Validate())
	require.Equal(t, S3Config{
		Endpoint: "127.0.0.1:9000", BucketName: "blocks", Region: "eu-west-1",
		AccessKeyID: "AKID", SecretAccessKey: flagext.SecretWithValue("hunter2"), Insecure: true,
	}, cfg.S3)
	require.Equal(t, RetryConfig{MaxRetries: 5, MinBackoff: time.Second, MaxBackoff: time.Minute}, cfg.Retry)

	// The secret does not leak through fmt, slog or YAML.
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "s3", cfg.S3, "cfg", cfg)
	out, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%v", cfg.S3), logs.String(), string(out)} {
		require.NotContains(t, s, "hunter2")
		require.Contains(t, s, "AKID")
	}
}

func TestConfigValidate(t *testing.T) {
	s3 := func(args ...string) []string {
		return append([]string{"-bucket.backend=s3", "-bucket.s3.endpoint=127.0.0.1:9000", "-bucket.s3.bucket-name=blocks"}, args...)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // a flag name the message must carry; "" for valid
	}{
		{"default", nil, ""},
		{"s3 anonymous", s3(), ""},
		{"unknown backend", []string{"-bucket.backend=gcs"}, "-bucket.backend"},
		{"empty dir", []string{"-bucket.filesystem.dir="}, "-bucket.filesystem.dir"},
		{"no endpoint", s3("-bucket.s3.endpoint="), "-bucket.s3.endpoint"},
		{"endpoint with scheme", s3("-bucket.s3.endpoint=http://127.0.0.1:9000"), "-bucket.s3.insecure"},
		{"endpoint with path", s3("-bucket.s3.endpoint=127.0.0.1:9000/x"), "-bucket.s3.endpoint"},
		{"no bucket", s3("-bucket.s3.bucket-name="), "-bucket.s3.bucket-name"},
		{"short bucket", s3("-bucket.s3.bucket-name=ab"), "-bucket.s3.bucket-name"},
		{"bad bucket", s3("-bucket.s3.bucket-name=blocks..x"), "-bucket.s3.bucket-name"},
		{"key without secret", s3("-bucket.s3.access-key-id=x"), "-bucket.s3.secret-access-key"},
		{"negative retries", []string{"-bucket.max-retries=-1"}, "-bucket.max-retries"},
		{"zero backoff", []string{"-bucket.retry-min-backoff=0s"}, "-bucket.retry-min-backoff"},
		{"max below min", []string{"-bucket.retry-max-backoff=1ms"}, "-bucket.retry-max-backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig(t, tc.args...)
			err := cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestNew(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	cfg := defaultConfig(t, "-bucket.filesystem.dir="+filepath.Join(t.TempDir(), "bucket"))
	b, err := New(cfg, "compactor", testLogger(), reg)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Upload(ctx, "x", strings.NewReader("x")))
	ok, err := b.Exists(ctx, "x")
	require.NoError(t, err)
	require.True(t, ok)
	// Again with the same component and registry.
	b2, err := New(cfg, "compactor", testLogger(), reg)
	require.NoError(t, err)
	require.NoError(t, b2.Close())

	cfg.Backend = "nope"
	_, err = New(cfg, "compactor", testLogger(), reg)
	require.ErrorContains(t, err, "-bucket.backend")
}
