package profiling

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStartPushesToServer(t *testing.T) {
	var uploads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		uploads.Add(1)
	}))
	defer srv.Close()

	stop, err := Start(Config{PyroscopeAddress: srv.URL, ApplicationName: "isobar-test"}, "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	stop() // stopping flushes the profiles collected so far
	require.Eventually(t, func() bool { return uploads.Load() > 0 }, 10*time.Second, 50*time.Millisecond)
}

func TestDisabledByDefault(t *testing.T) {
	stop, err := Start(Config{}, "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotNil(t, stop)
	stop()
}
