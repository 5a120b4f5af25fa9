package distributor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/testutil/ringtest"
)

// recordingIngester stands in for an ingester behind a real gRPC server.
type recordingIngester struct {
	mu     sync.Mutex
	series map[string]int
	err    error
	srv    *grpc.Server
}

func (r *recordingIngester) PushBody(ctx context.Context, body []byte) error {
	if _, err := tenant.From(ctx); err != nil {
		return rpc.Errorf(rpc.CauseBadData, "no tenant")
	}
	var req rwproto.Request
	if err := req.Unmarshal(body, rwproto.Limits{}); err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ts := range req.Timeseries {
		r.series[strings.Clone(ts.Labels[0].Value)]++ // body is reused after PushBody returns
	}
	return r.err
}

func (r *recordingIngester) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.series))
	for n := range r.series {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// cluster starts n recording ingesters in one in-memory ring and a pusher
// with replication factor rf.
func cluster(t *testing.T, n, rf int) ([]*recordingIngester, *RingPusher) {
	ings := make([]*recordingIngester, n)
	register := make([]func(*grpc.Server), n)
	for i := range ings {
		ing := &recordingIngester{series: map[string]int{}}
		ings[i] = ing
		register[i] = func(s *grpc.Server) { rpc.RegisterIngesterServer(s, ing) }
	}
	r := ringtest.Start(t, rf, register...)
	for i, srv := range r.Servers {
		ings[i].srv = srv
	}
	return ings, NewRingPusher(r.Client, r.Pool, 5*time.Second)
}

func decoded(t *testing.T, names ...string) *rwproto.Request {
	wr := &prompb.WriteRequest{}
	for _, n := range names {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: n}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1}},
		})
	}
	buf, err := wr.Marshal()
	require.NoError(t, err)
	var r rwproto.Request
	require.NoError(t, r.Unmarshal(buf, rwproto.Limits{}))
	return &r
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("series_%03d", i)
	}
	sort.Strings(out)
	return out
}

var ctxA = tenant.With(context.Background(), "team-a")

func TestRingPushReplicatesToEveryOwner(t *testing.T) {
	ings, p := cluster(t, 3, 3)
	all := names(100)
	require.NoError(t, p.Push(ctxA, decoded(t, all...)))
	for _, ing := range ings {
		require.Eventually(t, func() bool { return len(ing.names()) == len(all) }, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, all, ing.names())
	}
}

func TestRingPushShardsWithRF1(t *testing.T) {
	ings, p := cluster(t, 3, 1)
	all := names(300)
	require.NoError(t, p.Push(ctxA, decoded(t, all...)))
	seen := map[string]int{}
	for i, ing := range ings {
		got := ing.names()
		require.NotEmpty(t, got, "ingester %d holds a share", i)
		for _, n := range got {
			seen[n]++
		}
	}
	require.Len(t, seen, len(all))
	for n, c := range seen {
		require.Equal(t, 1, c, "series %s is on exactly one ingester", n)
	}
}

func TestRingPushToleratesOneDownIngester(t *testing.T) {
	ings, p := cluster(t, 3, 3)
	ings[2].srv.Stop() // still in the ring, but unreachable
	all := names(50)
	require.NoError(t, p.Push(ctxA, decoded(t, all...)), "a quorum of 2 of 3 replicas is enough")
	require.Equal(t, all, ings[0].names())
	require.Equal(t, all, ings[1].names())

	ings[1].srv.Stop()
	err := p.Push(ctxA, decoded(t, "lost_quorum"))
	require.Error(t, err)
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err), "the sender must retry: %v", err)
}

func TestRingPushKeepsClientErrors(t *testing.T) {
	ings, p := cluster(t, 3, 3)
	for _, ing := range ings {
		ing.err = rpc.Errorf(rpc.CauseBadData, "out-of-order sample")
	}
	err := p.Push(ctxA, decoded(t, "x"))
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	require.ErrorContains(t, err, "out-of-order sample")
}

func TestRingPushOwnersDependOnTenant(t *testing.T) {
	_, p := cluster(t, 3, 1)
	// The same series of two tenants may sit on different ingesters.
	rs := func(tenantID string) string {
		enc := rwproto.AppendStringLabels(nil, decoded(t, "up").Timeseries[0].Labels)
		set, err := p.ring.(*dskitring.Ring).Get(ring.Token(tenantID, enc), dskitring.Write, nil, nil, nil)
		require.NoError(t, err)
		return set.Instances[0].Id
	}
	owners := map[string]bool{}
	for i := range 20 {
		owners[rs(fmt.Sprintf("tenant-%d", i))] = true
	}
	require.Greater(t, len(owners), 1)
}
