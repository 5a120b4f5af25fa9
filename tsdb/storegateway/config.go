package storegateway

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
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
	// from the bucket; 0 disables it.
	ChunkCacheSize int64 `yaml:"chunk_cache_size"`
	// SyncConcurrency is how many blocks are downloaded at once.
	SyncConcurrency int `yaml:"sync_concurrency"`
}

// RegisterFlags registers the store-gateway flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.SyncInterval, "store-gateway.sync-interval", 5*time.Minute, "How often the tenants' bucket indexes are read again to find new, disowned and deleted blocks.")
	f.IntVar(&c.MaxOpenBlocks, "store-gateway.max-open-blocks", 256, "Index readers kept open; the least recently queried block is closed first and reopened from local disk on demand.")
	f.Int64Var(&c.ChunkCacheSize, "store-gateway.chunk-cache-size", 256<<20, "Bytes of chunks read from the bucket kept in memory for later queries. 0 disables the cache.")
	f.IntVar(&c.SyncConcurrency, "store-gateway.sync-concurrency", 4, "How many blocks' index files are downloaded at once.")
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
	return nil
}

// Options are the store-gateway's dependencies beyond its configuration.
type Options struct {
	// OwnsBlock reports whether this store-gateway serves the tenant's
	// block; the caller wires it to the ring. Nil owns every block.
	OwnsBlock func(tenant string, id ulid.ULID) (bool, error)
}
