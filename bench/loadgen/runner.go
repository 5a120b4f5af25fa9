package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/isobar-tsdb/isobar/bench/workload"
)

// phase identifies the warmup or steady phase.
type phase int

const (
	phaseWarmup phase = iota
	phaseSteady
	numPhases
)

func (p phase) String() string {
	if p == phaseWarmup {
		return "warmup"
	}
	return "steady"
}

// maxErrorExample bounds the error response bodies kept as examples.
const maxErrorExample = 256

// runner holds the state shared by the workers of a run.
type runner struct {
	cfg        Config
	gen        *workload.Generator
	client     *http.Client
	t0         int64 // timestamp of round 0, ms
	intervalMs int64
	pacer      *pacer // nil: full speed
	workers    []*worker
	stats      [numPhases]phaseStats
	current    atomic.Int32 // phase being run
	started    time.Time
}

// phaseStats counts the requests of one phase; shared by all workers.
type phaseStats struct {
	requests, failed   atomic.Int64
	accepted, rejected atomic.Int64 // samples
	bytes              atomic.Int64

	mu       sync.Mutex
	errors   map[string]int64
	examples map[string]string
}

// worker owns a fixed set of batches and sends them round after round.
type worker struct {
	r         *runner
	batches   [][2]int // series ranges [from, to)
	round     int64    // next round
	firstTs   int64
	lastTs    int64
	raw, comp []byte
	hist      [numPhases]*histogram
}

func newRunner(cfg Config, gen *workload.Generator, client *http.Client, now time.Time) *runner {
	r := &runner{
		cfg:        cfg,
		gen:        gen,
		client:     client,
		t0:         now.Add(-cfg.Lookback).Truncate(time.Second).UnixMilli(),
		intervalMs: cfg.Interval.Milliseconds(),
		started:    now,
	}
	if cfg.SamplesPerSecond > 0 {
		r.pacer = &pacer{perSample: float64(time.Second) / cfg.SamplesPerSecond}
	}
	nBatches := (gen.Len() + cfg.Batch - 1) / cfg.Batch
	for w := range min(cfg.Concurrency, nBatches) {
		wk := &worker{r: r, lastTs: math.MinInt64, firstTs: math.MinInt64}
		for b := w; b < nBatches; b += cfg.Concurrency {
			wk.batches = append(wk.batches, [2]int{b * cfg.Batch, min((b+1)*cfg.Batch, gen.Len())})
		}
		for p := range wk.hist {
			wk.hist[p] = newHistogram()
		}
		r.workers = append(r.workers, wk)
	}
	for p := range r.stats {
		r.stats[p].errors = make(map[string]int64)
		r.stats[p].examples = make(map[string]string)
	}
	return r
}

// runPhase runs the workers until each has done maxRounds rounds (negative:
// unbounded) or stopAt has passed; requests in flight at stopAt complete.
func (r *runner) runPhase(ctx context.Context, p phase, stopAt time.Time, maxRounds int) PhaseResult {
	r.current.Store(int32(p))
	start := time.Now()
	var wg sync.WaitGroup
	completed := make([]bool, len(r.workers))
	for i, w := range r.workers {
		wg.Go(func() { completed[i] = w.run(ctx, p, stopAt, maxRounds) })
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	st := &r.stats[p]
	hist := newHistogram()
	for _, w := range r.workers {
		hist.merge(w.hist[p])
	}
	res := PhaseResult{
		Seconds:         elapsed,
		Completed:       ctx.Err() == nil,
		Requests:        st.requests.Load(),
		FailedRequests:  st.failed.Load(),
		SamplesAccepted: st.accepted.Load(),
		SamplesFailed:   st.rejected.Load(),
		RequestBytes:    st.bytes.Load(),
		Latency:         hist.summary(),
	}
	for _, c := range completed {
		res.Completed = res.Completed && (c || maxRounds < 0)
	}
	res.Rounds = float64(res.SamplesAccepted+res.SamplesFailed) / float64(r.gen.Len())
	if elapsed > 0 {
		res.SamplesPerSecond = float64(res.SamplesAccepted) / elapsed
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.errors) > 0 {
		res.Errors, res.ErrorExamples = st.errors, st.examples
	}
	return res
}

// run sends rounds and reports whether it did all maxRounds of them.
func (w *worker) run(ctx context.Context, p phase, stopAt time.Time, maxRounds int) bool {
	for done := 0; maxRounds < 0 || done < maxRounds; done++ {
		ts, ok := w.nextTimestamp(ctx)
		if !ok {
			return false
		}
		for _, b := range w.batches {
			if ctx.Err() != nil || !time.Now().Before(stopAt) {
				return false
			}
			if p == phaseSteady && w.r.pacer != nil && !w.r.pacer.wait(ctx, b[1]-b[0], stopAt) {
				return false
			}
			w.send(ctx, p, b[0], b[1], ts)
		}
	}
	return true
}

// nextTimestamp returns the timestamp of the worker's next round: the
// simulated scrape time, but never in the future and always after the
// previous round's.
func (w *worker) nextTimestamp(ctx context.Context) (int64, bool) {
	ts := w.r.t0 + w.round*w.r.intervalMs
	w.round++
	now := time.Now().UnixMilli()
	ts = min(ts, now)
	if ts <= w.lastTs {
		ts = w.lastTs + 1
		if !sleepCtx(ctx, time.Duration(ts-now)*time.Millisecond) {
			return 0, false
		}
	}
	if w.firstTs == math.MinInt64 {
		w.firstTs = ts
	}
	w.lastTs = ts
	return ts, true
}

// send encodes, compresses and posts series [from, to) at ts, and counts
// the outcome.
func (w *worker) send(ctx context.Context, p phase, from, to int, ts int64) {
	w.raw = w.r.gen.AppendRequest(w.raw[:0], from, to, ts)
	w.comp = s2.EncodeSnappy(w.comp, w.raw)
	st := &w.r.stats[p]
	start := time.Now()
	key, example, released := w.r.post(ctx, w.comp)
	w.hist[p].observe(time.Since(start))
	n := int64(to - from)
	st.requests.Add(1)
	st.bytes.Add(int64(len(w.comp)))
	if !released {
		w.comp = nil // still owned by the transport: do not reuse it
	}
	if key == "" {
		st.accepted.Add(n)
		return
	}
	st.failed.Add(1)
	st.rejected.Add(n)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.errors[key]++
	if _, ok := st.examples[key]; !ok {
		st.examples[key] = example
	}
}

// requestBody is a request body that reports when the transport is done
// with it, so that its buffer can be reused.
type requestBody struct {
	bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *requestBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// post sends one compressed WriteRequest. It returns "" on success, else an
// error key (HTTP status code, "network", "timeout" or "canceled") and an
// example message. released reports whether the transport is done with body
// (it may read a body after the response arrived, e.g. after an early error
// response), that is whether body may be reused.
func (r *runner) post(ctx context.Context, body []byte) (key, example string, released bool) {
	rb := &requestBody{closed: make(chan struct{})}
	rb.Reset(body)
	key, example = r.do(ctx, rb, len(body))
	select {
	case <-rb.closed:
		return key, example, true
	default:
	}
	t := time.NewTimer(r.cfg.Timeout)
	defer t.Stop()
	select {
	case <-rb.closed:
		return key, example, true
	case <-t.C:
		return key, example, false
	}
}

// do posts body and classifies the outcome like post.
func (r *runner) do(ctx context.Context, body *requestBody, size int) (key, example string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, body)
	if err != nil {
		body.Close()
		return "network", err.Error()
	}
	req.ContentLength = int64(size)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "isobar-loadgen")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if r.cfg.Tenant != "" {
		req.Header.Set("X-Scope-OrgID", r.cfg.Tenant)
	}
	resp, err := r.client.Do(req) // closes body, even on errors
	if err != nil {
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return "canceled", err.Error()
		case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			return "timeout", err.Error()
		default:
			return "network", err.Error()
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return "", ""
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorExample))
	_, _ = io.Copy(io.Discard, resp.Body)
	return strconv.Itoa(resp.StatusCode), string(bytes.TrimSpace(msg))
}

// sendMetadata sends the metadata-only request and returns its status.
func (r *runner) sendMetadata(ctx context.Context) string {
	body := s2.EncodeSnappy(nil, r.gen.AppendMetadataRequest(nil))
	key, example, _ := r.post(ctx, body)
	if key == "" {
		return "ok"
	}
	return key + ": " + example
}

// timestampRange returns the first and last timestamp sent by any worker.
func (r *runner) timestampRange() (first, last int64) {
	first, last = math.MaxInt64, math.MinInt64
	for _, w := range r.workers {
		if w.firstTs != math.MinInt64 {
			first = min(first, w.firstTs)
			last = max(last, w.lastTs)
		}
	}
	if last == math.MinInt64 {
		return 0, 0
	}
	return first, last
}

// startProgress prints a progress line every ProgressInterval until the
// returned function is called; calling it again is a no-op.
func (r *runner) startProgress() func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		var prev int64
		prevAt := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				var acc, rej, reqs, failed int64
				for p := range r.stats {
					acc += r.stats[p].accepted.Load()
					rej += r.stats[p].rejected.Load()
					reqs += r.stats[p].requests.Load()
					failed += r.stats[p].failed.Load()
				}
				rate := float64(acc-prev) / now.Sub(prevAt).Seconds()
				prev, prevAt = acc, now
				fmt.Fprintf(r.cfg.Progress,
					"%7.1fs %-6s accepted %d samples (%.0f/s), requests %d, failed %d (%d samples), rounds %.2f\n",
					now.Sub(r.started).Seconds(), phase(r.current.Load()), acc, rate, reqs, failed, rej,
					float64(acc+rej)/float64(r.gen.Len()))
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// pacer spaces requests so that samples go out at a fixed rate.
type pacer struct {
	mu        sync.Mutex
	perSample float64 // nanoseconds
	next      time.Time
}

// wait blocks until n more samples may be sent. It returns false, without
// waiting, if that time is after stopAt, or if ctx is canceled.
func (p *pacer) wait(ctx context.Context, n int, stopAt time.Time) bool {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	if at.After(stopAt) {
		p.mu.Unlock()
		return false
	}
	p.next = at.Add(time.Duration(p.perSample * float64(n)))
	p.mu.Unlock()
	return sleepCtx(ctx, time.Until(at))
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
