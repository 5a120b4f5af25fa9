package bucket

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// RetryConfig sets how transient failures are retried.
type RetryConfig struct {
	// MaxRetries is the number of retries after the first attempt; 0
	// disables retries.
	MaxRetries int `yaml:"max_retries"`
	// MinBackoff is the first delay; it doubles up to MaxBackoff. Each delay
	// is drawn at random from [d/2, d) so that clients do not retry in step.
	MinBackoff time.Duration `yaml:"retry_min_backoff"`
	MaxBackoff time.Duration `yaml:"retry_max_backoff"`
}

// Retrying is a Bucket that retries operations failing with a transient
// error: network errors, timeouts, and S3's 5xx, SlowDown and throttling
// responses. It never retries "not found", a context cancellation, or
// another 4xx such as AccessDenied.
//
// What is retried:
//   - Get and GetRange: until the reader is returned. A read failing
//     mid-stream is the caller's to retry.
//   - Iter: only if it fails before f was called once, so f never sees a
//     name twice.
//   - Upload: only if r is an io.Seeker, which is rewound to its position
//     at the call before each retry. Other readers are uploaded once.
//   - Exists, Attributes, Delete: always.
type Retrying struct {
	b      Bucket
	cfg    RetryConfig
	logger *slog.Logger
}

var _ Bucket = (*Retrying)(nil)

// NewRetrying wraps b with retries.
func NewRetrying(b Bucket, cfg RetryConfig, logger *slog.Logger) *Retrying {
	return &Retrying{b: b, cfg: cfg, logger: logger}
}

// do runs f until it succeeds, fails with a permanent error, the retries
// are used up or ctx ends.
func (r *Retrying) do(ctx context.Context, op, name string, f func() error) error {
	delay := r.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || !isTransient(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= r.cfg.MaxRetries {
			if attempt == 0 {
				return err
			}
			return fmt.Errorf("giving up after %d attempts: %w", attempt+1, err)
		}
		wait := jitter(delay)
		r.logger.Debug("retrying bucket operation", "operation", op, "object", name, "attempt", attempt+1, "backoff", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w while retrying after: %w", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, r.cfg.MaxBackoff)
	}
}

// jitter returns a random duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2)
}

// Get implements Reader.
func (r *Retrying) Get(ctx context.Context, name string) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "get", name, func() error {
		rc, err = r.b.Get(ctx, name)
		return err
	})
	return rc, err
}

// GetRange implements Reader.
func (r *Retrying) GetRange(ctx context.Context, name string, off, length int64) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "get_range", name, func() error {
		rc, err = r.b.GetRange(ctx, name, off, length)
		return err
	})
	return rc, err
}

// Exists implements Reader.
func (r *Retrying) Exists(ctx context.Context, name string) (ok bool, err error) {
	err = r.do(ctx, "exists", name, func() error {
		ok, err = r.b.Exists(ctx, name)
		return err
	})
	return ok, err
}

// Attributes implements Reader.
func (r *Retrying) Attributes(ctx context.Context, name string) (a Attributes, err error) {
	err = r.do(ctx, "attributes", name, func() error {
		a, err = r.b.Attributes(ctx, name)
		return err
	})
	return a, err
}

// permanent marks an error that must not be retried: one returned by
// Iter's callback, or one after the callback was called.
type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// Iter implements Reader.
func (r *Retrying) Iter(ctx context.Context, dir string, recursive bool, f func(string) error) error {
	err := r.do(ctx, "iter", dir, func() error {
		called := false
		err := r.b.Iter(ctx, dir, recursive, func(name string) error {
			called = true
			if err := f(name); err != nil {
				return permanent{err}
			}
			return nil
		})
		if err != nil && called {
			return permanent{err}
		}
		return err
	})
	var p permanent
	for errors.As(err, &p) {
		err = p.err
	}
	return err
}

// Upload implements Bucket.
func (r *Retrying) Upload(ctx context.Context, name string, rd io.Reader) error {
	s, ok := rd.(io.Seeker)
	if !ok {
		return r.b.Upload(ctx, name, rd)
	}
	start, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return r.b.Upload(ctx, name, rd) // not really seekable (a pipe)
	}
	first := true
	return r.do(ctx, "upload", name, func() error {
		if !first {
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("upload %q: rewind for retry: %w", name, err)
			}
		}
		first = false
		return r.b.Upload(ctx, name, rd)
	})
}

// Delete implements Bucket.
func (r *Retrying) Delete(ctx context.Context, name string) error {
	return r.do(ctx, "delete", name, func() error {
		return r.b.Delete(ctx, name)
	})
}

// Close implements Bucket.
func (r *Retrying) Close() error { return r.b.Close() }

// retryableS3Codes are S3 error codes worth retrying, as in minio-go.
var retryableS3Codes = map[string]bool{
	"RequestError":          true,
	"RequestTimeout":        true,
	"Throttling":            true,
	"ThrottlingException":   true,
	"RequestLimitExceeded":  true,
	"RequestThrottled":      true,
	"InternalError":         true,
	"ServiceUnavailable":    true,
	"SlowDown":              true,
	"SlowDownWrite":         true,
	"SlowDownRead":          true,
	"ExpiredToken":          true,
	"ExpiredTokenException": true,
}

// isTransient reports whether err may go away if the operation is retried.
func isTransient(err error) bool {
	switch {
	case err == nil, IsNotFound(err), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, new(permanent)):
		return false
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		if retryableS3Codes[resp.Code] {
			return true
		}
		switch resp.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false // 4xx such as AccessDenied, NoSuchBucket, InvalidArgument
	}
	// TLS misconfiguration does not heal by itself.
	var (
		unknownAuthority x509.UnknownAuthorityError
		certInvalid      x509.CertificateInvalidError
		hostname         x509.HostnameError
		recordHeader     tls.RecordHeaderError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &certInvalid) || errors.As(err, &hostname) || errors.As(err, &recordHeader) {
		return false
	}
	// An HTTP client timeout while the caller's context is still alive.
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE)
}
