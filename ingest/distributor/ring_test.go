package distributor

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/testutil/benchseries"
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
func cluster(t *testing.T, n, rf int, indexed bool) ([]*recordingIngester, *RingPusher) {
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
	p := NewRingPusher(r.Client, r.Pool, 5*time.Second)
	if indexed {
		p.WithIndex(r.Index, r.Client, r.HeartbeatTimeout)
	}
	return ings, p
}

// eachLookup runs test with replicas found by walking the ring and by the
// token index: both must behave the same.
func eachLookup(t *testing.T, test func(t *testing.T, indexed bool)) {
	t.Run("walk", func(t *testing.T) { test(t, false) })
	t.Run("index", func(t *testing.T) { test(t, true) })
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
	eachLookup(t, func(t *testing.T, indexed bool) {
		ings, p := cluster(t, 3, 3, indexed)
		all := names(100)
		require.NoError(t, p.Push(ctxA, decoded(t, all...)))
		for _, ing := range ings {
			require.Eventually(t, func() bool { return len(ing.names()) == len(all) }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, all, ing.names())
		}
	})
}

// Series without their own bytes (remote write 2.0, OTLP, or changed by
// validation) are encoded for the ingesters, which get them whole.
func TestRingPushEncodesSeriesWithoutBytes(t *testing.T) {
	eachLookup(t, func(t *testing.T, indexed bool) {
		ings, p := cluster(t, 3, 3, indexed)
		all := names(50)
		req := decoded(t, all...)
		for i := range req.Timeseries {
			if i%2 == 0 {
				req.Timeseries[i].Raw = nil
			}
		}
		require.NoError(t, p.Push(ctxA, req))
		for _, ing := range ings {
			require.Eventually(t, func() bool { return len(ing.names()) == len(all) }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, all, ing.names())
		}
	})
}

func TestRingPushShardsWithRF1(t *testing.T) {
	eachLookup(t, func(t *testing.T, indexed bool) {
		ings, p := cluster(t, 3, 1, indexed)
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
	})
}

func TestRingPushToleratesOneDownIngester(t *testing.T) {
	eachLookup(t, func(t *testing.T, indexed bool) {
		ings, p := cluster(t, 3, 3, indexed)
		ings[2].srv.Stop() // still in the ring, but unreachable
		all := names(50)
		require.NoError(t, p.Push(ctxA, decoded(t, all...)), "a quorum of 2 of 3 replicas is enough")
		require.Equal(t, all, ings[0].names())
		require.Equal(t, all, ings[1].names())

		ings[1].srv.Stop()
		err := p.Push(ctxA, decoded(t, "lost_quorum"))
		require.Error(t, err)
		require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(err), "the sender must retry: %v", err)
	})
}

func TestRingPushKeepsClientErrors(t *testing.T) {
	eachLookup(t, func(t *testing.T, indexed bool) {
		ings, p := cluster(t, 3, 3, indexed)
		for _, ing := range ings {
			ing.err = rpc.Errorf(rpc.CauseBadData, "out-of-order sample")
		}
		err := p.Push(ctxA, decoded(t, "x"))
		require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
		require.ErrorContains(t, err, "out-of-order sample")
	})
}

func TestRingPushOwnersDependOnTenant(t *testing.T) {
	_, p := cluster(t, 3, 1, false)
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

// nopIngester accepts every push and keeps nothing: the benchmark measures
// the distributor's side, plus gRPC's server-side framing.
type nopIngester struct{}

func (nopIngester) PushBody(context.Context, []byte) error { return nil }

// BenchmarkRingPush pushes a decoded request of 2000 series, 12 labels each,
// through the ring to 3 ingesters over loopback gRPC with replication
// factor 3: token hashing, replica placement, per-ingester batching and the
// gRPC calls.
//
//	go test -run '^$' -bench RingPush -count 6 ./ingest/distributor | benchstat -
func BenchmarkRingPush(b *testing.B) {
	b.Run("walk", func(b *testing.B) { benchmarkRingPush(b, false) })
	b.Run("index", func(b *testing.B) { benchmarkRingPush(b, true) })
}

func benchmarkRingPush(b *testing.B, indexed bool) {
	register := make([]func(*grpc.Server), 3)
	for i := range register {
		register[i] = func(s *grpc.Server) { rpc.RegisterIngesterServer(s, nopIngester{}) }
	}
	r := ringtest.Start(b, 3, register...)
	// Uncompressed, as -ingester.client.grpc-compression is by default.
	pool := rpc.NewIngesterPool("bench", r.Client, rpc.DefaultClientConfig(), slog.New(slog.DiscardHandler), nil)
	require.NoError(b, services.StartAndAwaitRunning(context.Background(), pool))
	b.Cleanup(func() { _ = services.StopAndAwaitTerminated(context.Background(), pool) })
	p := NewRingPusher(r.Client, pool, 5*time.Second)
	if indexed {
		p.WithIndex(r.Index, r.Client, r.HeartbeatTimeout)
	}
	const series = 2000
	wr := benchseries.Libvirt(series)
	buf, err := wr.Marshal()
	require.NoError(b, err)
	var req rwproto.Request
	require.NoError(b, req.Unmarshal(buf, rwproto.Limits{}))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.Push(ctxA, &req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
	b.ReportMetric(float64(b.N*series)/b.Elapsed().Seconds(), "samples/s")
}

func TestBatchSegmentsCoalesceAdjacentItems(t *testing.T) {
	b := &batch{}
	for _, s := range []string{"aa", "bbb", "c", "dddd"} {
		b.add(0, func(dst []byte) []byte { return append(dst, s...) })
	}
	for _, tc := range []struct {
		indexes []int
		want    []string
	}{
		{[]int{0, 1, 2, 3}, []string{"aabbbcdddd"}},
		{[]int{0, 2, 3}, []string{"aa", "cdddd"}},
		{[]int{1}, []string{"bbb"}},
		{[]int{0, 3}, []string{"aa", "dddd"}},
		{nil, nil},
	} {
		var got []string
		for _, seg := range b.segments(tc.indexes) {
			got = append(got, string(seg))
		}
		require.Equal(t, tc.want, got, "indexes %v", tc.indexes)
	}
}
