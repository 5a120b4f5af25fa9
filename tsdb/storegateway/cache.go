package storegateway

import (
	"container/list"
	"sync"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// chunkKey names a chunk: ULIDs are unique across tenants.
type chunkKey struct {
	block ulid.ULID
	ref   chunks.ChunkRef
}

// cacheEntryOverhead approximates what an entry costs beyond its bytes:
// the map slot, the list element and the entry.
const cacheEntryOverhead = 96

type cacheEntry struct {
	key  chunkKey
	data []byte // encoding byte, then the chunk's data
}

// chunkCache is a least-recently-used cache of chunk bytes bounded by
// size. It is safe for concurrent use. Cached slices are never modified.
type chunkCache struct {
	max int64
	m   *metrics

	mu    sync.Mutex
	size  int64
	order list.List // of *cacheEntry, most recently used first
	items map[chunkKey]*list.Element
}

func newChunkCache(maxBytes int64, m *metrics) *chunkCache {
	if maxBytes <= 0 {
		return nil
	}
	return &chunkCache{max: maxBytes, m: m, items: map[chunkKey]*list.Element{}}
}

// get returns the cached bytes of the chunk. A nil cache misses.
func (c *chunkCache) get(k chunkKey) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		c.m.cacheMisses.Inc()
		return nil, false
	}
	c.order.MoveToFront(e)
	c.m.cacheHits.Inc()
	return e.Value.(*cacheEntry).data, true
}

// put caches data, which the caller must not modify afterwards, evicting
// the least recently used chunks to make room.
func (c *chunkCache) put(k chunkKey, data []byte) {
	if c == nil {
		return
	}
	cost := int64(len(data)) + cacheEntryOverhead
	if cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	for c.size+cost > c.max {
		last := c.order.Back()
		if last == nil {
			break
		}
		e := c.order.Remove(last).(*cacheEntry)
		delete(c.items, e.key)
		c.size -= int64(len(e.data)) + cacheEntryOverhead
	}
	c.items[k] = c.order.PushFront(&cacheEntry{key: k, data: data})
	c.size += cost
	c.m.cacheBytes.Set(float64(c.size))
}
