package ruler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"

	"github.com/isobar-tsdb/isobar/pkg/promapi"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// maxAnswerBytes bounds what a rule's query may bring back: a rule whose
// answer is larger is a mistake the ruler reports, not one it holds.
const maxAnswerBytes = 256 << 20

// frontendURL is the instant query endpoint of a Prometheus API at addr:
// host:port (http, under /prometheus) or a URL with its own path prefix.
func frontendURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("-ruler.query-frontend.address %q: want host:port or http(s)://host:port[/prefix]", addr)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/prometheus"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/query"
	return u.String(), nil
}

// frontendQueryFunc evaluates rule expressions through the Prometheus API
// at endpoint (a query-frontend's, so rules get its splitting and
// sharding, or a querier's), for the tenant in the context. It asks for
// the answer as exact series (promapi.SeriesProtobuf): JSON would lose
// native histograms' schema in a recording rule's output.
func frontendQueryFunc(client *http.Client, endpoint string) rules.QueryFunc {
	return func(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
		id, err := tenant.From(ctx)
		if err != nil {
			return nil, err
		}
		form := url.Values{"query": {qs}, "time": {strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, fmt.Errorf("query %q through the query-frontend: %w", qs, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", promapi.SeriesProtobuf)
		req.Header.Set(tenant.HeaderName, id)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("query %q through the query-frontend: %w", qs, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
		if err != nil {
			return nil, fmt.Errorf("query %q through the query-frontend: read the answer: %w", qs, err)
		}
		if len(body) > maxAnswerBytes {
			return nil, fmt.Errorf("query %q through the query-frontend: the answer is over %d MiB", qs, maxAnswerBytes>>20)
		}
		if resp.StatusCode != http.StatusOK {
			var failure struct {
				ErrorType string `json:"errorType"`
				Error     string `json:"error"`
			}
			if json.Unmarshal(body, &failure) != nil || failure.Error == "" {
				failure.Error = strings.TrimSpace(string(body[:min(len(body), 512)]))
			}
			return nil, fmt.Errorf("query %q through the query-frontend: %d %s: %s", qs, resp.StatusCode, failure.ErrorType, failure.Error)
		}
		if ct := resp.Header.Get("Content-Type"); ct != promapi.SeriesProtobuf {
			return nil, fmt.Errorf("query %q through the query-frontend: answered %q, not %s (is it an isobar query-frontend or querier?)", qs, ct, promapi.SeriesProtobuf)
		}
		m, err := promapi.UnmarshalSeries(body)
		if err != nil {
			return nil, fmt.Errorf("query %q through the query-frontend: %w", qs, err)
		}
		return vectorOf(m)
	}
}

// vectorOf turns an instant answer, a series of one point each, into the
// vector a rule evaluates to.
func vectorOf(m promql.Matrix) (promql.Vector, error) {
	v := make(promql.Vector, 0, len(m))
	for _, s := range m {
		switch {
		case len(s.Floats) == 1 && len(s.Histograms) == 0:
			v = append(v, promql.Sample{Metric: s.Metric, T: s.Floats[0].T, F: s.Floats[0].F})
		case len(s.Histograms) == 1 && len(s.Floats) == 0:
			v = append(v, promql.Sample{Metric: s.Metric, T: s.Histograms[0].T, H: s.Histograms[0].H})
		default:
			return nil, fmt.Errorf("series %s of an instant answer has %d points", s.Metric, len(s.Floats)+len(s.Histograms))
		}
	}
	return v, nil
}
