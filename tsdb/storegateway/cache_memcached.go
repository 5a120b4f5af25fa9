package storegateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/grafana/dskit/cache"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/chunks"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/memcache"
)

const (
	// memcachedChunkTTL is how long memcached keeps a chunk. Chunks of a
	// block never change; the TTL only lets memcached drop the chunks of
	// deleted blocks before its LRU would.
	memcachedChunkTTL = 7 * 24 * time.Hour
	// memcachedCacheName names the client in dskit's metrics (label name).
	memcachedCacheName = "store-gateway-chunks"
)

// memcachedCache is a chunkCache in memcached, through dskit's client. It
// shards the keys over the servers by jump hash, batches gets and stores
// in the background. Values carry checksums (encodeChunkValue); one that
// fails them is a miss, counted in corrupt.
type memcachedCache struct {
	client  *cache.MemcachedClient
	corrupt prometheus.Counter
	logger  *slog.Logger
}

var _ chunkCache = (*memcachedCache)(nil)

// newMemcachedCache connects to the servers of cfg lazily: it fails only
// on a configuration error or if no address resolves. Its client's
// metrics, isobar_cache_* with labels name and backend, go to reg; values
// that fail verification count in corrupt.
func newMemcachedCache(cfg memcache.Config, corrupt prometheus.Counter, logger *slog.Logger, reg prometheus.Registerer) (*memcachedCache, error) {
	if reg != nil {
		reg = prometheus.WrapRegistererWithPrefix("isobar_", reg)
	}
	client, err := cache.NewMemcachedClientWithConfig(isolog.GoKit(logger), memcachedCacheName, cfg.ClientConfig(), reg)
	if err != nil {
		return nil, fmt.Errorf("create memcached client for %v: %w", []string(cfg.Addresses), err)
	}
	return &memcachedCache{client: client, corrupt: corrupt, logger: logger}, nil
}

// GetMulti implements chunkCache.
func (c *memcachedCache) GetMulti(ctx context.Context, tenantID string, block ulid.ULID, refs []chunks.ChunkRef) ([][]byte, error) {
	prefix := chunkKeyPrefix(tenantID, block)
	keys := make([]string, len(refs))
	for i, ref := range refs {
		keys[i] = chunkKey(prefix, ref)
	}
	hits, err := c.client.GetMultiWithError(ctx, keys)
	if err != nil {
		err = fmt.Errorf("get %d chunks from memcached: %w", len(keys), err)
	}
	out := make([][]byte, len(refs))
	for i, k := range keys {
		v, ok := hits[k]
		if !ok {
			continue
		}
		chunk, verr := decodeChunkValue(k, v)
		if verr != nil {
			c.corrupt.Inc()
			c.logger.Warn("invalid chunk in memcached; reading the bucket", "err", verr)
			continue
		}
		out[i] = chunk
	}
	return out, err
}

// SetMultiAsync implements chunkCache: the chunks are queued for dskit's
// workers. Values above the maximum size, or beyond a full queue, are
// skipped (isobar_cache_operation_skipped_total); failed stores count in
// isobar_cache_operation_failures_total.
func (c *memcachedCache) SetMultiAsync(tenantID string, block ulid.ULID, chunks []cachedChunk) {
	prefix := chunkKeyPrefix(tenantID, block)
	items := make(map[string][]byte, len(chunks))
	for _, ch := range chunks {
		k := chunkKey(prefix, ch.ref)
		items[k] = encodeChunkValue(k, ch.data)
	}
	c.client.SetMultiAsync(items, memcachedChunkTTL)
}

// Stop implements chunkCache; stores still queued are dropped.
func (c *memcachedCache) Stop() { c.client.Stop() }
