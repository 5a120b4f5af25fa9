package queryable

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
)

// BenchmarkQueryPeakHeap runs count() over 100k series with 200-byte label
// values, held by three replicas, through the PromQL engine, and reports
// the querier's peak heap above what it held before the query (sampled
// every millisecond), next to the encoded size of one replica's answer.
//
//	go test ./querier/queryable -run '^$' -bench QueryPeakHeap -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkQueryPeakHeap(b *testing.B) {
	readers, q := replicas(b, 3)
	const n = 100_000
	pad := strings.Repeat("x", 200)
	for i := range n {
		ls := labels.FromStrings("__name__", "openstack_vnic_rx_bytes_total", "hypervisor", fmt.Sprintf("cmp-%04d", i%1000), "port", fmt.Sprintf("%06d-%s", i, pad))
		for _, r := range readers {
			r.add(b, ls, t0, t0+4*15_000)
		}
	}
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e9, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
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
		qry, err := eng.NewInstantQuery(ctxA, q, nil, "count(openstack_vnic_rx_bytes_total)", time.UnixMilli(t0+4*15_000))
		require.NoError(b, err)
		res := qry.Exec(ctxA)
		require.NoError(b, res.Err)
		vec, err := res.Vector()
		require.NoError(b, err)
		require.InDelta(b, float64(n), vec[0].F, 0)
		qry.Close()
		close(stop)
		<-done
	}
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds()*float64(b.N), "series/s")
}
