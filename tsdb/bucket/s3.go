package bucket

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/grafana/dskit/flagext"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// s3PartSize is the multipart part size for uploads of unknown size: minio
// buffers one part in memory, and would pick ~537 MiB parts otherwise. It
// caps such uploads at 10,000 parts, 160 GiB.
const s3PartSize = 16 << 20

// S3Config configures the S3 backend. Its String and LogValue methods
// redact the secret key, so the config can be printed and logged.
type S3Config struct {
	// Endpoint is host:port, without a scheme.
	Endpoint   string `yaml:"endpoint"`
	BucketName string `yaml:"bucket_name"`
	// Region may be empty: the client then asks the server.
	Region          string         `yaml:"region"`
	AccessKeyID     string         `yaml:"access_key_id"`
	SecretAccessKey flagext.Secret `yaml:"secret_access_key"`
	// Insecure uses plain HTTP instead of HTTPS.
	Insecure bool `yaml:"insecure"`
	// PathStyle forces path-style addressing (http://host/bucket/key), which
	// MinIO, Ceph RGW and versitygw on an IP address need. Without it the
	// client picks virtual-host style where the endpoint supports it.
	PathStyle bool `yaml:"path_style"`
	// CAFile is a PEM file of certificate authorities trusted for the
	// endpoint's certificate besides the system's: a private cloud's own.
	CAFile string `yaml:"ca_file"`
}

// String implements fmt.Stringer without the secret key.
func (c S3Config) String() string {
	return fmt.Sprintf("{Endpoint:%s BucketName:%s Region:%s AccessKeyID:%s SecretAccessKey:%s Insecure:%t PathStyle:%t CAFile:%s}",
		c.Endpoint, c.BucketName, c.Region, c.AccessKeyID, redact(c.SecretAccessKey), c.Insecure, c.PathStyle, c.CAFile)
}

// LogValue implements slog.LogValuer without the secret key.
func (c S3Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("bucket_name", c.BucketName),
		slog.String("region", c.Region),
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", redact(c.SecretAccessKey)),
		slog.Bool("insecure", c.Insecure),
		slog.Bool("path_style", c.PathStyle),
		slog.String("ca_file", c.CAFile),
	)
}

func redact(s flagext.Secret) string {
	if s.String() == "" {
		return ""
	}
	return "********"
}

// Validate checks the S3 settings; errors name the flag to fix.
func (c S3Config) Validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("S3 endpoint is empty: set -bucket.s3.endpoint to host:port")
	case strings.Contains(c.Endpoint, "://"):
		return fmt.Errorf("S3 endpoint %q has a scheme: set -bucket.s3.endpoint to host:port, and -bucket.s3.insecure for plain HTTP", c.Endpoint)
	case strings.Contains(c.Endpoint, "/"):
		return fmt.Errorf("S3 endpoint %q has a path: set -bucket.s3.endpoint to host:port", c.Endpoint)
	}
	if err := s3utils.CheckValidBucketName(c.BucketName); err != nil {
		return fmt.Errorf("invalid -bucket.s3.bucket-name %q: %w", c.BucketName, err)
	}
	if c.CAFile != "" && c.Insecure {
		return errors.New("-bucket.s3.ca-file is for HTTPS: drop it or -bucket.s3.insecure")
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey.String() == "") {
		return errors.New("set both -bucket.s3.access-key-id and -bucket.s3.secret-access-key, or neither for anonymous access")
	}
	return nil
}

// caPool is the system's certificate authorities and those of file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-bucket.s3.ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-bucket.s3.ca-file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// S3 stores objects in an S3 bucket through minio-go. It works with AWS
// S3, MinIO, Ceph RGW and other S3-compatible servers.
//
// The client does not retry by itself: New wraps it with retries.
type S3 struct {
	client    *minio.Client
	core      minio.Core
	bucket    string
	transport *http.Transport
	logger    *slog.Logger
}

var _ Bucket = (*S3)(nil)

// NewS3 returns a client for the bucket in cfg. It does not check that the
// bucket exists.
func NewS3(cfg S3Config, logger *slog.Logger) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	transport, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("create S3 transport: %w", err)
	}
	if cfg.CAFile != "" {
		pool, err := caPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		if transport.TLSClientConfig == nil {
			transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey.String(), "")
	if cfg.AccessKeyID == "" {
		// Keys from the environment (AWS_ACCESS_KEY_ID and
		// AWS_SECRET_ACCESS_KEY, or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD)
		// or the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
		// ~/.aws/credentials), so that no secret is on a command line;
		// with none of them, requests are anonymous.
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{},
		})
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       !cfg.Insecure,
		Transport:    transport,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   1, // the retry wrapper retries, see New
	})
	if err != nil {
		return nil, fmt.Errorf("create S3 client for %s: %w", cfg.Endpoint, err)
	}
	logger.Debug("S3 bucket client created", "config", cfg)
	return &S3{
		client:    client,
		core:      minio.Core{Client: client},
		bucket:    cfg.BucketName,
		transport: transport,
		logger:    logger,
	}, nil
}

// Client returns the underlying minio client, for tests and tooling.
func (b *S3) Client() *minio.Client { return b.client }

// isNoSuchKey reports whether err is S3's "no such key". Without a body
// (HEAD) a 404 cannot tell a missing bucket from a missing key; minio-go
// reports it as NoSuchKey.
func isNoSuchKey(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && (resp.Code == minio.NoSuchKey || resp.Code == "NotFound")
}

func (b *S3) wrap(op, name string, err error) error {
	if isNoSuchKey(err) {
		return fmt.Errorf("%s %q: %w", op, name, ErrNotFound)
	}
	return fmt.Errorf("%s %q in S3 bucket %q: %w", op, name, b.bucket, err)
}

// Get implements Reader.
func (b *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return b.GetRange(ctx, name, 0, -1)
}

// GetRange implements Reader. Errors, not found included, are returned by
// the call: it waits for the response headers.
func (b *S3) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, fmt.Errorf("get %q: negative offset %d", name, off)
	}
	if length == 0 {
		// There is no empty HTTP range; only check that the object exists.
		if _, err := b.Attributes(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err := opts.SetRange(off, off+length-1)
		if err != nil {
			return nil, fmt.Errorf("get %q: %w", name, err)
		}
	case off > 0:
		err := opts.SetRange(off, 0)
		if err != nil {
			return nil, fmt.Errorf("get %q: %w", name, err)
		}
	}
	// Core.GetObject sends the request now; Client.GetObject would only
	// report errors on the first Read.
	body, _, _, err := b.core.GetObject(ctx, b.bucket, name, opts)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == minio.InvalidRange {
			// Range starts at or beyond the end: read nothing, as a file does.
			if _, err := b.Attributes(ctx, name); err != nil {
				return nil, err
			}
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, b.wrap("get", name, err)
	}
	return body, nil
}

// Exists implements Reader.
func (b *S3) Exists(ctx context.Context, name string) (bool, error) {
	_, err := b.Attributes(ctx, name)
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// Attributes implements Reader.
func (b *S3) Attributes(ctx context.Context, name string) (Attributes, error) {
	info, err := b.client.StatObject(ctx, b.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return Attributes{}, b.wrap("stat", name, err)
	}
	return Attributes{Size: info.Size, LastModified: info.LastModified}, nil
}

// Iter implements Reader. A non-recursive listing is collected and sorted
// before f is called, because S3 returns each page's objects before its
// common prefixes; a recursive listing is streamed.
func (b *S3) Iter(ctx context.Context, dir string, recursive bool, f func(string) error) error {
	prefix := strings.TrimSuffix(dir, "/")
	if prefix != "" {
		prefix += "/"
	}
	// Cancel to stop minio-go's listing when f returns early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	noOwner := false
	objects := b.client.ListObjectsIter(ctx, b.bucket, minio.ListObjectsOptions{
		Prefix:     prefix,
		Recursive:  recursive,
		FetchOwner: &noOwner,
	})
	var names []string
	for obj := range objects {
		if obj.Err != nil {
			return fmt.Errorf("list %q in S3 bucket %q: %w", dir, b.bucket, obj.Err)
		}
		if obj.Key == prefix {
			continue // a "directory marker" object some tools create
		}
		if !recursive {
			names = append(names, obj.Key)
			continue
		}
		if err := f(obj.Key); err != nil {
			return err
		}
	}
	// minio-go ends the listing quietly when the context is done.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q in S3 bucket %q: %w", dir, b.bucket, err)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := f(n); err != nil {
			return err
		}
	}
	return nil
}

// Upload implements Bucket. A PUT is atomic for readers. If the size of r
// is known (see readerSize) it is sent up front. Otherwise up to 16 MiB
// are read into memory: a smaller object is sent in one PUT, a larger one
// in a multipart upload of 16 MiB parts, buffered one at a time.
func (b *S3) Upload(ctx context.Context, name string, r io.Reader) error {
	size, ok := readerSize(r)
	if !ok {
		// Read up to a part: most objects of unknown size (JSON, gzipped
		// indexes) fit, and go as one PUT with a Content-Length.
		head, err := io.ReadAll(io.LimitReader(contextReader{ctx, r}, s3PartSize+1))
		if err != nil {
			return fmt.Errorf("upload %q: read: %w", name, err)
		}
		if len(head) <= s3PartSize {
			r, size = bytes.NewReader(head), int64(len(head))
		} else {
			r, size = io.MultiReader(bytes.NewReader(head), r), -1
		}
	}
	// For a large io.ReaderAt (*os.File) of known size, minio-go reads the
	// parts with ReadAt from offset 0, ignoring the read position.
	if ra, isReaderAt := r.(io.ReaderAt); isReaderAt && size >= 0 {
		if s, isSeeker := r.(io.Seeker); isSeeker {
			pos, err := s.Seek(0, io.SeekCurrent)
			if err != nil {
				return fmt.Errorf("upload %q: %w", name, err)
			}
			if pos != 0 {
				r = io.NewSectionReader(ra, pos, size)
			}
		}
	}
	opts := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		// Send the payload unsigned (the headers are still signed). Over
		// plain HTTP minio-go would otherwise use aws-chunked streaming
		// signatures, which some S3-compatible servers do not decode, and
		// which send an empty object without Content-Length (rejected with
		// MissingContentLength). TLS protects the payload over HTTPS.
		DisableContentSha256: true,
	}
	if size < 0 {
		opts.PartSize = s3PartSize
	}
	if _, err := b.client.PutObject(ctx, b.bucket, name, r, size, opts); err != nil {
		return b.wrap("upload", name, err)
	}
	return nil
}

// Delete implements Bucket.
func (b *S3) Delete(ctx context.Context, name string) error {
	err := b.client.RemoveObject(ctx, b.bucket, name, minio.RemoveObjectOptions{})
	if err != nil && !isNoSuchKey(err) {
		return b.wrap("delete", name, err)
	}
	return nil
}

// Close implements Bucket.
func (b *S3) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// readerSize returns how many bytes r has left, when that is cheap to
// know: for in-memory readers, regular files and section readers.
func readerSize(r io.Reader) (int64, bool) {
	switch r := r.(type) {
	case *bytes.Reader:
		return int64(r.Len()), true
	case *bytes.Buffer:
		return int64(r.Len()), true
	case *strings.Reader:
		return int64(r.Len()), true
	case *os.File:
		st, err := r.Stat()
		if err != nil || !st.Mode().IsRegular() {
			return 0, false
		}
		pos, err := r.Seek(0, io.SeekCurrent)
		if err != nil || pos > st.Size() {
			return 0, false
		}
		return st.Size() - pos, true
	case *io.SectionReader:
		pos, err := r.Seek(0, io.SeekCurrent)
		if err != nil || pos > r.Size() {
			return 0, false
		}
		return r.Size() - pos, true
	}
	return 0, false
}
