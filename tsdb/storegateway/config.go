package storegateway

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/grafana/dskit/cache"
	"github.com/grafana/dskit/flagext"
	"github.com/oklog/ulid/v2"
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
	Memcached MemcachedConfig `yaml:"memcached"`
}

// RegisterFlags registers the -store-gateway.chunk-cache.* flags.
func (c *ChunkCacheConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Backend, "store-gateway.chunk-cache.backend", ChunkCacheInMemory, `Where chunks read from the bucket are cached: "inmemory" (this process, -store-gateway.chunk-cache-size bytes) or "memcached" (shared by the store-gateways and kept across restarts; -store-gateway.chunk-cache.memcached.*).`)
	c.Memcached.RegisterFlags(f)
}

// Validate checks the backend and, for memcached, its configuration.
func (c *ChunkCacheConfig) Validate() error {
	switch c.Backend {
	case ChunkCacheInMemory:
		return nil
	case ChunkCacheMemcached:
		return c.Memcached.Validate()
	}
	return fmt.Errorf("-store-gateway.chunk-cache.backend must be %q or %q, is %q", ChunkCacheInMemory, ChunkCacheMemcached, c.Backend)
}

// MemcachedConfig configures the memcached chunk cache. The settings dskit's
// client has beyond these keep dskit's defaults.
type MemcachedConfig struct {
	// Addresses are the memcached servers, host:port; keys are sharded
	// over them. A "dns+" prefix resolves the host to every address it
	// has, again every 30s.
	Addresses flagext.StringSliceCSV `yaml:"addresses"`
	// Timeout bounds connecting to a server and each read or write on a
	// connection.
	Timeout time.Duration `yaml:"timeout"`
	// MaxItemSize is the largest value stored, in bytes; bigger chunks
	// are not cached. memcached itself refuses values over its -I (1MiB
	// by default).
	MaxItemSize int `yaml:"max_item_size"`
	// MaxAsyncConcurrency is how many stores run at once in the background.
	MaxAsyncConcurrency int `yaml:"max_async_concurrency"`
	// MaxAsyncBufferSize is how many stores wait for a worker; stores
	// beyond it are dropped.
	MaxAsyncBufferSize int `yaml:"max_async_buffer_size"`
}

const memcachedFlagPrefix = "store-gateway.chunk-cache.memcached."

// RegisterFlags registers the -store-gateway.chunk-cache.memcached.* flags.
func (c *MemcachedConfig) RegisterFlags(f *flag.FlagSet) {
	f.Var(&c.Addresses, memcachedFlagPrefix+"addresses", `Comma-separated memcached servers, host:port, for -store-gateway.chunk-cache.backend=memcached; chunks are sharded over them. A "dns+" prefix uses every address of the host name, resolved again every 30s.`)
	f.DurationVar(&c.Timeout, memcachedFlagPrefix+"timeout", 200*time.Millisecond, "Timeout to connect to memcached and of each read or write; a chunk not fetched in time is read from the bucket.")
	f.IntVar(&c.MaxItemSize, memcachedFlagPrefix+"max-item-size", 1<<20, "Largest chunk stored in memcached, in bytes; bigger ones are not cached. Keep it at most memcached's -I (1MiB by default).")
	f.IntVar(&c.MaxAsyncConcurrency, memcachedFlagPrefix+"max-async-concurrency", 50, "How many chunks are stored into memcached at once in the background.")
	f.IntVar(&c.MaxAsyncBufferSize, memcachedFlagPrefix+"max-async-buffer-size", 25000, "How many chunks wait to be stored into memcached; beyond it chunks are not cached.")
}

// Validate checks the memcached configuration.
func (c *MemcachedConfig) Validate() error {
	if len(c.Addresses) == 0 {
		return fmt.Errorf("-%saddresses must name at least one host:port with -store-gateway.chunk-cache.backend=%s", memcachedFlagPrefix, ChunkCacheMemcached)
	}
	for _, a := range c.Addresses {
		host, port, err := net.SplitHostPort(strings.TrimPrefix(a, "dns+"))
		if err != nil {
			return fmt.Errorf("-%saddresses: %q is not host:port: %w", memcachedFlagPrefix, a, err)
		}
		if host == "" || port == "" {
			return fmt.Errorf("-%saddresses: %q is not host:port: empty host or port", memcachedFlagPrefix, a)
		}
	}
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("-%stimeout must be positive, is %s", memcachedFlagPrefix, c.Timeout)
	case c.MaxItemSize <= 0:
		return fmt.Errorf("-%smax-item-size must be positive, is %d", memcachedFlagPrefix, c.MaxItemSize)
	case c.MaxAsyncConcurrency <= 0:
		return fmt.Errorf("-%smax-async-concurrency must be positive, is %d", memcachedFlagPrefix, c.MaxAsyncConcurrency)
	case c.MaxAsyncBufferSize <= 0:
		return fmt.Errorf("-%smax-async-buffer-size must be positive, is %d", memcachedFlagPrefix, c.MaxAsyncBufferSize)
	}
	return nil
}

// clientConfig returns dskit's client configuration: c's settings, and
// dskit's defaults for the rest.
func (c *MemcachedConfig) clientConfig() cache.MemcachedClientConfig {
	var d cache.MemcachedClientConfig
	d.RegisterFlagsWithPrefix("", flag.NewFlagSet("", flag.PanicOnError))
	d.Addresses = c.Addresses
	d.Timeout = c.Timeout
	d.ConnectTimeout = c.Timeout
	d.MaxItemSize = c.MaxItemSize
	d.MaxAsyncConcurrency = c.MaxAsyncConcurrency
	d.MaxAsyncBufferSize = c.MaxAsyncBufferSize
	return d
}

// Options are the store-gateway's dependencies beyond its configuration.
type Options struct {
	// OwnsBlock reports whether this store-gateway serves the tenant's
	// block; the caller wires it to the ring. Nil owns every block.
	OwnsBlock func(tenant string, id ulid.ULID) (bool, error)
}
