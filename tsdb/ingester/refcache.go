package ingester

import (
	"math/rand/v2"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// refCache maps a series' labels, as they arrive on the wire, to its head
// series reference and its labels as the head holds them. A remote-write
// sample for a known series then costs two hashes and one map lookup, and no
// labels are built: the labels handed to the appender are the head's own.
//
// The key is the xxhash of the series' encoding in the stringlabels format,
// which is what labels.Labels.Hash() hashes, so entries can be removed by the
// head's deletion callback. A hit is confirmed by a second hash of the same
// bytes under a random seed of this cache, not by comparing the labels: at a
// million series that comparison touches cold memory for every sample. Two
// independent 64-bit hashes collide by accident with odds of 2^-128, and the
// unknown seed keeps a sender from crafting a collision.
type refCache struct {
	seed    uint64
	stripes [refCacheStripes]refCacheStripe
}

const refCacheStripes = 256

type refCacheStripe struct {
	mu sync.RWMutex
	t  refTable
	_  [24]byte // keep stripes on separate cache lines
}

type refCacheEntry struct {
	key   uint64 // set by refTable
	check uint64
	ref   storage.SeriesRef
	lset  labels.Labels
}

func newRefCache() *refCache {
	return &refCache{seed: rand.Uint64()}
}

// hashes returns the key and the check hash of a series' encoded labels.
func (c *refCache) hashes(enc []byte, d *xxhash.Digest) (key, check uint64) {
	d.ResetWithSeed(c.seed)
	_, _ = d.Write(enc)
	return xxhash.Sum64(enc), d.Sum64()
}

// get looks up a series by the hashes of its encoded labels.
func (c *refCache) get(key, check uint64) (refCacheEntry, bool) {
	st := &c.stripes[key%refCacheStripes]
	st.mu.RLock()
	e, ok := st.t.get(key)
	st.mu.RUnlock()
	if !ok || e.check != check {
		return refCacheEntry{}, false // unknown, or a collision: leave it to the head
	}
	return e, true
}

// put records a series; a colliding entry of another series is kept.
func (c *refCache) put(key uint64, e refCacheEntry) {
	st := &c.stripes[key%refCacheStripes]
	st.mu.Lock()
	st.t.put(key, e, func(old refCacheEntry) bool { return old.check != e.check })
	st.mu.Unlock()
}

// deleted forgets series the head has dropped.
func (c *refCache) deleted(series map[chunks.HeadSeriesRef]labels.Labels) {
	for ref, lset := range series {
		hash := xxhash.Sum64(lset.Bytes(nil))
		st := &c.stripes[hash%refCacheStripes]
		st.mu.Lock()
		st.t.delete(hash, func(e refCacheEntry) bool { return e.ref == storage.SeriesRef(ref) })
		st.mu.Unlock()
	}
}

func (c *refCache) len() int {
	n := 0
	for i := range c.stripes {
		c.stripes[i].mu.RLock()
		n += c.stripes[i].t.used
		c.stripes[i].mu.RUnlock()
	}
	return n
}
