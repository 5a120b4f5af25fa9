package distributor

import (
	"context"
	"errors"
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
	return segs
}

// Push implements rpc.Pusher.
func (p *RingPusher) Push(ctx context.Context, req *rwproto.Request) error {
	tenantID, err := tenant.From(ctx)
	if err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	b := p.batches.Get().(*batch)
	b.keys, b.spans, b.buf = b.keys[:0], b.spans[:0], b.buf[:0]
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
	err = dskitring.DoBatchWithOptions(ctx, dskitring.WriteNoExtend, p.ring, b.keys,
		func(inst dskitring.InstanceDesc, indexes []int) error {
			c, err := p.pool.GetClientForInstance(inst)
			if err != nil {
				return rpc.Errorf(rpc.CauseUnavailable, "ingester %s: %v", inst.Id, err)
			}
			if err := c.(*rpc.PooledIngester).PushSegments(pushCtx, b.segments(indexes)); err != nil {
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
