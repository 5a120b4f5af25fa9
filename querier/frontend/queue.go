package frontend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// errTooManyOutstanding is the answer to a tenant with too many requests
// waiting for a querier.
var errTooManyOutstanding = errors.New("too many outstanding requests")

// queue hands the requests of every tenant to a fixed number of workers,
// taking tenants in turn: a tenant with a thousand requests waiting delays
// another tenant's next request by at most one request per worker.
type queue struct {
	downstream     http.RoundTripper
	maxOutstanding int
	maxRetries     int

	mu      sync.Mutex
	cond    *sync.Cond
	tenants map[string][]*queued
	order   []string // tenants with requests waiting, in turn
	closed  bool
	wg      sync.WaitGroup

	waiting *prometheus.GaugeVec
	retries prometheus.Counter
}

type queued struct {
	req  *http.Request
	done chan result
}

type result struct {
	resp *http.Response
	err  error
}

func newQueue(downstream http.RoundTripper, workers, maxOutstanding, maxRetries int, reg prometheus.Registerer) *queue {
	q := &queue{
		downstream:     downstream,
		maxOutstanding: maxOutstanding,
		maxRetries:     maxRetries,
		tenants:        map[string][]*queued{},
		waiting: promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
			Name: "isobar_query_frontend_queue_length",
			Help: "Requests waiting for a querier, by tenant.",
		}, []string{"tenant"}),
		retries: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "isobar_query_frontend_retries_total",
			Help: "Requests to queriers sent again after a 5xx answer or a failure to reach one.",
		}),
	}
	q.cond = sync.NewCond(&q.mu)
	for range workers {
		q.wg.Go(q.work)
	}
	return q
}

// roundTrip queues req under tenant and waits for its answer, or for ctx.
func (q *queue) roundTrip(ctx context.Context, tenant string, req *http.Request) (*http.Response, error) {
	item := &queued{req: req, done: make(chan result, 1)}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, errors.New("query-frontend is shutting down")
	}
	if len(q.tenants[tenant]) >= q.maxOutstanding {
		q.mu.Unlock()
		return nil, fmt.Errorf("%w for tenant %q (%d waiting, -query-frontend.max-outstanding-requests-per-tenant)", errTooManyOutstanding, tenant, q.maxOutstanding)
	}
	if len(q.tenants[tenant]) == 0 {
		q.order = append(q.order, tenant)
	}
	q.tenants[tenant] = append(q.tenants[tenant], item)
	q.waiting.WithLabelValues(tenant).Set(float64(len(q.tenants[tenant])))
	q.cond.Signal()
	q.mu.Unlock()
	select {
	case r := <-item.done:
		return r.resp, r.err
	case <-ctx.Done():
		// A worker may be running it: its answer is dropped then.
		return nil, ctx.Err()
	}
}

// next takes the first request of the tenant whose turn it is, waiting
// for one; nil once the queue is closed.
func (q *queue) next() *queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.order) == 0 {
		return nil
	}
	tenant := q.order[0]
	q.order = q.order[1:]
	items := q.tenants[tenant]
	item := items[0]
	if len(items) == 1 {
		delete(q.tenants, tenant)
		q.waiting.DeleteLabelValues(tenant)
	} else {
		q.tenants[tenant] = items[1:]
		q.order = append(q.order, tenant) // its next request waits for its turn
		q.waiting.WithLabelValues(tenant).Set(float64(len(items) - 1))
	}
	return item
}

func (q *queue) work() {
	for {
		item := q.next()
		if item == nil {
			return
		}
		if item.req.Context().Err() != nil {
			item.done <- result{err: item.req.Context().Err()}
			continue
		}
		resp, err := q.send(item.req)
		item.done <- result{resp: resp, err: err}
	}
}

// send sends req downstream, again after a 5xx answer or a failure to
// reach a querier, up to maxRetries times. Requests are GETs or form
// POSTs whose body is read again from GetBody.
func (q *queue) send(req *http.Request) (*http.Response, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("read the request body again: %w", err)
			}
			r = req.Clone(req.Context())
			r.Body = body
		}
		resp, err := q.downstream.RoundTrip(r)
		retryable := err != nil || resp.StatusCode/100 == 5
		if !retryable || attempt >= q.maxRetries || req.Context().Err() != nil {
			if err != nil && lastErr != nil {
				err = fmt.Errorf("%w (after %d attempts; before: %v)", err, attempt+1, lastErr)
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			lastErr = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			lastErr = err
		}
		q.retries.Inc()
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
}

// close stops the workers once the requests they run are answered;
// requests still waiting get an error.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	for tenant, items := range q.tenants {
		for _, it := range items {
			it.done <- result{err: errors.New("query-frontend is shutting down")}
		}
		delete(q.tenants, tenant)
	}
	q.order = nil
	q.cond.Broadcast()
	q.mu.Unlock()
	q.wg.Wait()
}
