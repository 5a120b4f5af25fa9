package bucket

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backend names for -bucket.backend.
const (
	BackendFilesystem = "filesystem"
	BackendS3         = "s3"
)

// Config selects and configures the bucket backend.
type Config struct {
	Backend    string           `yaml:"backend"`
	Filesystem FilesystemConfig `yaml:"filesystem"`
	S3         S3Config         `yaml:"s3"`
	Retry      RetryConfig      `yaml:",inline"`
}

// FilesystemConfig configures the filesystem backend.
type FilesystemConfig struct {
	Dir string `yaml:"dir"`
}

// RegisterFlags registers the -bucket.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Backend, "bucket.backend", BackendFilesystem, "Object storage backend: filesystem or s3.")
	f.StringVar(&c.Filesystem.Dir, "bucket.filesystem.dir", "", "Directory of the filesystem backend; empty means <-data.dir>/bucket.")
	f.StringVar(&c.S3.Endpoint, "bucket.s3.endpoint", "", "S3 endpoint as host:port, without a scheme.")
	f.StringVar(&c.S3.BucketName, "bucket.s3.bucket-name", "", "S3 bucket name.")
	f.StringVar(&c.S3.Region, "bucket.s3.region", "", "S3 region. If empty, the client asks the server.")
	f.StringVar(&c.S3.AccessKeyID, "bucket.s3.access-key-id", "", "S3 access key ID. Without it, the keys come from the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or the shared credentials file (~/.aws/credentials); with none, requests are anonymous.")
	f.Var(&c.S3.SecretAccessKey, "bucket.s3.secret-access-key", "S3 secret access key. Prefer the environment or the YAML file to the command line, where other users can see it.")
	f.BoolVar(&c.S3.Insecure, "bucket.s3.insecure", false, "Use plain HTTP instead of HTTPS to reach S3.")
	f.StringVar(&c.S3.CAFile, "bucket.s3.ca-file", "", "PEM file of certificate authorities to trust for the S3 endpoint's certificate, besides the system's (a private cloud's own CA).")
	f.BoolVar(&c.S3.PathStyle, "bucket.s3.path-style", true, "Use path-style addressing (host/bucket/key), as MinIO and Ceph RGW on an IP address need. If false, the client uses virtual-host style where the endpoint supports it.")
	f.IntVar(&c.Retry.MaxRetries, "bucket.max-retries", 3, "Retries of a bucket operation failing with a transient error (network, 5xx, throttling). 0 disables retries.")
	f.DurationVar(&c.Retry.MinBackoff, "bucket.retry-min-backoff", 100*time.Millisecond, "Delay before the first retry of a bucket operation; it doubles at each retry.")
	f.DurationVar(&c.Retry.MaxBackoff, "bucket.retry-max-backoff", 5*time.Second, "Maximum delay between retries of a bucket operation.")
}

// Validate checks the config; errors name the flag to fix.
func (c *Config) Validate() error {
	switch c.Backend {
	case BackendFilesystem:
		if c.Filesystem.Dir == "" {
			return errors.New("bucket directory is empty: set -bucket.filesystem.dir")
		}
	case BackendS3:
		if err := c.S3.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown bucket backend %q: set -bucket.backend to %s or %s", c.Backend, BackendFilesystem, BackendS3)
	}
	switch {
	case c.Retry.MaxRetries < 0:
		return fmt.Errorf("negative -bucket.max-retries %d", c.Retry.MaxRetries)
	case c.Retry.MinBackoff <= 0:
		return fmt.Errorf("-bucket.retry-min-backoff must be positive, not %s", c.Retry.MinBackoff)
	case c.Retry.MaxBackoff < c.Retry.MinBackoff:
		return fmt.Errorf("-bucket.retry-max-backoff %s is less than -bucket.retry-min-backoff %s", c.Retry.MaxBackoff, c.Retry.MinBackoff)
	}
	return nil
}

// New builds the configured backend, wrapped with metrics labelled with
// component and, around them, retries: every attempt is measured. reg
// may be shared by several components and may be nil.
func New(cfg Config, component string, logger *slog.Logger, reg prometheus.Registerer) (Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bucket config: %w", err)
	}
	var (
		b   Bucket
		err error
	)
	switch cfg.Backend {
	case BackendFilesystem:
		b, err = NewFilesystem(cfg.Filesystem.Dir)
	case BackendS3:
		b, err = NewS3(cfg.S3, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s bucket: %w", cfg.Backend, err)
	}
	return NewRetrying(NewInstrumented(b, component, reg), cfg.Retry, logger), nil
}
