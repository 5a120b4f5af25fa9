// Package remotewrite serves Prometheus remote write 1.0 and 2.0 over HTTP:
// it bounds and decompresses the body, decodes it into a pooled request and
// answers with the status a Prometheus sender acts on (2xx stored, 4xx never
// retried, 429 and 5xx retried) and, to 2.0 senders, with what was written.
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
	"strconv"
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
			Help: "Push requests by response status class, cause and protocol (remote_write_1.0, remote_write_2.0, otlp).",
		}, []string{"code", "cause", "protocol"}),
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

// The protocols, as isobar_distributor_push_requests_total names them.
const (
	protocolRW1  = "remote_write_1.0"
	protocolRW2  = "remote_write_2.0"
	protocolOTLP = "otlp"
)

// ServeHTTP handles POST /api/v1/push.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	written, v2, err := h.serve(r)
	protocol := protocolRW1
	if v2 {
		protocol = protocolRW2
		// Every answer to a 2.0 sender says what was written, a partial
		// write's included.
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(written.samples))
		w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(written.histograms))
		w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(written.exemplars))
	}
	if err == nil {
		h.requests.WithLabelValues("2xx", "", protocol).Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.fail(w, err, protocol)
}

// fail answers a push that err ended with the status its sender acts on.
func (h *Handler) fail(w http.ResponseWriter, err error, protocol string) {
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
	h.requests.WithLabelValues(fmt.Sprintf("%dxx", code/100), cause, protocol).Inc()
	if code >= 500 {
		h.logger.Error("push failed", "protocol", protocol, "err", err)
	} else {
		h.logger.Debug("push rejected", "protocol", protocol, "status", code, "err", err)
	}
	http.Error(w, err.Error(), code)
}

// written counts what a request stored.
type written struct{ samples, histograms, exemplars int }

// count counts the samples, histograms and exemplars of req.
func count(req *rwproto.Request) written {
	var w written
	for i := range req.Timeseries {
		w.samples += len(req.Timeseries[i].Samples)
		w.histograms += len(req.Timeseries[i].Histograms)
		w.exemplars += len(req.Timeseries[i].Exemplars)
	}
	return w
}

// writtenOf says what a request of sent samples stored, given what Push
// left of req and the error it returned: all of them when it succeeded or
// dropped them as an HA replica's (a 2.0 sender takes a 2xx that wrote
// nothing for a receiver that ignored its message), on a partial write
// (400) what passed validation, else nothing.
func writtenOf(sent written, req *rwproto.Request, err error) written {
	switch {
	case err == nil || rpc.IsCause(err, rpc.CauseDeduplicated):
		return sent
	case rpc.IsCause(err, rpc.CauseBadData):
		return count(req)
	}
	return written{}
}

// serve stores the request; v2 tells whether it is remote write 2.0.
func (h *Handler) serve(r *http.Request) (w written, v2 bool, err error) {
	tenantID, err := tenant.From(r.Context())
	if err != nil {
		return w, false, errStatus(http.StatusUnauthorized, "%v", err)
	}
	if v2, err = isV2(r.Header.Get("Content-Type")); err != nil {
		return w, false, err
	}
	b := h.buffers.Get().(*buffers)
	defer h.buffers.Put(b)
	var (
		maxBytes  int
		decLimits rwproto.Limits
		release   func()
	)
	b.compressed, maxBytes, decLimits, release, err = h.admit(r, tenantID, b.compressed[:0])
	defer release()
	if err != nil {
		return w, v2, err
	}
	b.body, err = h.decompress(r.Header.Get("Content-Encoding"), b.compressed, b.body, maxBytes)
	if err != nil {
		return w, v2, err
	}
	version, decode := "1.0", b.req.Unmarshal
	if v2 {
		version, decode = "2.0", b.req.UnmarshalV2
	}
	if err := decode(b.body, decLimits); err != nil {
		return w, v2, errStatus(http.StatusBadRequest, "decode remote-write %s request: %v", version, err)
	}
	if !v2 {
		return w, v2, h.dist.Push(r.Context(), &b.req)
	}
	sent := count(&b.req) // before Push drops what it does not store
	err = h.dist.Push(r.Context(), &b.req)
	return writtenOf(sent, &b.req, err), v2, err
}

// admit counts the request among those in flight, within the instance
// limits, and reads its body into buf within the tenant's size limit,
// counting its bytes in flight. It returns the body, the limits its decoding
// takes, and what gives the request's share back: call it in any case.
func (h *Handler) admit(r *http.Request, tenantID string, buf []byte) (body []byte, maxBytes int, dec rwproto.Limits, release func(), err error) {
	release = func() {}
	if n := h.inflight.Add(1); h.limits.MaxInflightRequests > 0 && n > int64(h.limits.MaxInflightRequests) {
		h.inflight.Add(-1)
		return buf, 0, dec, release, errStatus(http.StatusServiceUnavailable, "this distributor handles %d push requests already, its limit (-distributor.instance-limits.max-inflight-push-requests); retry", n-1)
	}
	maxBytes, dec = h.dist.RecvLimits(tenantID)
	// The bytes a request declares are held for it before they arrive;
	// a body of undeclared length counts once read.
	held := min(max(r.ContentLength, 0), int64(maxBytes)+1)
	release = func() {
		h.inflightBytes.Add(-held)
		h.inflight.Add(-1)
	}
	if err := h.holdBytes(held); err != nil {
		return buf, maxBytes, dec, release, err
	}
	body, err = readBody(r, buf, maxBytes)
	if err != nil {
		return body, maxBytes, dec, release, err
	}
	if more := int64(len(body)) - held; more > 0 {
		held += more
		if err := h.holdBytes(more); err != nil {
			return body, maxBytes, dec, release, err
		}
	}
	return body, maxBytes, dec, release, nil
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

// The remote-write messages, as the proto parameter of Content-Type names
// them.
const (
	protoV1 = "prometheus.WriteRequest"
	protoV2 = "io.prometheus.write.v2.Request"
)

// isV2 tells a remote write 2.0 request from a 1.0 one by its Content-Type;
// anything else is a 415, which tells a sender what this server takes.
func isV2(ct string) (bool, error) {
	if ct == "" {
		return false, nil // old senders and curl users leave it out
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, errStatus(http.StatusUnsupportedMediaType, "parse Content-Type %q: %v", ct, err)
	}
	if mt != "application/x-protobuf" {
		return false, errStatus(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: remote write takes application/x-protobuf", mt)
	}
	switch p, ok := params["proto"]; {
	case !ok || p == protoV1:
		return false, nil
	case p == protoV2:
		return true, nil
	default:
		return false, errStatus(http.StatusUnsupportedMediaType, "unsupported remote-write message %q: this server takes %s (remote write 1.0) and %s (2.0)", p, protoV1, protoV2)
	}
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
