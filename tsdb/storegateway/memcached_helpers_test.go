package storegateway

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/testutil/memcachedtest"
)

// recordingCache records the memcached keys of the chunks stored through
// it.
type recordingCache struct {
	chunkCache
	mu   sync.Mutex
	keys map[string]bool
}

func (r *recordingCache) SetMultiAsync(tenantID string, block ulid.ULID, chunks []cachedChunk) {
	prefix := chunkKeyPrefix(tenantID, block)
	r.mu.Lock()
	for _, ch := range chunks {
		r.keys[chunkKey(prefix, ch.ref)] = true
	}
	r.mu.Unlock()
	r.chunkCache.SetMultiAsync(tenantID, block, chunks)
}

// stored returns the keys stored so far, sorted.
func (r *recordingCache) stored() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.keys))
	for k := range r.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// record makes sg's cache record the keys it stores.
func record(sg *StoreGateway) *recordingCache {
	r := &recordingCache{chunkCache: sg.cache, keys: map[string]bool{}}
	sg.cache = r
	return r
}

// waitStored waits until memcached holds every key: stores are async.
func waitStored(t testing.TB, srv *memcachedtest.Server, keys []string) {
	t.Helper()
	require.NotEmpty(t, keys)
	require.Eventually(t, func() bool { return len(srv.Get(t, keys...)) == len(keys) }, 10*time.Second, 10*time.Millisecond,
		"memcached holds all %d chunks stored", len(keys))
}

// memcachedTestConfig is the default configuration with the memcached
// chunk cache on srv.
func memcachedTestConfig(t testing.TB, dir string, srv *memcachedtest.Server) Config {
	t.Helper()
	cfg := testConfig(t, dir)
	cfg.ChunkCache.Backend = ChunkCacheMemcached
	cfg.ChunkCache.Memcached.Addresses = []string{srv.Addr}
	return cfg
}
