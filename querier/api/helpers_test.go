package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"
)

// baseMs is the timestamp of the first sample of every test series.
const baseMs int64 = 1700000000000

// fakeMetadata is a MetadataQuerier over a fixed map that honours metric
// but leaves the limits to the API.
type fakeMetadata struct {
	data map[string][]metadata.Metadata
	err  error
}

func (f fakeMetadata) MetricMetadata(_ context.Context, metric string, _, _ int) (map[string][]metadata.Metadata, error) {
	if f.err != nil {
		return nil, f.err
	}
	if metric == "" {
		return f.data, nil
	}
	out := map[string][]metadata.Metadata{}
	if ms, ok := f.data[metric]; ok {
		out[metric] = ms
	}
	return out, nil
}

// testHistogram has schema 0 and two populated buckets, (0.5,1] with 1 and
// (1,2] with 2 observations.
func testHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Schema:          0,
		Count:           3,
		Sum:             5,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{1, 1},
	}
}

// newTestStorage returns a TSDB holding:
//
//	up{job="a"}                  1, 2, 3 at baseMs, +15s, +30s
//	up{job="b"}                  0, 0, 0 at the same times
//	test_histogram{job="a"}      testHistogram() at baseMs and +15s
//	test_counter_total{job="a"}  1 at baseMs, with exemplar {trace_id="abc"} 1 at baseMs
func newTestStorage(t testing.TB) *teststorage.TestStorage {
	t.Helper()
	db := teststorage.New(t)
	app := db.Appender(context.Background())
	upA := labels.FromStrings("__name__", "up", "job", "a")
	upB := labels.FromStrings("__name__", "up", "job", "b")
	for i := range int64(3) {
		ts := baseMs + i*15000
		_, err := app.Append(0, upA, ts, float64(i+1))
		require.NoError(t, err)
		_, err = app.Append(0, upB, ts, 0)
		require.NoError(t, err)
	}
	hist := labels.FromStrings("__name__", "test_histogram", "job", "a")
	for i := range int64(2) {
		_, err := app.AppendHistogram(0, hist, baseMs+i*15000, testHistogram(), nil)
		require.NoError(t, err)
	}
	counter := labels.FromStrings("__name__", "test_counter_total", "job", "a")
	ref, err := app.Append(0, counter, baseMs, 1)
	require.NoError(t, err)
	_, err = app.AppendExemplar(ref, counter, exemplar.Exemplar{
		Labels: labels.FromStrings("trace_id", "abc"),
		Value:  1,
		Ts:     baseMs,
		HasTs:  true,
	})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	return db
}

// newTestEngine returns an engine with maxSamples as its sample limit.
func newTestEngine(t testing.TB, maxSamples int) *promql.Engine {
	t.Helper()
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:    maxSamples,
		Timeout:       time.Minute,
		LookbackDelta: 5 * time.Minute,
	})
	t.Cleanup(func() { _ = engine.Close() })
	return engine
}

var testBuildInfo = BuildInfo{
	Version:   "1.2.3",
	Revision:  "abcdef",
	Branch:    "main",
	BuildUser: "ci@isobar",
	BuildDate: "20240101-00:00:00",
	GoVersion: "go1.26.8",
}

var testMetadata = fakeMetadata{data: map[string][]metadata.Metadata{
	"up": {{Type: "gauge", Help: "Whether the target is up.", Unit: ""}},
	"test_counter_total": {
		{Type: "counter", Help: "A counter.", Unit: ""},
		{Type: "counter", Help: "A counter.", Unit: ""},
		{Type: "counter", Help: "A counter, described again.", Unit: ""},
	},
	"test_histogram": {{Type: "histogram", Help: "A <histogram>.", Unit: "seconds"}},
}}

// testServer is an API over newTestStorage mounted on both prefixes.
type testServer struct {
	mux *http.ServeMux
	api *API
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	return newTestServerWith(t, newTestEngine(t, 50000000), testMetadata)
}

func newTestServerWith(t testing.TB, engine promql.QueryEngine, meta MetadataQuerier) *testServer {
	t.Helper()
	db := newTestStorage(t)
	a := New(engine, db, db, meta, testBuildInfo, nil)
	a.now = func() time.Time { return time.UnixMilli(baseMs + 30000) }
	mux := http.NewServeMux()
	a.Register(mux, "/prometheus/api/v1")
	a.Register(mux, "/api/v1/")
	return &testServer{mux: mux, api: a}
}

// response is a recorded answer.
type response struct {
	code        int
	contentType string
	body        string
}

// do sends a GET with form in the URL, or a POST with form as
// application/x-www-form-urlencoded body.
func (s *testServer) do(t testing.TB, ctx context.Context, method, path string, form url.Values) response {
	t.Helper()
	var req *http.Request
	if method == http.MethodPost {
		req = httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		target := path
		if len(form) > 0 {
			target += "?" + form.Encode()
		}
		req = httptest.NewRequestWithContext(ctx, method, target, nil)
	}
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return response{code: rec.Code, contentType: rec.Header().Get("Content-Type"), body: string(body)}
}

var errBoom = errors.New("boom")
