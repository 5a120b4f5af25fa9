// Package remotewrite serves Prometheus remote write 1.0 over HTTP: it bounds
// and decompresses the body, decodes it into a pooled request and answers
// with the status a Prometheus sender acts on (2xx stored, 4xx never retried,
// 429 and 5xx retried).
package remotewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// Distributor is what the handler hands decoded requests to.
type Distributor interface {
	rpc.Pusher
	// RecvLimits bounds the body size and the decoding of a tenant's requests.
	RecvLimits(tenantID string) (maxBytes int, dec rwproto.Limits)
}

// Handler serves remote-write requests.
type Handler struct {
	dist    Distributor
	logger  *slog.Logger
	buffers sync.Pool

	limits                  InstanceLimits
	inflight, inflightBytes atomic.Int64

	requests *prometheus.CounterVec
}

// InstanceLimits bound what the handler holds at once over all tenants;
// zero fields are no limit.
type InstanceLimits struct {
	MaxInflightRequests int
	MaxInflightBytes    int64
}

// WithInstanceLimits makes h refuse requests beyond l with 503.
func (h *Handler) WithInstanceLimits(l InstanceLimits) *Handler {
	h.limits = l
	return h
}

// buffers is one request's memory, reused across requests.
type buffers struct {
	compressed []byte
	body       []byte
	req        rwproto.Request
}

// New returns a handler that pushes to dist.
func New(dist Distributor, logger *slog.Logger, reg prometheus.Registerer) *Handler {
	h := &Handler{
		dist:   dist,
		logger: logger.With("component", "remotewrite"),
		requests: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_distributor_push_requests_total",
			Help: "Remote-write requests by response status class and cause.",
		}, []string{"code", "cause"}),
	}
	h.buffers.New = func() any { return &buffers{} }
	return h
}

// statusError is a failure answered before the request reaches the distributor.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func errStatus(code int, format string, args ...any) error {
	return &statusError{code: code, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP handles POST /api/v1/push.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := h.serve(r)
	if err == nil {
		h.requests.WithLabelValues("2xx", "").Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	code, cause := http.StatusInternalServerError, "internal"
	var se *statusError
	switch {
	case errors.As(err, &se):
		code, cause = se.code, "bad_request"
		if code == http.StatusServiceUnavailable {
			cause = "instance_limit"
		}
	case errors.Is(err, context.Canceled):
		code, cause = 499, "canceled" // the client went away; nobody reads the answer
	default:
		c := rpc.CauseOf(err)
		code, cause = c.HTTPStatus(), c.String()
	}
	h.requests.WithLabelValues(fmt.Sprintf("%dxx", code/100), cause).Inc()
	if code >= 500 {
		h.logger.Error("push failed", "err", err)
	} else {
		h.logger.Debug("push rejected", "status", code, "err", err)
	}
	http.Error(w, err.Error(), code)
}

func (h *Handler) serve(r *http.Request) error {
	tenantID, err := tenant.From(r.Context())
	if err != nil {
		return errStatus(http.StatusUnauthorized, "%v", err)
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	if n := h.inflight.Add(1); h.limits.MaxInflightRequests > 0 && n > int64(h.limits.MaxInflightRequests) {
		h.inflight.Add(-1)
		return errStatus(http.StatusServiceUnavailable, "this distributor handles %d push requests already, its limit (-distributor.instance-limits.max-inflight-push-requests); retry", n-1)
	}
	defer h.inflight.Add(-1)
	maxBytes, decLimits := h.dist.RecvLimits(tenantID)
	// The bytes a request declares are held for it before they arrive;
	// a body of undeclared length counts once read.
	held := min(max(r.ContentLength, 0), int64(maxBytes)+1)
	defer func() { h.inflightBytes.Add(-held) }()
	if err := h.holdBytes(held); err != nil {
		return err
	}

	b := h.buffers.Get().(*buffers)
	defer h.buffers.Put(b)

	b.compressed, err = readBody(r, b.compressed[:0], maxBytes)
	if err != nil {
		return err
	}
	if more := int64(len(b.compressed)) - held; more > 0 {
		held += more
		if err := h.holdBytes(more); err != nil {
			return err
		}
	}
	b.body, err = h.decompress(r.Header.Get("Content-Encoding"), b.compressed, b.body, maxBytes)
	if err != nil {
		return err
	}
	if err := b.req.Unmarshal(b.body, decLimits); err != nil {
		return errStatus(http.StatusBadRequest, "decode remote-write request: %v", err)
	}
	return h.dist.Push(r.Context(), &b.req)
}

// holdBytes counts n more bytes in flight, failing past the limit (the
// caller gives them back either way).
func (h *Handler) holdBytes(n int64) error {
	total := h.inflightBytes.Add(n)
	if limit := h.limits.MaxInflightBytes; limit > 0 && n > 0 && total > limit {
		return errStatus(http.StatusServiceUnavailable, "this distributor holds %d bytes of push requests, over its limit of %d (-distributor.instance-limits.max-inflight-push-requests-bytes); retry", total-n, limit)
	}
	return nil
}

// checkContentType accepts remote write 1.0. Remote write 2.0 gets 415, which
// tells a Prometheus 3 sender to fall back to 1.0.
func checkContentType(ct string) error {
	if ct == "" {
		return nil // old senders and curl users leave it out
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return errStatus(http.StatusUnsupportedMediaType, "parse Content-Type %q: %v", ct, err)
	}
	if mt != "application/x-protobuf" {
		return errStatus(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: remote write takes application/x-protobuf", mt)
	}
	if p, ok := params["proto"]; ok && p != "prometheus.WriteRequest" {
		return errStatus(http.StatusUnsupportedMediaType, "unsupported remote-write message %q: this server takes prometheus.WriteRequest (remote write 1.0)", p)
	}
	return nil
}

// bodyPrealloc is the most memory a declared Content-Length reserves
// before its bytes arrive; beyond it the buffer grows as they do, so that a
// client that claims a large body and sends little holds little.
const bodyPrealloc = 256 << 10

// readBody reads the whole body into buf, refusing bodies over max before
// reading them when the length is declared.
func readBody(r *http.Request, buf []byte, max int) ([]byte, error) {
	if r.ContentLength > int64(max) {
		return buf, errStatus(http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", r.ContentLength, max)
	}
	if want := min(r.ContentLength, bodyPrealloc); want > 0 && int64(cap(buf)) < want {
		buf = make([]byte, 0, want)
	}
	lr := io.LimitReader(r.Body, int64(max)+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return buf, errStatus(http.StatusBadRequest, "read request body: %v", err)
		}
	}
	if len(buf) > max {
		return buf, errStatus(http.StatusRequestEntityTooLarge, "request body exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", max)
	}
	return buf, nil
}

// decompress decodes src into dst, checking the decoded size against max
// before allocating for it.
func (h *Handler) decompress(encoding string, src, dst []byte, max int) ([]byte, error) {
	switch encoding {
	case "", "snappy":
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return dst, errStatus(http.StatusBadRequest, "decode snappy body: %v", err)
		}
		if n > max {
			return dst, errStatus(http.StatusRequestEntityTooLarge, "decompressed body of %d bytes exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", n, max)
		}
		if n > maxSnappyRatio*len(src) {
			return dst, errStatus(http.StatusBadRequest, "decode snappy body: its header claims %d bytes, more than %d compressed bytes can hold", n, len(src))
		}
		if cap(dst) < n {
			dst = make([]byte, n)
		}
		out, err := snappy.Decode(dst[:cap(dst)], src)
		if err != nil {
			return dst, errStatus(http.StatusBadRequest, "decode snappy body: %v", err)
		}
		return out, nil
	case "zstd":
		out, err := h.zstdDecode(src, dst[:0], max)
		if err != nil {
			return dst, err
		}
		return out, nil
	}
	return dst, errStatus(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q: use snappy or zstd", encoding)
}

func (h *Handler) zstdDecode(src, dst []byte, max int) ([]byte, error) {
	hdr := zstd.Header{}
	if err := hdr.Decode(src); err != nil {
		return dst, errStatus(http.StatusBadRequest, "decode zstd body: %v", err)
	}
	if hdr.HasFCS && hdr.FrameContentSize > uint64(max) {
		return dst, errStatus(http.StatusRequestEntityTooLarge, "decompressed body of %d bytes exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", hdr.FrameContentSize, max)
	}
	// Frames need not declare their size, and a declared size is a claim:
	// the output grows as the decoder writes it, up to max. Senders use
	// snappy; a decoder per zstd request keeps this simple.
	zr, err := zstd.NewReader(bytes.NewReader(src), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)))
	if err != nil {
		return dst, fmt.Errorf("create zstd decoder: %w", err)
	}
	defer zr.Close()
	out := bytes.NewBuffer(dst[:0])
	_, err = out.ReadFrom(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return dst, errStatus(http.StatusRequestEntityTooLarge, "decompressed body exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", max)
		}
		return dst, errStatus(http.StatusBadRequest, "decode zstd body: %v", err)
	}
	if out.Len() > max {
		return dst, errStatus(http.StatusRequestEntityTooLarge, "decompressed body exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", max)
	}
	return out.Bytes(), nil
}

// maxSnappyRatio bounds snappy's expansion: its densest element, a 3-byte
// copy, yields at most 64 bytes.
const maxSnappyRatio = 22
