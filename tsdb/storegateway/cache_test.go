package storegateway

import (
	"context"
	"flag"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/stretchr/testify/require"

	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/pkg/memcache"

	"github.com/isobar-tsdb/isobar/pkg/testutil/memcachedtest"
)

func TestChunkKeysAreValidMemcachedKeys(t *testing.T) {
	id := ulid.MustNew(1, nil)
	ref := chunks.ChunkRef(chunks.NewBlockChunkRef(3, 123456))
	long := strings.Repeat("x", 150)
	keys := map[string]bool{}
	for _, tc := range []struct {
		name, tenant string
		asIs         bool
	}{
		{name: "plain", tenant: "team-a", asIs: true},
		{name: "longest allowed", tenant: long, asIs: true},
		{name: "too long", tenant: long + "y"},
		{name: "space", tenant: "team a"},
		{name: "control", tenant: "team\r\na"},
		{name: "non-ascii", tenant: "équipe"},
		{name: "empty", tenant: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := chunkKey(chunkKeyPrefix(tc.tenant, id), ref)
			require.LessOrEqual(t, len(k), 250)
			require.LessOrEqual(t, len(k), maxChunkKeyLen)
			for i := 0; i < len(k); i++ {
				require.True(t, k[i] > ' ' && k[i] <= '~', "byte %d of %q", i, k)
			}
			require.True(t, strings.HasPrefix(k, chunkKeyVersion))
			require.True(t, strings.HasSuffix(k, "/"+id.String()+"/"+"30001e240"), k)
			require.Equal(t, tc.asIs, strings.Contains(k, "/"+tc.tenant+"/"), k)
			require.False(t, keys[k], "keys of different tenants differ")
			keys[k] = true
		})
	}
	prefix := chunkKeyPrefix("t", id)
	require.NotEqual(t, chunkKey(prefix, 1), chunkKey(prefix, 16))
	require.NotEqual(t, prefix, chunkKeyPrefix("t", ulid.MustNew(2, nil)))
}

func TestChunkValuesAreVerified(t *testing.T) {
	const key = "isobar-chunk-v1/t/x/1"
	chunk := []byte{1, 0xaa, 0xbb, 0xcc} // encoding, data
	v := encodeChunkValue(key, chunk)
	// Version, key CRC, then the record as in a segment file.
	require.Equal(t, byte(chunkValueVersion), v[0])
	body, err := decodeChunk(v[chunkValueHeader:])
	require.NoError(t, err)
	require.Equal(t, chunk, body)
	got, err := decodeChunkValue(key, v)
	require.NoError(t, err)
	require.Equal(t, chunk, got)

	// A record of no bytes, with the CRC of nothing.
	noEncoding := append(slices.Clone(v[:chunkValueHeader]), 0, 0, 0, 0, 0)
	flip := func(i int) []byte {
		w := slices.Clone(v)
		w[i] ^= 0x10
		return w
	}
	for name, bad := range map[string][]byte{
		"empty":             {},
		"short":             v[:3],
		"other version":     flip(0),
		"other key's value": encodeChunkValue(key+"0", chunk),
		"key crc flipped":   flip(1),
		"length flipped":    flip(chunkValueHeader),
		"encoding flipped":  flip(chunkValueHeader + 1),
		"data flipped":      flip(len(v) - 6),
		"crc flipped":       flip(len(v) - 1),
		"truncated":         v[:len(v)-1],
		"trailing byte":     append(slices.Clone(v), 0),
		"no encoding byte":  noEncoding,
		"huge length":       append(slices.Clone(v[:chunkValueHeader]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeChunkValue(key, bad)
			require.ErrorIs(t, err, errCorruptChunkValue)
		})
	}
}

// TestChunkCacheBackends runs the chunkCache contract against each backend.
func TestChunkCacheBackends(t *testing.T) {
	backends := map[string]func(t *testing.T) chunkCache{
		ChunkCacheInMemory: func(*testing.T) chunkCache {
			return newLRUCache(1<<20, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"}))
		},
		ChunkCacheMemcached: func(t *testing.T) chunkCache {
			srv := memcachedtest.Start(t)
			cfg := memcachedTestConfig(t, t.TempDir(), srv).ChunkCache.Memcached
			c, err := newMemcachedCache(cfg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			require.NoError(t, err)
			return c
		},
	}
	b1, b2 := ulid.MustNew(1, nil), ulid.MustNew(2, nil)
	for name, newCache := range backends {
		t.Run(name, func(t *testing.T) {
			c := newCache(t)
			defer c.Stop()
			ctx := context.Background()
			got, err := c.GetMulti(ctx, "t", b1, []chunks.ChunkRef{1, 2})
			require.NoError(t, err)
			require.Equal(t, [][]byte{nil, nil}, got)

			one := []byte{1, 0, '\r', '\n', 0xff, ' '}
			two := []byte{2, 7}
			c.SetMultiAsync("t", b1, []cachedChunk{{ref: 1, data: one}, {ref: 1 << 40, data: two}})
			c.SetMultiAsync("t", b2, []cachedChunk{{ref: 1, data: two}})
			c.SetMultiAsync("u", b1, []cachedChunk{{ref: 2, data: two}})
			refs := []chunks.ChunkRef{1, 2, 1 << 40}
			require.Eventually(t, func() bool {
				got, err := c.GetMulti(ctx, "u", b1, refs)
				return err == nil && got[1] != nil
			}, 10*time.Second, 10*time.Millisecond)
			got, err = c.GetMulti(ctx, "t", b1, refs)
			require.NoError(t, err)
			require.Equal(t, [][]byte{one, nil, two}, got)
			got, err = c.GetMulti(ctx, "t", b2, refs)
			require.NoError(t, err)
			require.Equal(t, [][]byte{two, nil, nil}, got, "blocks are apart")
			got, err = c.GetMulti(ctx, "u", b1, refs)
			require.NoError(t, err)
			require.Equal(t, [][]byte{nil, two, nil}, got, "tenants are apart")
		})
	}
}

func TestLRUCacheEvictsLeastRecentlyUsed(t *testing.T) {
	size := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	data := make([]byte, 100)
	cost := int64(len(data) + lruEntryOverhead)
	c := newLRUCache(3*cost, size)
	ctx := context.Background()
	b := ulid.MustNew(1, nil)
	for ref := range chunks.ChunkRef(3) {
		c.SetMultiAsync("t", b, []cachedChunk{{ref: ref, data: data}})
	}
	require.Equal(t, float64(3*cost), testutil.ToFloat64(size))
	_, _ = c.GetMulti(ctx, "t", b, []chunks.ChunkRef{0}) // 1 is now the least recently used
	c.SetMultiAsync("t", b, []cachedChunk{{ref: 3, data: data}})
	got, err := c.GetMulti(ctx, "t", b, []chunks.ChunkRef{0, 1, 2, 3})
	require.NoError(t, err)
	require.Equal(t, [][]byte{data, nil, data, data}, got)
	require.Equal(t, 3, c.len())

	c.SetMultiAsync("t", b, []cachedChunk{{ref: 9, data: make([]byte, 6*len(data))}})
	require.Equal(t, 3, c.len(), "a chunk bigger than the cache is dropped")
}

func TestChunkCacheConfig(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	require.Equal(t, ChunkCacheInMemory, cfg.ChunkCache.Backend)
	mc := cfg.ChunkCache.Memcached
	require.Empty(t, mc.Addresses)
	require.Equal(t, 200*time.Millisecond, mc.Timeout)
	require.Equal(t, 1<<20, mc.MaxItemSize)
	require.NoError(t, cfg.Validate(), "memcached settings are checked only with that backend")

	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var parsed Config
	parsed.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{
		"-store-gateway.chunk-cache.backend=memcached",
		"-store-gateway.chunk-cache.memcached.addresses=127.0.0.1:11211,dns+memcached.example:11211",
		"-store-gateway.chunk-cache.memcached.timeout=1s",
		"-store-gateway.chunk-cache.memcached.max-item-size=2048",
		"-store-gateway.chunk-cache.memcached.max-async-concurrency=3",
		"-store-gateway.chunk-cache.memcached.max-async-buffer-size=7",
	}))
	parsed.Dir = t.TempDir()
	require.NoError(t, parsed.Validate())
	dc := parsed.ChunkCache.Memcached.ClientConfig()
	require.Equal(t, []string{"127.0.0.1:11211", "dns+memcached.example:11211"}, []string(dc.Addresses))
	require.Equal(t, time.Second, dc.Timeout)
	require.Equal(t, time.Second, dc.ConnectTimeout)
	require.Equal(t, 2048, dc.MaxItemSize)
	require.Equal(t, 3, dc.MaxAsyncConcurrency)
	require.Equal(t, 7, dc.MaxAsyncBufferSize)
	require.Equal(t, 30*time.Second, dc.AddressesLookupPeriod, "dskit's default")
	require.NoError(t, dc.Validate())

	for _, tc := range []struct {
		name    string
		edit    func(c *Config)
		wantErr string
	}{
		{"unknown backend", func(c *Config) { c.ChunkCache.Backend = "redis" }, `-store-gateway.chunk-cache.backend must be "inmemory" or "memcached", is "redis"`},
		{"no addresses", func(c *Config) { c.ChunkCache.Memcached.Addresses = nil }, "-store-gateway.chunk-cache.memcached.addresses must name at least one host:port"},
		{"no port", func(c *Config) { c.ChunkCache.Memcached.Addresses = []string{"localhost"} }, `-store-gateway.chunk-cache.memcached.addresses: "localhost" is not host:port`},
		{"empty port", func(c *Config) { c.ChunkCache.Memcached.Addresses = []string{"localhost:"} }, `-store-gateway.chunk-cache.memcached.addresses: "localhost:" is not host:port`},
		{"timeout", func(c *Config) { c.ChunkCache.Memcached.Timeout = 0 }, "-store-gateway.chunk-cache.memcached.timeout must be positive"},
		{"max item size", func(c *Config) { c.ChunkCache.Memcached.MaxItemSize = 0 }, "-store-gateway.chunk-cache.memcached.max-item-size must be positive"},
		{"async concurrency", func(c *Config) { c.ChunkCache.Memcached.MaxAsyncConcurrency = 0 }, "-store-gateway.chunk-cache.memcached.max-async-concurrency must be positive"},
		{"async buffer", func(c *Config) { c.ChunkCache.Memcached.MaxAsyncBufferSize = -1 }, "-store-gateway.chunk-cache.memcached.max-async-buffer-size must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := parsed
			tc.edit(&bad)
			require.ErrorContains(t, bad.Validate(), tc.wantErr)
			_, err := New(bad, newCountingBucket(nil), Options{}, nil, nil)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// TestInMemoryCacheMetricsCarryBackend checks the label the memcached
// backend's metrics differ by.
func TestInMemoryCacheMetricsCarryBackend(t *testing.T) {
	f := newFixture(t)
	sg, reg := newStoreGateway(t, testConfig(t, t.TempDir()), f.bkt, Options{})
	require.NoError(t, sg.SyncOnce(context.Background()))
	res, err := query(t, serve(t, sg), "t1", f.t1Blocks, 0, 4*hour, labels.MustNewMatcher(labels.MatchEqual, "job", "job-2"))
	require.NoError(t, err)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP isobar_store_gateway_chunk_cache_misses_total Chunks not found in the chunk cache (or invalid there, or the cache failed), read from the bucket.
# TYPE isobar_store_gateway_chunk_cache_misses_total counter
isobar_store_gateway_chunk_cache_misses_total{backend="inmemory"} `+strconv.Itoa(res.chunks)+`
# HELP isobar_store_gateway_chunk_cache_errors_total Chunk cache failures, each served from the bucket: requests to the backend that failed (reason unavailable) and cached chunks that failed verification (reason corrupt).
# TYPE isobar_store_gateway_chunk_cache_errors_total counter
isobar_store_gateway_chunk_cache_errors_total{backend="inmemory",reason="corrupt"} 0
isobar_store_gateway_chunk_cache_errors_total{backend="inmemory",reason="unavailable"} 0
`), "isobar_store_gateway_chunk_cache_misses_total", "isobar_store_gateway_chunk_cache_errors_total"))
}

func TestChunkCacheConfigYAML(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	dec := yaml.NewDecoder(strings.NewReader(`
chunk_cache_size: 1024
chunk_cache:
  backend: memcached
  memcached:
    addresses: 10.0.0.1:11211,10.0.0.2:11211
    timeout: 500ms
    max_item_size: 4096
    max_async_concurrency: 5
    max_async_buffer_size: 100
`))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&cfg))
	require.NoError(t, cfg.Validate())
	require.Equal(t, int64(1024), cfg.ChunkCacheSize)
	require.Equal(t, ChunkCacheConfig{Backend: ChunkCacheMemcached, Memcached: memcache.Config{
		Addresses:           []string{"10.0.0.1:11211", "10.0.0.2:11211"},
		Timeout:             500 * time.Millisecond,
		MaxItemSize:         4096,
		MaxAsyncConcurrency: 5,
		MaxAsyncBufferSize:  100,
	}}, cfg.ChunkCache)
}
