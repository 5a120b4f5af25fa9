package distributor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/ring/client"

	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// RingPusher sends each series to the ingesters that own its token and
// succeeds when a quorum of every series' replicas stored it. Each
// ingester's request is made of the series' own bytes: nothing is encoded
// again on the way.
type RingPusher struct {
	pool    *client.Pool
	ring    dskitring.DoBatchRing
	timeout time.Duration
	batches sync.Pool

	// index, when set, finds each series' replicas by binary search
	// instead of a walk of the ring; see WithIndex.
	index            *ring.IndexWatcher
	instances        instanceGetter
	heartbeatTimeout time.Duration
	strategy         dskitring.ReplicationStrategy
}

// instanceGetter is the part of dskit's ring WithIndex needs beyond DoBatch.
type instanceGetter interface {
	GetInstance(id string) (dskitring.InstanceDesc, error)
}

// WithIndex makes p look up each series' replicas in the index w keeps of
// the ring (which must not be zone-aware) and take their state and health
// from r, the same ring p was made with. heartbeatTimeout is the ring's.
func (p *RingPusher) WithIndex(w *ring.IndexWatcher, r instanceGetter, heartbeatTimeout time.Duration) *RingPusher {
	p.index, p.instances, p.heartbeatTimeout = w, r, heartbeatTimeout
	p.strategy = dskitring.NewDefaultReplicationStrategy()
	return p
}

// NewRingPusher returns a pusher over the ingesters of r, connecting
// through pool (rpc.NewIngesterPool). timeout bounds each push to an
// ingester; pushes past the quorum finish in the background.
func NewRingPusher(r dskitring.DoBatchRing, pool *client.Pool, timeout time.Duration) *RingPusher {
	p := &RingPusher{pool: pool, ring: r, timeout: timeout}
	p.batches.New = func() any { return &batch{} }
	return p
}

// batch holds a push's series bytes, framed as WriteRequest fields, from
// before the push until its last replica finished: past the quorum, pushes
// go on after Push returned and the caller reused its request.
type batch struct {
	keys  []uint32
	spans [][2]int
	buf   []byte
	enc   []byte
	sets  []resolvedSet
	descs []dskitring.InstanceDesc

	// With an index, items are grouped by replica set: order lists the
	// items set after set, setStart[s] where set s begins in it; DoBatch
	// gets one representative key per set used (repKeys, of set repSets).
	order    []int
	setStart []int
	repKeys  []uint32
	repSets  []int
}

// groupBySet groups the items by the replica set of their key and returns
// one key per set used: all items of a set have the same replicas, so
// DoBatch need track quorums per set, not per series.
func (b *batch) groupBySet(x *ring.TokenIndex) []uint32 {
	n := x.Sets()
	b.setStart = slices.Grow(b.setStart[:0], n+1)[:n+1]
	clear(b.setStart)
	b.order = slices.Grow(b.order[:0], len(b.keys))[:len(b.keys)]
	sets := b.repSets[:0] // scratch: the set of each item
	for _, k := range b.keys {
		s := x.Set(k)
		sets = append(sets, s)
		b.setStart[s+1]++
	}
	for s := range n {
		b.setStart[s+1] += b.setStart[s]
	}
	next := slices.Clone(b.setStart[:n])
	for i, s := range sets {
		b.order[next[s]] = i
		next[s]++
	}
	b.repKeys, b.repSets = b.repKeys[:0], sets[:0]
	for s := range n {
		if b.setStart[s+1] > b.setStart[s] {
			b.repKeys = append(b.repKeys, b.keys[b.order[b.setStart[s]]])
			b.repSets = append(b.repSets, s)
		}
	}
	return b.repKeys
}

// setSegments returns the items of the sets whose representatives are at
// reps, as segments.
func (b *batch) setSegments(reps []int) [][]byte {
	var items []int
	for _, j := range reps {
		s := b.repSets[j]
		items = append(items, b.order[b.setStart[s]:b.setStart[s+1]]...)
	}
	return b.segments(items)
}

func (b *batch) add(key uint32, framed func([]byte) []byte) {
	start := len(b.buf)
	b.buf = framed(b.buf)
	b.keys = append(b.keys, key)
	b.spans = append(b.spans, [2]int{start, len(b.buf)})
}

// segments returns the framed items at indexes, which are ascending, as
// slices of buf: adjacent items make one segment, so an ingester that owns
// every series of the push gets the whole buffer in one piece, uncopied.
func (b *batch) segments(indexes []int) [][]byte {
	var segs [][]byte
	start, end := -1, -1
	for _, i := range indexes {
		sp := b.spans[i]
		if sp[0] == end {
			end = sp[1]
			continue
		}
		if start >= 0 {
			segs = append(segs, b.buf[start:end])
		}
		start, end = sp[0], sp[1]
	}
	if start >= 0 {
		segs = append(segs, b.buf[start:end])
	}
	if len(segs) > maxSegments {
		// Scattered items: one copy costs less than a buffer per item.
		var n int
		for _, seg := range segs {
			n += len(seg)
		}
		body := make([]byte, 0, n)
		for _, seg := range segs {
			body = append(body, seg...)
		}
		return [][]byte{body}
	}
	return segs
}

// maxSegments bounds the pieces of one push; more are copied together.
const maxSegments = 16

// Push implements rpc.Pusher.
func (p *RingPusher) Push(ctx context.Context, req *rwproto.Request) error {
	tenantID, err := tenant.From(ctx)
	if err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	// Series decoded from remote write 2.0 or built from OTLP are encoded
	// for the ingesters here, in the one process that forwards them.
	if err := req.EncodeRaw(); err != nil {
		return rpc.Errorf(rpc.CauseBadData, "encode for the ingesters: %v", err)
	}
	b := p.batches.Get().(*batch)
	b.keys, b.spans, b.buf, b.descs = b.keys[:0], b.spans[:0], b.buf[:0], b.descs[:0]
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		b.enc = rwproto.AppendStringLabels(b.enc[:0], ts.Labels)
		b.add(ring.Token(tenantID, b.enc), func(dst []byte) []byte { return rwproto.AppendSeries(dst, ts.Raw) })
	}
	for i := range req.Metadata {
		m := &req.Metadata[i]
		b.add(ring.Token(tenantID, []byte(m.MetricFamilyName)), func(dst []byte) []byte { return rwproto.AppendMetadata(dst, m.Raw) })
	}
	if len(b.keys) == 0 {
		p.batches.Put(b)
		return nil
	}
	// Replicas past the quorum keep going after the sender got its answer,
	// so their calls must not die with the sender's request. DoBatch itself
	// waits on the request's context: Cleanup cancels pushCtx as soon as the
	// last replica finished, which may be before DoBatch has read the result.
	pushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	var r dskitring.DoBatchRing = p.ring
	keys, segments := b.keys, b.segments
	if p.index != nil {
		if x := p.index.Index(); x.Sets() > 0 {
			r = p.indexed(b, x)
			keys, segments = b.groupBySet(x), b.setSegments
		}
	}
	err = dskitring.DoBatchWithOptions(ctx, dskitring.WriteNoExtend, r, keys,
		func(inst dskitring.InstanceDesc, indexes []int) error {
			c, err := p.pool.GetClientForInstance(inst)
			if err != nil {
				return rpc.Errorf(rpc.CauseUnavailable, "ingester %s: %v", inst.Id, err)
			}
			if err := c.(*rpc.PooledIngester).PushSegments(pushCtx, segments(indexes)); err != nil {
				return rpc.Errorf(rpc.CauseOf(err), "ingester %s: %v", inst.Id, err)
			}
			return nil
		},
		dskitring.DoBatchOptions{
			Cleanup: func() { cancel(); p.batches.Put(b) },
			IsClientError: func(err error) bool {
				c := rpc.CauseOf(err)
				return c == rpc.CauseBadData || c == rpc.CauseTenantLimit
			},
		})
	var rerr *rpc.Error
	if err != nil && !errors.As(err, &rerr) {
		return rpc.Errorf(rpc.CauseUnavailable, "push to ingesters: %v", err) // the ring itself: empty, or too many unhealthy
	}
	return err
}

var _ rpc.Pusher = (*RingPusher)(nil)

// resolvedSet is a replica set of the index with the state and health of
// its instances, worked out once per push.
type resolvedSet struct {
	done bool
	rs   dskitring.ReplicationSet
	err  error
}

// indexedRing answers DoBatch's lookups for one push from the token index:
// a binary search per series, and one health check per replica set.
type indexedRing struct {
	dskitring.DoBatchRing
	p     *RingPusher
	index *ring.TokenIndex
	b     *batch
}

func (p *RingPusher) indexed(b *batch, x *ring.TokenIndex) *indexedRing {
	b.sets = b.sets[:0]
	for range x.Sets() {
		b.sets = append(b.sets, resolvedSet{})
	}
	return &indexedRing{DoBatchRing: p.ring, p: p, index: x, b: b}
}

// Get implements dskitring.DoBatchRing.
func (r *indexedRing) Get(key uint32, op dskitring.Operation, bufDescs []dskitring.InstanceDesc, bufHosts, bufZones []string) (dskitring.ReplicationSet, error) {
	s := r.index.Set(key)
	if s < 0 {
		return r.DoBatchRing.Get(key, op, bufDescs, bufHosts, bufZones)
	}
	rs := &r.b.sets[s]
	if rs.done {
		return rs.rs, rs.err
	}
	ids := r.index.Instances(s)
	start := len(r.b.descs)
	for _, id := range ids {
		d, err := r.p.instances.GetInstance(id)
		if err != nil {
			// The ring client has not seen this instance yet: ask it.
			r.b.descs = r.b.descs[:start]
			return r.DoBatchRing.Get(key, op, bufDescs, bufHosts, bufZones)
		}
		r.b.descs = append(r.b.descs, d)
	}
	// The set's slice stays valid: later sets append after it, and a full
	// descs is reallocated, leaving this one's array as it is.
	instances := r.b.descs[start:len(r.b.descs):len(r.b.descs)]
	healthy, maxErrors, err := r.p.strategy.Filter(instances, op, r.ReplicationFactor(), r.p.heartbeatTimeout, false)
	*rs = resolvedSet{done: true, rs: dskitring.ReplicationSet{Instances: healthy, MaxErrors: maxErrors}, err: err}
	return rs.rs, rs.err
}
