// Package queryable reads the series the PromQL engine needs from the
// ingesters of the ring, merging the replicas of every series into one.
package queryable

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// Ingesters is a storage.Queryable over the ingesters of a ring. A read
// asks the whole replication set and tolerates as many failed ingesters as
// the write quorum allows: every acknowledged sample is on a quorum of its
// replicas, so any read quorum holds it.
type Ingesters struct {
	ring dskitring.ReadRing
	pool *client.Pool
}

// NewIngesters returns a queryable over r, connecting through pool.
func NewIngesters(r dskitring.ReadRing, pool *client.Pool) *Ingesters {
	return &Ingesters{ring: r, pool: pool}
}

var _ storage.Queryable = (*Ingesters)(nil)

// Querier returns a querier over [mint, maxt] for the tenant of each call.
func (q *Ingesters) Querier(mint, maxt int64) (storage.Querier, error) {
	return &ringQuerier{q: q, mint: mint, maxt: maxt}, nil
}

type ringQuerier struct {
	q          *Ingesters
	mint, maxt int64

	mu      sync.Mutex
	streams []*frameStream // ended by Close, whether read to the end or not
}

// each runs f against a read quorum of the ingesters and returns the
// answers of those that answered.
func each[T any](ctx context.Context, q *Ingesters, f func(context.Context, *rpc.PooledIngester) (T, error)) ([]T, error) {
	if _, err := tenant.From(ctx); err != nil {
		return nil, err
	}
	rs, err := q.ring.GetReplicationSetForOperation(dskitring.Read)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "ingesters to read from: %v", err)
	}
	results, err := rs.Do(ctx, 0, func(ctx context.Context, inst *dskitring.InstanceDesc) (any, error) {
		c, err := q.pool.GetClientForInstance(*inst)
		if err != nil {
			return nil, fmt.Errorf("ingester %s: %w", inst.Id, err)
		}
		return f(ctx, c.(*rpc.PooledIngester))
	})
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "read from ingesters: %v", err)
	}
	out := make([]T, 0, len(results))
	for _, r := range results {
		out = append(out, r.(T))
	}
	return out, nil
}

// Select streams the series from a read quorum of the ingesters and
// merges the replicas' streams series by series (each ingester sends its
// series sorted by labels), so the querier holds a few frames per ingester,
// never a whole answer. Every acknowledged sample is on a write quorum of
// its replicas, so any read quorum holds it: without zone awareness only
// the quorum is asked, and an ingester that fails, before or in the middle
// of its stream, is replaced by a spare replica that continues after the
// last series the failed one gave. With zone awareness every zone is asked
// and as many zones may fail as the ring tolerates. Past that the query
// fails: never a silent hole.
func (r *ringQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if _, err := tenant.From(ctx); err != nil {
		return storage.ErrSeriesSet(err)
	}
	start, end := r.mint, r.maxt
	if hints != nil {
		start, end = max(start, hints.Start), min(end, hints.End)
	}
	rs, err := r.q.ring.GetReplicationSetForOperation(dskitring.Read)
	if err != nil {
		return storage.ErrSeriesSet(rpc.Errorf(rpc.CauseUnavailable, "ingesters to read from: %v", err))
	}
	req := &prompb.Query{StartTimestampMs: start, EndTimestampMs: end, Matchers: rpc.ToLabelMatchers(ms)}
	reads := newReadQuorum(rs)
	open := func(inst dskitring.InstanceDesc) func() ([]*prompb.ChunkedSeries, bool, error) {
		stream := newFrameStream(ctx)
		r.mu.Lock()
		r.streams = append(r.streams, stream)
		r.mu.Unlock()
		go func() {
			c, err := r.q.pool.GetClientForInstance(inst)
			if err == nil {
				err = c.(*rpc.PooledIngester).QueryStream(stream.ctx, req, stream.put)
			}
			if err != nil {
				err = fmt.Errorf("ingester %s: %w", inst.Id, err)
			}
			stream.finish(err)
		}()
		return stream.next
	}
	sets := make([]storage.ChunkSeriesSet, 0, len(reads.active))
	for _, inst := range reads.active {
		set := &chunkSeriesSet{next: open(inst), cur: -1, fetched: fetchCountsFrom(ctx)}
		set.failed = func(err error) (func() ([]*prompb.ChunkedSeries, bool, error), error) {
			spare, err := reads.fail(inst, err)
			if err != nil {
				return nil, err
			}
			if spare == nil {
				return nil, nil // tolerated: the other zones hold it all
			}
			inst = *spare
			return open(inst), nil
		}
		sets = append(sets, set)
	}
	return mergeReplicas(sets, start, end)
}

// readQuorum chooses the ingesters a read asks and decides what a failed
// one means.
type readQuorum struct {
	rs     dskitring.ReplicationSet
	active []dskitring.InstanceDesc // asked from the start

	mu     sync.Mutex
	spares []dskitring.InstanceDesc // asked when an active one fails
	failed []string                 // zones with zone awareness, else IDs
	errs   []error
}

func newReadQuorum(rs dskitring.ReplicationSet) *readQuorum {
	q := &readQuorum{rs: rs}
	insts := slices.Clone(rs.Instances)
	if rs.MaxUnavailableZones > 0 || rs.MaxErrors <= 0 || len(insts) <= rs.MaxErrors {
		q.active = insts
		return q
	}
	// Spread the reads: a different quorum each time.
	k := rand.IntN(len(insts))
	insts = append(insts[k:], insts[:k]...)
	n := len(insts) - rs.MaxErrors
	q.active, q.spares = insts[:n], insts[n:]
	return q
}

// fail records that inst failed with err. It returns a spare to continue
// with, or nil and nil when the failure is tolerated without one (zone
// awareness), or the error to fail the query with.
func (q *readQuorum) fail(inst dskitring.InstanceDesc, err error) (*dskitring.InstanceDesc, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.errs = append(q.errs, err)
	if q.rs.MaxUnavailableZones > 0 {
		if !slices.Contains(q.failed, inst.Zone) {
			q.failed = append(q.failed, inst.Zone)
		}
		if len(q.failed) <= q.rs.MaxUnavailableZones {
			return nil, nil
		}
		return nil, rpc.Errorf(rpc.CauseUnavailable, "read from ingesters: %d zones failed, at most %d tolerated: %v", len(q.failed), q.rs.MaxUnavailableZones, errors.Join(q.errs...))
	}
	q.failed = append(q.failed, inst.Id)
	if len(q.spares) == 0 {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "read from ingesters: %d failed and no replica is left to ask (at most %d may fail): %v", len(q.failed), q.rs.MaxErrors, errors.Join(q.errs...))
	}
	spare := q.spares[0]
	q.spares = q.spares[1:]
	return &spare, nil
}

// frameStream carries one source's frames from the goroutine receiving
// them to the series set reading them. The receiver reuses a frame's
// memory for the frame after next (rpc's QueryStream), so it hands over a
// frame and then waits until the reader is done with the one before: one
// frame is received while the reader reads another.
type frameStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	frames chan []*prompb.ChunkedSeries
	// done tells the receiver that the reader is done with a frame.
	done    chan struct{}
	handed  bool  // (receiver) a frame was handed over before
	reading bool  // (reader) the reader holds a frame
	err     error // set before frames is closed
}

func newFrameStream(ctx context.Context) *frameStream {
	ctx, cancel := context.WithCancel(ctx)
	return &frameStream{ctx: ctx, cancel: cancel, frames: make(chan []*prompb.ChunkedSeries, 1), done: make(chan struct{}, 2)}
}

// put hands a received frame to the reader, and returns once the reader
// is done with the frame before it.
func (s *frameStream) put(resp *prompb.ChunkedReadResponse) error {
	select {
	case s.frames <- resp.ChunkedSeries:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	if !s.handed {
		s.handed = true
		return nil
	}
	select {
	case <-s.done:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// finish ends the stream with err (nil: every frame was received).
func (s *frameStream) finish(err error) {
	s.err = err
	close(s.frames)
}

// next returns the next frame; at the end of the stream it returns false
// and the stream's error. The reader must be done with the frame it had.
func (s *frameStream) next() ([]*prompb.ChunkedSeries, bool, error) {
	if s.reading {
		s.reading = false
		s.done <- struct{}{}
	}
	select {
	case f, ok := <-s.frames:
		if ok {
			s.reading = true
			return f, true, nil
		}
		s.cancel()
		return nil, false, s.err
	case <-s.ctx.Done():
		s.cancel()
		return nil, false, s.ctx.Err()
	}
}

func (r *ringQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	req := &rpc.LabelsRequest{Start: r.mint, End: r.maxt, Name: name, Matchers: rpc.ToLabelMatchers(ms), Limit: limitOf(hints)}
	return r.union(ctx, req, (*rpc.PooledIngester).LabelValues)
}

func (r *ringQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	req := &rpc.LabelsRequest{Start: r.mint, End: r.maxt, Matchers: rpc.ToLabelMatchers(ms), Limit: limitOf(hints)}
	return r.union(ctx, req, (*rpc.PooledIngester).LabelNames)
}

func (r *ringQuerier) union(ctx context.Context, req *rpc.LabelsRequest, call func(*rpc.PooledIngester, context.Context, *rpc.LabelsRequest) ([]string, error)) ([]string, annotations.Annotations, error) {
	answers, err := each(ctx, r.q, func(ctx context.Context, c *rpc.PooledIngester) ([]string, error) {
		return call(c, ctx, req)
	})
	if err != nil {
		return nil, nil, err
	}
	var all []string
	for _, a := range answers {
		all = append(all, a...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if req.Limit > 0 && len(all) > req.Limit {
		all = all[:req.Limit]
	}
	return all, nil, nil
}

// Close ends the streams of every Select that were not read to the end.
func (r *ringQuerier) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		s.cancel()
	}
	r.streams = nil
	return nil
}

func limitOf(h *storage.LabelHints) int {
	if h == nil {
		return 0
	}
	return h.Limit
}

// chunkSeriesSet walks the series one source sent, sorted by labels, frame
// by frame. failed, if set, decides what a source's failure means: another
// source to continue with (a replica of the same series, read after the
// last series this set gave), nothing (end quietly: others cover it), or
// the error to fail the query with.
type chunkSeriesSet struct {
	next   func() ([]*prompb.ChunkedSeries, bool, error)
	series []*prompb.ChunkedSeries
	cur    int
	at     storage.ChunkSeries
	err    error
	failed func(error) (func() ([]*prompb.ChunkedSeries, bool, error), error)
	// raw is the series advance moved to, as received, and rawSize the
	// bytes of its chunks; last is the last series moved to in this frame,
	// and lastLabels the labels of the last series of the frames before,
	// which a fail-over skips through.
	raw, last  *prompb.ChunkedSeries
	rawSize    int
	lastLabels labels.Labels
	// skipThrough, after a fail-over, holds the labels of the last series
	// given: the new source's series up to them were given already.
	skipThrough labels.Labels
	// fetched, if set, counts the chunks against the query's limits.
	fetched *fetchCounts
	builder labels.ScratchBuilder
}

func (s *chunkSeriesSet) Next() bool {
	return s.advance() && s.build()
}

// advance moves to the next series the source sent, as received (its
// labels and chunks pointing into the frame), and counts its chunks
// against the query's limits; build makes it the set's series.
func (s *chunkSeriesSet) advance() bool {
	if s.err != nil {
		return false
	}
	var cs *prompb.ChunkedSeries
	for {
		s.cur++
		for s.cur >= len(s.series) {
			if s.last != nil { // the frame's memory goes back to its receiver
				s.lastLabels, s.last = s.labelsOf(s.last), nil
			}
			s.raw = nil
			f, ok, err := s.next()
			if !ok {
				s.series, s.raw = nil, nil
				if err == nil || s.failed == nil {
					s.err = err
					return false
				}
				next, ferr := s.failed(err)
				if next == nil {
					s.err = ferr
					return false
				}
				s.next = next
				s.skipThrough = s.lastLabels
				continue
			}
			s.series, s.cur = f, 0
		}
		cs = s.series[s.cur]
		s.series[s.cur] = nil // the merge holds what it still needs
		if len(cs.Chunks) == 0 {
			continue // no samples: the merge cannot take a series without any
		}
		if s.skipThrough.IsEmpty() || labels.Compare(s.labelsOf(cs), s.skipThrough) > 0 {
			break
		}
	}
	size := 0
	for _, c := range cs.Chunks {
		size += len(c.Data)
	}
	if s.fetched != nil {
		if err := s.fetched.addChunks(len(cs.Chunks), size); err != nil {
			s.err = err
			return false
		}
	}
	s.raw, s.last, s.rawSize = cs, cs, size
	return true
}

func (s *chunkSeriesSet) labelsOf(cs *prompb.ChunkedSeries) labels.Labels {
	b := &s.builder
	b.Reset()
	for _, l := range cs.Labels {
		b.Add(l.Name, l.Value)
	}
	return b.Labels()
}

// build makes the series advance moved to the set's series. The frame's
// label strings and chunk data point into the bytes it was decoded from:
// the labels and the chunks are copied, one allocation each, so that the
// frame is garbage once read.
func (s *chunkSeriesSet) build() bool {
	cs := s.raw
	data := make([]byte, 0, s.rawSize)
	series := &chunkSeries{}
	metas := series.one[:0]
	if len(cs.Chunks) > 1 {
		metas = make([]chunks.Meta, 0, len(cs.Chunks))
	}
	for _, c := range cs.Chunks {
		data = append(data, c.Data...)
		chk, err := chunkenc.FromData(chunkenc.Encoding(c.Type), data[len(data)-len(c.Data):len(data):len(data)])
		if err != nil {
			s.err = fmt.Errorf("decode chunk of %s: %w", s.labelsOf(cs), err)
			return false
		}
		metas = append(metas, chunks.Meta{MinTime: c.MinTimeMs, MaxTime: c.MaxTimeMs, Chunk: chk})
	}
	series.lset, series.metas = s.labelsOf(cs), metas
	s.at = series
	return true
}

func (s *chunkSeriesSet) At() storage.ChunkSeries           { return s.at }
func (s *chunkSeriesSet) Err() error                        { return s.err }
func (s *chunkSeriesSet) Warnings() annotations.Annotations { return nil }

// Cardinality asks every ingester of the ring about the tenant's head and
// merges the answers (rpc.MergeCardinality). As many may fail as a read
// tolerates; the series counts then stand for the ingesters that answered.
func (q *Ingesters) Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error) {
	if _, err := tenant.From(ctx); err != nil {
		return nil, err
	}
	rs, err := q.ring.GetReplicationSetForOperation(dskitring.Read)
	if err != nil {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "ingesters to ask: %v", err)
	}
	type answer struct {
		resp *rpc.CardinalityResponse
		err  error
	}
	ask := overAsk(req)
	answers := make(chan answer, len(rs.Instances))
	for _, inst := range rs.Instances {
		go func() {
			c, err := q.pool.GetClientForInstance(inst)
			if err != nil {
				answers <- answer{err: fmt.Errorf("ingester %s: %w", inst.Id, err)}
				return
			}
			resp, err := c.(*rpc.PooledIngester).Cardinality(ctx, &ask)
			if err != nil {
				err = fmt.Errorf("ingester %s: %w", inst.Id, err)
			}
			answers <- answer{resp, err}
		}()
	}
	var (
		got  []*rpc.CardinalityResponse
		errs []error
	)
	for range rs.Instances {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		got = append(got, a.resp)
	}
	if len(errs) > rs.MaxErrors {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "ask ingesters about cardinality: %v", errors.Join(errs...))
	}
	// Each series is on rf of the instances: the answers hold on average
	// answered*rf/instances copies of it.
	rf := min(q.ring.ReplicationFactor(), len(rs.Instances))
	copies := float64(len(got)) * float64(rf) / float64(len(rs.Instances))
	return rpc.MergeCardinality(got, copies, req.Limit), nil
}

// overAsk widens a request for the top entries: each ingester ranks its
// own share and picks among equal counts as it likes, so the merged top
// entries are taken from ten times as many.
func overAsk(req *rpc.CardinalityRequest) rpc.CardinalityRequest {
	ask := *req
	if ask.Kind == rpc.CardinalityStatus {
		ask.Limit = max(req.Limit*10, 100)
	}
	return ask
}

// LocalCardinality answers cardinality questions from the ingester of the
// process, ranked as Ingesters ranks the ring's answers.
type LocalCardinality struct {
	Ingester interface {
		Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error)
	}
}

// Cardinality implements api.CardinalityQuerier.
func (l LocalCardinality) Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error) {
	ask := overAsk(req)
	resp, err := l.Ingester.Cardinality(ctx, &ask)
	if err != nil {
		return nil, err
	}
	return rpc.MergeCardinality([]*rpc.CardinalityResponse{resp}, 1, req.Limit), nil
}
