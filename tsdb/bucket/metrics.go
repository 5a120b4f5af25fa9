package bucket

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation label values.
const (
	opGet        = "get"
	opGetRange   = "get_range"
	opExists     = "exists"
	opAttributes = "attributes"
	opIter       = "iter"
	opUpload     = "upload"
	opDelete     = "delete"
)

// Outcome label values.
const (
	outcomeSuccess  = "success"
	outcomeNotFound = "not_found"
	outcomeError    = "error"
	outcomeCanceled = "canceled"
)

var (
	allOps      = []string{opGet, opGetRange, opExists, opAttributes, opIter, opUpload, opDelete}
	allOutcomes = []string{outcomeSuccess, outcomeNotFound, outcomeError, outcomeCanceled}
)

// metrics are one component's bucket metrics.
type metrics struct {
	ops           *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	bytesRead     prometheus.Counter
	bytesUploaded prometheus.Counter
}

// newMetrics registers the metrics of component with reg, which may be
// nil. Registering the same component twice with one registry reuses the
// metrics registered first, so two clients of one component share them.
func newMetrics(reg prometheus.Registerer, component string) *metrics {
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"component": component}, reg)
	}
	m := &metrics{
		ops: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_bucket_operations_total",
			Help: "Bucket operations by outcome: success, not_found, error or canceled. Retries count as operations.",
		}, []string{"operation", "outcome"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "isobar_bucket_operation_duration_seconds",
			Help: "Duration of bucket operations. For get and get_range, until the response starts; for iter, including the callbacks.",
			// 5ms to 82s.
			Buckets:                         prometheus.ExponentialBuckets(0.005, 4, 8),
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"operation"})),
		bytesRead: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "isobar_bucket_bytes_read_total",
			Help: "Bytes read from objects returned by get and get_range.",
		})),
		bytesUploaded: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "isobar_bucket_bytes_uploaded_total",
			Help: "Bytes of successfully uploaded objects.",
		})),
	}
	// Create the series up front so that they exist at zero.
	for _, op := range allOps {
		for _, o := range allOutcomes {
			m.ops.WithLabelValues(op, o)
		}
		m.duration.WithLabelValues(op)
	}
	return m
}

// register registers c, or returns the equal collector registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A different metric of the same name: a programming error that
		// must not take the process down; the metrics go unregistered.
	}
	return c
}

// Instrumented is a Bucket that records metrics of every operation.
type Instrumented struct {
	b Bucket
	m *metrics
}

var _ Bucket = (*Instrumented)(nil)

// NewInstrumented wraps b with metrics labelled with component (ingester,
// compactor, store-gateway, querier), registered with reg. Several
// components, or several buckets of one component, can share reg.
func NewInstrumented(b Bucket, component string, reg prometheus.Registerer) *Instrumented {
	return &Instrumented{b: b, m: newMetrics(reg, component)}
}

func outcome(err error) string {
	switch {
	case err == nil:
		return outcomeSuccess
	case IsNotFound(err):
		return outcomeNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return outcomeCanceled
	}
	return outcomeError
}

func (i *Instrumented) observe(op string, start time.Time, err error) {
	i.m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	i.m.ops.WithLabelValues(op, outcome(err)).Inc()
}

// Get implements Reader.
func (i *Instrumented) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := i.b.Get(ctx, name)
	i.observe(opGet, start, err)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{ReadCloser: rc, c: i.m.bytesRead}, nil
}

// GetRange implements Reader.
func (i *Instrumented) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := i.b.GetRange(ctx, name, off, length)
	i.observe(opGetRange, start, err)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{ReadCloser: rc, c: i.m.bytesRead}, nil
}

// Exists implements Reader.
func (i *Instrumented) Exists(ctx context.Context, name string) (bool, error) {
	start := time.Now()
	ok, err := i.b.Exists(ctx, name)
	i.observe(opExists, start, err)
	return ok, err
}

// Attributes implements Reader.
func (i *Instrumented) Attributes(ctx context.Context, name string) (Attributes, error) {
	start := time.Now()
	a, err := i.b.Attributes(ctx, name)
	i.observe(opAttributes, start, err)
	return a, err
}

// Iter implements Reader. An error returned by f counts as a success of
// the bucket.
func (i *Instrumented) Iter(ctx context.Context, dir string, recursive bool, f func(string) error) error {
	start := time.Now()
	var fErr error
	err := i.b.Iter(ctx, dir, recursive, func(name string) error {
		fErr = f(name)
		return fErr
	})
	if fErr != nil && errors.Is(err, fErr) {
		i.observe(opIter, start, nil)
	} else {
		i.observe(opIter, start, err)
	}
	return err
}

// Upload implements Bucket. The reader is passed on as is when its size is
// known (see readerSize), so that backends and Retrying see its type.
func (i *Instrumented) Upload(ctx context.Context, name string, r io.Reader) error {
	start := time.Now()
	size, known := readerSize(r)
	var cr *countingReader
	if !known {
		cr = &countingReader{r: r}
		r = cr
	}
	err := i.b.Upload(ctx, name, r)
	i.observe(opUpload, start, err)
	if err == nil {
		if cr != nil {
			size = cr.n
		}
		i.m.bytesUploaded.Add(float64(size))
	}
	return err
}

// Delete implements Bucket.
func (i *Instrumented) Delete(ctx context.Context, name string) error {
	start := time.Now()
	err := i.b.Delete(ctx, name)
	i.observe(opDelete, start, err)
	return err
}

// Close implements Bucket.
func (i *Instrumented) Close() error { return i.b.Close() }

// countingReadCloser adds the bytes read to a counter.
type countingReadCloser struct {
	io.ReadCloser
	c prometheus.Counter
}

func (r *countingReadCloser) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.c.Add(float64(n))
	}
	return n, err
}

// countingReader counts the bytes read.
type countingReader struct {
	r io.Reader
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}
