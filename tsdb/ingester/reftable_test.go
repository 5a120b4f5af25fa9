package ingester

import (
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestRefTableMatchesMap drives the table and a Go map with the same random
// operations, with keys crowded into few slots so probe runs are long.
func TestRefTableMatchesMap(t *testing.T) {
	for _, keySpace := range []uint64{8, 64, 5000} {
		rng := rand.New(rand.NewPCG(1, keySpace))
		var tbl refTable
		want := map[uint64]storage.SeriesRef{}
		for op := range 20000 {
			key := (rng.Uint64N(keySpace) + 1) << 40 // only high bits differ
			if keySpace == 5000 {
				key = rng.Uint64N(keySpace) + 2 // 0 and 1 share a slot by design
			}
			switch rng.IntN(3) {
			case 0, 1:
				ref := storage.SeriesRef(op + 1)
				tbl.put(key, refCacheEntry{ref: ref}, func(refCacheEntry) bool { return false })
				want[key] = ref
			case 2:
				tbl.delete(key, func(refCacheEntry) bool { return true })
				delete(want, key)
			}
			if op%97 == 0 {
				require.Equal(t, len(want), tbl.used)
				for k, ref := range want {
					e, ok := tbl.get(k)
					require.True(t, ok, "key %d", k)
					require.Equal(t, ref, e.ref)
				}
			}
		}
		for k := range keySpace {
			for _, key := range []uint64{(k + 1) << 40, k + 2} {
				_, ok := tbl.get(key)
				_, wantOK := want[key]
				require.Equal(t, wantOK, ok)
			}
		}
	}
}

func TestRefTableZeroKeyAndKeep(t *testing.T) {
	var tbl refTable
	tbl.put(0, refCacheEntry{ref: 1}, func(refCacheEntry) bool { return false })
	e, ok := tbl.get(0)
	require.True(t, ok)
	require.Equal(t, storage.SeriesRef(1), e.ref)
	tbl.put(0, refCacheEntry{ref: 2}, func(refCacheEntry) bool { return true })
	e, _ = tbl.get(0)
	require.Equal(t, storage.SeriesRef(1), e.ref, "keep leaves the old entry")
	tbl.delete(0, func(e refCacheEntry) bool { return e.ref == 2 })
	_, ok = tbl.get(0)
	require.True(t, ok, "delete only removes a matching entry")
	tbl.delete(0, func(e refCacheEntry) bool { return e.ref == 1 })
	_, ok = tbl.get(0)
	require.False(t, ok)
}

// BenchmarkRefCacheGet measures cache lookups over a million series, where
// the table does not fit in the CPU caches.
//
//	go test ./tsdb/ingester -run '^$' -bench RefCacheGet -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkRefCacheGet(b *testing.B) {
	const n = 1 << 20
	c := newRefCache()
	keys := make([]uint64, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = rng.Uint64()
		c.put(keys[i], refCacheEntry{ref: storage.SeriesRef(i + 1), check: keys[i] ^ 1})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i&(n-1)]
		if _, ok := c.get(k, k^1); !ok {
			b.Fatal("missing")
		}
		i += 7919 // stride through the keys so lookups miss the CPU caches
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
