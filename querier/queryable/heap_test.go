package queryable

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

// BenchmarkQueryPeakHeap runs count() over 100k series with 200-byte label
// values, held by three replicas in three other processes, through the
// PromQL engine. It reports the querier's peak heap above what it held
// before the query (sampled every millisecond), the encoded size of one
// replica's answer, and the ratio of the two: the target is at most
// 2× the answer plus a constant.
//
//	go test ./querier/queryable -run '^$' -bench QueryPeakHeap -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkQueryPeakHeap(b *testing.B) {
	// Two sizes: the peak's growth between them, against the answer's, is
	// what the query costs a series; the rest is a constant (frames in
	// flight, the engine).
	for _, n := range []int{25_000, 100_000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) { benchmarkQueryPeakHeap(b, n) })
	}
}

func benchmarkQueryPeakHeap(b *testing.B, n int) {
	q := remoteReplicas(b, 3, n)
	at := t0 + 4*15_000
	lookback := 5 * time.Minute
	answer := answerBytes(b, q, &prompb.Query{
		StartTimestampMs: at - lookback.Milliseconds(), EndTimestampMs: at,
		Matchers: rpc.ToLabelMatchers([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "openstack_vnic_rx_bytes_total")}),
	})
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e9, Timeout: time.Minute, LookbackDelta: lookback})
	var peak atomic.Uint64
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.HeapInuse
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					var m runtime.MemStats
					runtime.ReadMemStats(&m)
					if m.HeapInuse > before && m.HeapInuse-before > peak.Load() {
						peak.Store(m.HeapInuse - before)
					}
				}
			}
		}()
		countAll(b, eng, q, at, n)
		close(stop)
		<-done
	}
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(answer)/(1<<20), "answer-MB")
	b.ReportMetric(float64(peak.Load())/float64(answer), "peak/answer")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds()*float64(b.N), "series/s")
}

// answerBytes is the encoded size of what one ingester sends for req.
func answerBytes(b *testing.B, q *Ingesters, req *prompb.Query) int {
	rs, err := q.ring.GetReplicationSetForOperation(dskitring.Read)
	require.NoError(b, err)
	c, err := q.pool.GetClientForInstance(rs.Instances[0])
	require.NoError(b, err)
	size := 0
	require.NoError(b, c.(*rpc.PooledIngester).QueryStream(ctxA, req, func(resp *prompb.ChunkedReadResponse) error {
		size += resp.Size()
		return nil
	}))
	return size
}

// BenchmarkQueryReplicas is the querier's CPU cost of the query
// BenchmarkQueryPeakHeap runs, without its heap sampling (a stop of the
// world every millisecond): three replicas in three other processes, two
// of them read, merged series by series, counted by the PromQL engine.
//
//	go test ./querier/queryable -run '^$' -bench QueryReplicas -count 6 -cpuprofile cpu.out
func BenchmarkQueryReplicas(b *testing.B) {
	const n = 100_000
	q := remoteReplicas(b, 3, n)
	at := t0 + 4*15_000
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e9, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	// The replicas share the machine's cores: the querier's own CPU time,
	// not the wall time, is what the querier costs.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	var spent time.Duration
	for b.Loop() {
		before := cpu()
		countAll(b, eng, q, at, n)
		spent += cpu() - before
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "series/s")
	b.ReportMetric(spent.Seconds()/float64(b.N), "querier-cpu-s/op")
}

// countAll runs the benchmarks' query, count() of the n series at at.
func countAll(b *testing.B, eng *promql.Engine, q *Ingesters, at int64, n int) {
	qry, err := eng.NewInstantQuery(ctxA, q, nil, "count(openstack_vnic_rx_bytes_total)", time.UnixMilli(at))
	require.NoError(b, err)
	defer qry.Close()
	res := qry.Exec(ctxA)
	require.NoError(b, res.Err)
	vec, err := res.Vector()
	require.NoError(b, err)
	require.InDelta(b, float64(n), vec[0].F, 0)
}
