package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"
)

var (
	errSlowDown     = minio.ErrorResponse{Code: "SlowDown", StatusCode: 503, Message: "Please reduce your request rate."}
	errAccessDenied = minio.ErrorResponse{Code: minio.AccessDenied, StatusCode: 403, Message: "Access Denied."}
)

// flakyBucket fails the first failures calls of every operation with err.
type flakyBucket struct {
	mu       sync.Mutex
	failures int
	err      error
	calls    int
	uploaded []string // what each Upload attempt read
	onCall   func()
}

func (f *flakyBucket) call() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.onCall != nil {
		f.onCall()
	}
	if f.calls <= f.failures {
		return f.err
	}
	return nil
}

func (f *flakyBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := f.call(); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("data")), nil
}

func (f *flakyBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return f.Get(ctx, name)
}

func (f *flakyBucket) Exists(context.Context, string) (bool, error) {
	if err := f.call(); err != nil {
		return false, err
	}
	return true, nil
}

func (f *flakyBucket) Attributes(context.Context, string) (Attributes, error) {
	if err := f.call(); err != nil {
		return Attributes{}, err
	}
	return Attributes{Size: 4}, nil
}

func (f *flakyBucket) Iter(_ context.Context, _ string, _ bool, fn func(string) error) error {
	if err := f.call(); err != nil {
		return err
	}
	return fn("a")
}

func (f *flakyBucket) Upload(_ context.Context, _ string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.uploaded = append(f.uploaded, string(data))
	f.mu.Unlock()
	return f.call()
}

func (f *flakyBucket) Delete(context.Context, string) error { return f.call() }
func (f *flakyBucket) Close() error                         { return nil }

var testRetryConfig = RetryConfig{MaxRetries: 3, MinBackoff: time.Microsecond, MaxBackoff: 10 * time.Microsecond}

func TestRetrying(t *testing.T) {
	ctx := context.Background()
	ops := map[string]func(b Bucket) error{
		"get": func(b Bucket) error {
			rc, err := b.Get(ctx, "x")
			if err == nil {
				rc.Close()
			}
			return err
		},
		"get_range": func(b Bucket) error {
			rc, err := b.GetRange(ctx, "x", 1, 2)
			if err == nil {
				rc.Close()
			}
			return err
		},
		"exists":     func(b Bucket) error { _, err := b.Exists(ctx, "x"); return err },
		"attributes": func(b Bucket) error { _, err := b.Attributes(ctx, "x"); return err },
		"iter":       func(b Bucket) error { return b.Iter(ctx, "", false, func(string) error { return nil }) },
		"upload":     func(b Bucket) error { return b.Upload(ctx, "x", strings.NewReader("data")) },
		"delete":     func(b Bucket) error { return b.Delete(ctx, "x") },
	}
	for _, tc := range []struct {
		name      string
		failures  int
		err       error
		wantCalls int
		wantErr   bool
	}{
		{"no failure", 0, nil, 1, false},
		{"transient then success", 2, errSlowDown, 3, false},
		{"transient up to the last retry", 3, errSlowDown, 4, false},
		{"transient too often", 10, errSlowDown, 4, true},
		{"network error", 1, &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, 2, false},
		{"access denied", 10, errAccessDenied, 1, true},
		{"not found", 10, fmt.Errorf("x: %w", ErrNotFound), 1, true},
		{"canceled", 10, fmt.Errorf("x: %w", context.Canceled), 1, true},
		{"other", 10, errors.New("disk on fire"), 1, true},
	} {
		for op, do := range ops {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				f := &flakyBucket{failures: tc.failures, err: tc.err}
				err := do(NewRetrying(f, testRetryConfig, testLogger()))
				require.Equal(t, tc.wantCalls, f.calls)
				if !tc.wantErr {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, tc.err)
			})
		}
	}
}

func TestRetryingUpload(t *testing.T) {
	ctx := context.Background()
	t.Run("rewinds a seeker", func(t *testing.T) {
		f := &flakyBucket{failures: 2, err: errSlowDown}
		r := strings.NewReader("skip:data")
		_, err := r.Seek(5, io.SeekStart)
		require.NoError(t, err)
		require.NoError(t, NewRetrying(f, testRetryConfig, testLogger()).Upload(ctx, "x", r))
		require.Equal(t, []string{"data", "data", "data"}, f.uploaded)
	})
	t.Run("does not retry a plain reader", func(t *testing.T) {
		f := &flakyBucket{failures: 2, err: errSlowDown}
		err := NewRetrying(f, testRetryConfig, testLogger()).Upload(ctx, "x", io.MultiReader(strings.NewReader("data")))
		require.ErrorIs(t, err, errSlowDown)
		require.Equal(t, 1, f.calls)
	})
}

func TestRetryingIter(t *testing.T) {
	ctx := context.Background()
	t.Run("callback error is returned as is", func(t *testing.T) {
		errStop := errSlowDown // transient-looking, still not retried
		f := &flakyBucket{}
		err := NewRetrying(f, testRetryConfig, testLogger()).Iter(ctx, "", true, func(string) error { return errStop })
		require.Equal(t, errStop, err)
		require.Equal(t, 1, f.calls)
	})
	t.Run("no retry once the callback ran", func(t *testing.T) {
		b := &midListFailure{}
		var seen []string
		err := NewRetrying(b, testRetryConfig, testLogger()).Iter(ctx, "", true, func(n string) error {
			seen = append(seen, n)
			return nil
		})
		require.ErrorIs(t, err, errSlowDown)
		require.Equal(t, 1, b.calls)
		require.Equal(t, []string{"a"}, seen)
	})
}

// midListFailure lists one name, then fails.
type midListFailure struct {
	flakyBucket
}

func (m *midListFailure) Iter(_ context.Context, _ string, _ bool, fn func(string) error) error {
	m.calls++
	if err := fn("a"); err != nil {
		return err
	}
	return errSlowDown
}

func TestRetryingStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flakyBucket{failures: 100, err: errSlowDown, onCall: cancel}
	cfg := RetryConfig{MaxRetries: 100, MinBackoff: time.Hour, MaxBackoff: time.Hour}
	start := time.Now()
	_, err := NewRetrying(f, cfg, testLogger()).Exists(ctx, "x")
	require.ErrorIs(t, err, errSlowDown)
	require.Equal(t, 1, f.calls)
	require.Less(t, time.Since(start), time.Minute)

	// Canceled while waiting an hour to retry.
	ctx, cancel = context.WithCancel(context.Background())
	called := make(chan struct{})
	f = &flakyBucket{failures: 100, err: errSlowDown, onCall: func() { close(called) }}
	done := make(chan error)
	go func() {
		_, err := NewRetrying(f, cfg, testLogger()).Exists(ctx, "x")
		done <- err
	}()
	<-called
	cancel()
	err = <-done
	require.ErrorIs(t, err, errSlowDown)
	require.Equal(t, 1, f.calls)
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"slow down", errSlowDown, true},
		{"wrapped slow down", fmt.Errorf("get x: %w", errSlowDown), true},
		{"internal error", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{"bad gateway", minio.ErrorResponse{StatusCode: 502}, true},
		{"too many requests", minio.ErrorResponse{StatusCode: 429}, true},
		{"request timeout", minio.ErrorResponse{Code: "RequestTimeout", StatusCode: 400}, true},
		{"access denied", errAccessDenied, false},
		{"no such bucket", minio.ErrorResponse{Code: minio.NoSuchBucket, StatusCode: 404}, false},
		{"invalid argument", minio.ErrorResponse{Code: minio.InvalidArgument, StatusCode: 400}, false},
		{"not found", fmt.Errorf("x: %w", ErrNotFound), false},
		{"canceled", &url.Error{Op: "Get", URL: "http://x", Err: context.Canceled}, false},
		{"client timeout", &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, true},
		{"connection reset", &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}}, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"plain", errors.New("invalid object name"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, isTransient(tc.err))
		})
	}
}
