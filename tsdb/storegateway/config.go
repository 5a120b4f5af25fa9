package storegateway

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/isobar-tsdb/isobar/pkg/memcache"
)

// Chunk cache backends (-store-gateway.chunk-cache.backend).
const (
	// ChunkCacheInMemory keeps chunks in this process's memory, up to
	// -store-gateway.chunk-cache-size bytes.
	ChunkCacheInMemory = "inmemory"
	// ChunkCacheMemcached keeps chunks in memcached, shared by every
	// store-gateway using the same servers and kept across restarts.
	ChunkCacheMemcached = "memcached"
)

// Config configures the store-gateway.
type Config struct {
	// Dir holds the downloaded index files, <Dir>/<tenant>/<ULID>/index;
	// set by the caller.
	Dir string `yaml:"-"`
	// SyncInterval is how often the tenants' bucket indexes are read again.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// MaxOpenBlocks bounds the index readers kept open (mmapped); the
	// least recently used one is closed first.
	MaxOpenBlocks int `yaml:"max_open_blocks"`
	// ChunkCacheSize bounds, in bytes, the in-memory cache of chunks read
	// from the bucket; 0 disables it. Only the inmemory backend uses it.
	ChunkCacheSize int64 `yaml:"chunk_cache_size"`
	// ChunkCache selects where chunks read from the bucket are cached.
	ChunkCache ChunkCacheConfig `yaml:"chunk_cache"`
	// SyncConcurrency is how many blocks are downloaded at once.
	SyncConcurrency int `yaml:"sync_concurrency"`
}

// RegisterFlags registers the store-gateway flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.SyncInterval, "store-gateway.sync-interval", 5*time.Minute, "How often the tenants' bucket indexes are read again to find new, disowned and deleted blocks.")
	f.IntVar(&c.MaxOpenBlocks, "store-gateway.max-open-blocks", 256, "Index readers kept open; the least recently queried block is closed first and reopened from local disk on demand.")
	f.Int64Var(&c.ChunkCacheSize, "store-gateway.chunk-cache-size", 256<<20, "Bytes of chunks read from the bucket kept in memory for later queries. 0 disables the cache.")
	f.IntVar(&c.SyncConcurrency, "store-gateway.sync-concurrency", 4, "How many blocks' index files are downloaded at once.")
	c.ChunkCache.RegisterFlags(f)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("store-gateway: no directory for index files")
	case c.SyncInterval <= 0:
		return fmt.Errorf("-store-gateway.sync-interval must be positive, is %s", c.SyncInterval)
	case c.MaxOpenBlocks <= 0:
		return fmt.Errorf("-store-gateway.max-open-blocks must be positive, is %d", c.MaxOpenBlocks)
	case c.ChunkCacheSize < 0:
		return fmt.Errorf("-store-gateway.chunk-cache-size must not be negative, is %d", c.ChunkCacheSize)
	case c.SyncConcurrency <= 0:
		return fmt.Errorf("-store-gateway.sync-concurrency must be positive, is %d", c.SyncConcurrency)
	}
	return c.ChunkCache.Validate()
}

// ChunkCacheConfig selects the backend of the chunk cache.
type ChunkCacheConfig struct {
	// Backend is ChunkCacheInMemory or ChunkCacheMemcached.
	Backend string `yaml:"backend"`
	// Memcached configures the memcached backend.
	Memcached memcache.Config `yaml:"memcached"`
}

// RegisterFlags registers the -store-gateway.chunk-cache.* flags.
func (c *ChunkCacheConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Backend, "store-gateway.chunk-cache.backend", ChunkCacheInMemory, `Where chunks read from the bucket are cached: "inmemory" (this process, -store-gateway.chunk-cache-size bytes) or "memcached" (shared by the store-gateways and kept across restarts; -store-gateway.chunk-cache.memcached.*).`)
	c.Memcached.RegisterFlagsWithPrefix(f, memcachedFlagPrefix, "chunks", "-store-gateway.chunk-cache.backend", "a chunk not fetched in time is read from the bucket.")
}

// Validate checks the backend and, for memcached, its configuration.
func (c *ChunkCacheConfig) Validate() error {
	switch c.Backend {
	case ChunkCacheInMemory:
		return nil
	case ChunkCacheMemcached:
		return c.Memcached.Validate(memcachedFlagPrefix, "-store-gateway.chunk-cache.backend")
	}
	return fmt.Errorf("-store-gateway.chunk-cache.backend must be %q or %q, is %q", ChunkCacheInMemory, ChunkCacheMemcached, c.Backend)
}

const memcachedFlagPrefix = "store-gateway.chunk-cache.memcached."

// Options are the store-gateway's dependencies beyond its configuration.
type Options struct {
	// OwnsBlock reports whether this store-gateway serves the tenant's
	// block; the caller wires it to the ring. Nil owns every block.
	OwnsBlock func(tenant string, id ulid.ULID) (bool, error)
}
