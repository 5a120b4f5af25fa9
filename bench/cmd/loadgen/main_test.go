package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/bench/loadgen"
)

// countingHandler decodes remote-write requests and counts their samples; it
// answers status (if not 0) instead of accepting them.
func countingHandler(t *testing.T, samples *atomic.Int64, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Not require: this runs outside the test goroutine.
		var req prompb.WriteRequest
		body, err := io.ReadAll(r.Body)
		if err == nil {
			body, err = snappy.Decode(nil, body)
		}
		if err == nil {
			err = req.Unmarshal(body)
		}
		if err != nil {
			t.Errorf("decode request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if status != 0 && len(req.Timeseries) > 0 {
			http.Error(w, "rejected", status)
			return
		}
		for _, ts := range req.Timeseries {
			samples.Add(int64(len(ts.Samples)))
		}
	})
}

func TestRunCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		status     int // server answer to series requests, 0: accept
		wantCode   int
		wantStdout string
		wantStderr string
		wantJSON   bool
	}{
		{
			name: "short run",
			args: []string{"-series", "4000", "-batch", "400", "-concurrency", "2", "-duration", "1s",
				"-progress", "250ms", "-pid", strconv.Itoa(os.Getpid())},
			wantStdout: "samples accepted", wantStderr: "steady", wantJSON: true,
		},
		{
			name:       "everything rejected",
			args:       []string{"-series", "100", "-duration", "100ms"},
			status:     http.StatusTooManyRequests,
			wantCode:   1,
			wantStdout: "error 429",
			wantStderr: "no sample was accepted",
			wantJSON:   true,
		},
		{name: "bad flag", args: []string{"-nope"}, wantCode: 2, wantStderr: "flag provided but not defined"},
		{name: "extra argument", args: []string{"extra"}, wantCode: 2, wantStderr: "unexpected arguments"},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStderr: "-samples-per-second"},
		{name: "invalid config", args: []string{"-series", "0"}, wantCode: 1, wantStderr: "series must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var samples atomic.Int64
			srv := httptest.NewServer(countingHandler(t, &samples, tt.status))
			defer srv.Close()
			out := filepath.Join(t.TempDir(), "results.json")
			args := append([]string{"-url", srv.URL + "/api/v1/push", "-out", out}, tt.args...)

			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			require.Equal(t, tt.wantCode, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			require.Contains(t, stdout.String(), tt.wantStdout)
			require.Contains(t, stderr.String(), tt.wantStderr)
			if !tt.wantJSON {
				require.NoFileExists(t, out)
				return
			}
			data, err := os.ReadFile(out)
			require.NoError(t, err)
			var res loadgen.Result
			require.NoError(t, json.Unmarshal(data, &res))
			require.Equal(t, samples.Load(), res.TotalSamplesAccepted)
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		})
	}
}
