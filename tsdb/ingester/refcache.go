package ingester

import (
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// refCache maps a series' labels, as they arrive on the wire, to its head
// series reference and its labels as the head holds them. A remote-write
// sample for a known series then costs one hash and one map lookup, and no
// labels are built: the labels handed to the appender are the head's own.
//
// The key is the xxhash of the series' encoding in the stringlabels format,
// which is what labels.Labels.Hash() hashes, so entries can be removed by the
// head's deletion callback. Every hit is checked byte for byte, so a hash
// collision costs a slow append, never a wrong series.
type refCache struct {
	stripes [refCacheStripes]refCacheStripe
}

const refCacheStripes = 256

type refCacheStripe struct {
	mu sync.RWMutex
	m  map[uint64]refCacheEntry
	_  [40]byte // keep stripes on separate cache lines
}

type refCacheEntry struct {
	ref  storage.SeriesRef
	lset labels.Labels
}

func newRefCache() *refCache {
	c := &refCache{}
	for i := range c.stripes {
		c.stripes[i].m = map[uint64]refCacheEntry{}
	}
	return c
}

// encodeLabels appends the stringlabels encoding of ls to dst: each name and
// value preceded by its length in one byte, or 255 and three bytes
// little-endian for lengths of 255 and more.
func encodeLabels(dst []byte, ls []labels.Label) []byte {
	for i := range ls {
		dst = appendSized(dst, ls[i].Name)
		dst = appendSized(dst, ls[i].Value)
	}
	return dst
}

func appendSized(dst []byte, s string) []byte {
	if n := len(s); n < 255 {
		dst = append(dst, byte(n))
	} else {
		dst = append(dst, 255, byte(n), byte(n>>8), byte(n>>16))
	}
	return append(dst, s...)
}

// get looks up the series whose encoded labels are enc.
func (c *refCache) get(hash uint64, enc []byte) (refCacheEntry, bool) {
	st := &c.stripes[hash%refCacheStripes]
	st.mu.RLock()
	e, ok := st.m[hash]
	st.mu.RUnlock()
	if !ok {
		return e, false
	}
	if labelsData(e.lset) != yoloString(enc) {
		return refCacheEntry{}, false // a collision: leave it to the head
	}
	return e, true
}

// labelsData is the stringlabels encoding that a labels.Labels wraps, read
// in place: copying it out for every sample's comparison costs a tenth of the
// write path. The size check below breaks the build under the slicelabels or
// dedupelabels tags, whose Labels are not a single string.
func labelsData(ls labels.Labels) string {
	return *(*string)(unsafe.Pointer(&ls))
}

var _ [unsafe.Sizeof("") - unsafe.Sizeof(labels.Labels{})]struct{}

func yoloString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// put records a series; a colliding entry of another series is kept.
func (c *refCache) put(hash uint64, e refCacheEntry) {
	st := &c.stripes[hash%refCacheStripes]
	st.mu.Lock()
	if old, ok := st.m[hash]; !ok || labels.Equal(old.lset, e.lset) {
		st.m[hash] = e
	}
	st.mu.Unlock()
}

// deleted forgets series the head has dropped.
func (c *refCache) deleted(series map[chunks.HeadSeriesRef]labels.Labels) {
	for ref, lset := range series {
		hash := xxhash.Sum64(lset.Bytes(nil))
		st := &c.stripes[hash%refCacheStripes]
		st.mu.Lock()
		if e, ok := st.m[hash]; ok && e.ref == storage.SeriesRef(ref) {
			delete(st.m, hash)
		}
		st.mu.Unlock()
	}
}

func (c *refCache) len() int {
	n := 0
	for i := range c.stripes {
		c.stripes[i].mu.RLock()
		n += len(c.stripes[i].m)
		c.stripes[i].mu.RUnlock()
	}
	return n
}
