package frontend

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// querierTransport sends each request to the next of the queriers' base
// URLs in turn.
type querierTransport struct {
	bases []*url.URL
	next  atomic.Uint64
	http  http.RoundTripper
}

// NewQuerierTransport returns a transport to the queriers at baseURLs
// (http://host:port).
func NewQuerierTransport(baseURLs []string) (http.RoundTripper, error) {
	t := &querierTransport{http: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
	for _, s := range baseURLs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("querier URL %q: %w", s, err)
		}
		t.bases = append(t.bases, u)
	}
	if len(t.bases) == 0 {
		return nil, fmt.Errorf("no querier URL: set -query-frontend.downstream-url")
	}
	return t, nil
}

func (t *querierTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.bases[int(t.next.Add(1)-1)%len(t.bases)]
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host = base.Scheme, base.Host
	r.URL.Path = base.Path + req.URL.Path
	r.Host = base.Host
	return t.http.RoundTrip(r)
}

// HandlerTransport answers requests with h in the same process (the
// querier of -target=all).
func HandlerTransport(h http.Handler) http.RoundTripper {
	return handlerTransport{h}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	t.h.ServeHTTP(rec, req)
	return &http.Response{
		Status:        http.StatusText(rec.code),
		StatusCode:    rec.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(&rec.body),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// recorder keeps what a handler answers.
type recorder struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
