package storegateway

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"

	"github.com/isobar-tsdb/isobar/pkg/testutil/memcachedtest"
)

// memcachedGateway is a synced store-gateway with the memcached chunk
// cache, serving over gRPC.
type memcachedGateway struct {
	sg     *StoreGateway
	reg    *prometheus.Registry
	bkt    *countingBucket
	client *rpc.StoreGatewayClient
	cache  *recordingCache
}

func newMemcachedGateway(t *testing.T, f *fixture, srv *memcachedtest.Server) *memcachedGateway {
	t.Helper()
	cb := newCountingBucket(f.bkt)
	sg, reg := newStoreGateway(t, memcachedTestConfig(t, t.TempDir(), srv), cb, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	g := &memcachedGateway{sg: sg, reg: reg, bkt: cb, cache: record(sg)}
	g.client = serve(t, sg)
	return g
}

// query runs the test query of these tests and checks its samples.
func (g *memcachedGateway) query(t *testing.T, f *fixture) *result {
	t.Helper()
	m := labels.MustNewMatcher(labels.MatchEqual, "job", "job-1")
	res, err := query(t, g.client, "t1", f.t1Blocks, 0, 4*hour, m)
	require.NoError(t, err)
	require.Equal(t, expect(f.allT1, 0, 4*hour, m), res.series)
	return res
}

func (g *memcachedGateway) hits() float64   { return testutil.ToFloat64(g.sg.metrics.cacheHits) }
func (g *memcachedGateway) misses() float64 { return testutil.ToFloat64(g.sg.metrics.cacheMisses) }
func (g *memcachedGateway) errors(reason string) float64 {
	return testutil.ToFloat64(g.sg.metrics.cacheErrors.WithLabelValues(reason))
}

func TestMemcachedChunkCacheHitsOnRepeatedQuery(t *testing.T) {
	srv := memcachedtest.Start(t)
	f := newFixture(t)
	g := newMemcachedGateway(t, f, srv)

	first := g.query(t, f)
	reads := g.bkt.rangeReads()
	require.Positive(t, reads)
	require.Equal(t, 0.0, g.hits())
	require.Equal(t, float64(first.chunks), g.misses())
	stored := g.cache.stored()
	require.Len(t, stored, first.chunks)
	waitStored(t, srv, stored)

	second := g.query(t, f)
	require.Equal(t, first.series, second.series)
	require.Equal(t, reads, g.bkt.rangeReads(), "the second query reads nothing from the bucket")
	require.Equal(t, float64(first.chunks), g.hits())
	require.Equal(t, float64(first.chunks), g.misses(), "no new misses")
	require.Equal(t, 0.0, g.errors(cacheErrorUnavailable)+g.errors(cacheErrorCorrupt))

	// dskit's client metrics are registered under isobar_.
	n, err := testutil.GatherAndCount(g.reg, "isobar_cache_hits_total", "isobar_cache_requests_total", "isobar_cache_client_info")
	require.NoError(t, err)
	require.Equal(t, 3, n)
	families, err := g.reg.Gather()
	require.NoError(t, err)
	for _, mf := range families {
		if mf.GetName() != "isobar_cache_hits_total" {
			continue
		}
		m := mf.GetMetric()[0]
		require.Equal(t, float64(first.chunks), m.GetCounter().GetValue())
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		require.Equal(t, map[string]string{"backend": "memcached", "name": memcachedCacheName}, got)
	}
	require.Equal(t, 1, testutil.CollectAndCount(g.sg.metrics.cacheHits))
	require.NoError(t, testutil.GatherAndCompare(g.reg, strings.NewReader(`
# HELP isobar_store_gateway_chunk_cache_hits_total Chunks found in the chunk cache, and valid.
# TYPE isobar_store_gateway_chunk_cache_hits_total counter
isobar_store_gateway_chunk_cache_hits_total{backend="memcached"} `+strconv.Itoa(first.chunks)+`
`), "isobar_store_gateway_chunk_cache_hits_total"))
}

func TestMemcachedChunkCacheIsSharedByStoreGateways(t *testing.T) {
	srv := memcachedtest.Start(t)
	f := newFixture(t)
	g1 := newMemcachedGateway(t, f, srv)
	first := g1.query(t, f)
	waitStored(t, srv, g1.cache.stored())

	// Another store-gateway (or this one restarted) finds the chunks.
	g2 := newMemcachedGateway(t, f, srv)
	res := g2.query(t, f)
	require.Equal(t, first.series, res.series)
	require.Equal(t, 0, g2.bkt.rangeReads(), "the second store-gateway's first query reads nothing from the bucket")
	require.Equal(t, float64(first.chunks), g2.hits())
	require.Equal(t, 0.0, g2.misses())
	require.Empty(t, g2.cache.stored(), "nothing to store")
}

func TestMemcachedOutageFallsBackToTheBucket(t *testing.T) {
	for name, outage := range map[string]func(t *testing.T, srv *memcachedtest.Server){
		"killed": func(_ *testing.T, srv *memcachedtest.Server) { srv.Stop() },
		"hung":   func(t *testing.T, srv *memcachedtest.Server) { srv.Pause(t) },
	} {
		t.Run(name, func(t *testing.T) {
			srv := memcachedtest.Start(t)
			f := newFixture(t)
			g := newMemcachedGateway(t, f, srv)
			first := g.query(t, f)
			reads := g.bkt.rangeReads()
			waitStored(t, srv, g.cache.stored())
			g.query(t, f)
			require.Equal(t, reads, g.bkt.rangeReads())
			require.Equal(t, float64(first.chunks), g.hits())

			outage(t, srv)
			for i := 2; i <= 3; i++ {
				start := time.Now()
				res := g.query(t, f) // exactly the samples written
				require.Equal(t, first.series, res.series)
				require.Equal(t, i*reads, g.bkt.rangeReads(), "every chunk comes from the bucket")
				require.Less(t, time.Since(start), 10*time.Second)
			}
			require.Equal(t, float64(first.chunks), g.hits(), "no hits during the outage")
			require.Equal(t, float64(3*first.chunks), g.misses())
			require.Positive(t, g.errors(cacheErrorUnavailable))
			require.Equal(t, 0.0, g.errors(cacheErrorCorrupt))
		})
	}
}

func TestCorruptMemcachedValuesAreMisses(t *testing.T) {
	srv := memcachedtest.Start(t)
	f := newFixture(t)
	g := newMemcachedGateway(t, f, srv)
	first := g.query(t, f)
	reads := g.bkt.rangeReads()
	keys := g.cache.stored()
	waitStored(t, srv, keys)
	good := srv.Get(t, keys...)

	// Damage five chunks in memcached behind the store-gateway's back.
	flipped := append([]byte(nil), good[keys[0]]...)
	flipped[len(flipped)-6] ^= 0x01 // a data byte
	srv.Set(t, keys[0], flipped)
	srv.Set(t, keys[1], good[keys[2]]) // another chunk's valid value
	srv.Set(t, keys[3], []byte("garbage"))
	srv.Set(t, keys[4], nil)
	truncated := good[keys[5]][:len(good[keys[5]])-1]
	srv.Set(t, keys[5], truncated)
	const damaged = 5

	res := g.query(t, f) // exactly the samples written
	require.Equal(t, first.series, res.series)
	require.Equal(t, float64(first.chunks-damaged), g.hits())
	require.Equal(t, float64(first.chunks+damaged), g.misses())
	require.Equal(t, float64(damaged), g.errors(cacheErrorCorrupt))
	require.Equal(t, 0.0, g.errors(cacheErrorUnavailable))
	require.Greater(t, g.bkt.rangeReads(), reads, "the damaged chunks come from the bucket")

	// The chunks read again are stored again, replacing the damage.
	require.Eventually(t, func() bool {
		now := srv.Get(t, keys[:6]...)
		for _, k := range keys[:6] {
			if string(now[k]) != string(good[k]) {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	reads = g.bkt.rangeReads()
	g.query(t, f)
	require.Equal(t, reads, g.bkt.rangeReads())
	require.Equal(t, float64(damaged), g.errors(cacheErrorCorrupt))
}
