package frontend

import (
	"container/list"
	"context"
	"sync"
)

// extent is a cached answer for the evaluation times in [start, end] of
// one piece of a range query.
type extent struct {
	start, end int64
	m          *matrix
}

// resultsCache holds the extents of pieces by key. The extents a Get
// returns may be shared: their matrices must not be changed.
type resultsCache interface {
	Get(ctx context.Context, key string) []extent
	Put(key string, exts []extent)
}

// memoryCache is a results cache in memory, bounded in bytes, dropping the
// least recently used keys first.
type memoryCache struct {
	maxBytes int

	mu    sync.Mutex
	used  int
	order *list.List // of *cacheEntry, most recently used first
	byKey map[string]*list.Element
}

type cacheEntry struct {
	key  string
	exts []extent
	size int
}

func newMemoryCache(maxBytes int) *memoryCache {
	return &memoryCache{maxBytes: maxBytes, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *memoryCache) Get(_ context.Context, key string) []extent {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).exts
}

func (c *memoryCache) Put(key string, exts []extent) {
	size := len(key)
	for _, x := range exts {
		size += x.m.size()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.used -= e.Value.(*cacheEntry).size
		c.order.Remove(e)
		delete(c.byKey, key)
	}
	if size > c.maxBytes {
		return // larger than the whole cache
	}
	for c.used+size > c.maxBytes {
		last := c.order.Back()
		old := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.byKey, old.key)
		c.used -= old.size
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, exts: exts, size: size})
	c.used += size
}
