package storegateway

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"sync"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// chunkCache caches the chunks of blocks, by tenant, block and chunk ref.
// A chunk is its encoding byte followed by its data. Implementations are
// safe for concurrent use. A backend outside the process (memcached)
// verifies what it returns, so it may lose, mix up or damage values without
// making a query return wrong data.
type chunkCache interface {
	// GetMulti returns the chunk of each ref, in the order of refs, nil if
	// not cached (or invalid there). With an error (the backend could not
	// be reached, timed out), it returns what it found before the failure,
	// possibly nothing, and the caller reads the others from the bucket.
	// The caller must not modify the chunks returned.
	GetMulti(ctx context.Context, tenantID string, block ulid.ULID, refs []chunks.ChunkRef) ([][]byte, error)
	// SetMultiAsync stores chunks of the block, now or in the background.
	// Failures are dropped: the backend counts them. The cache may keep the
	// chunks' data, so the caller must not modify it afterwards.
	SetMultiAsync(tenantID string, block ulid.ULID, chunks []cachedChunk)
	// Stop releases the connections and goroutines of the cache. It is
	// called once, after the last use.
	Stop()
}

// cachedChunk is a chunk to cache.
type cachedChunk struct {
	ref  chunks.ChunkRef
	data []byte // encoding byte, then the chunk's data
}

const (
	// chunkKeyVersion starts every key; a new value format gets a new one,
	// so store-gateways of different versions can share a memcached.
	chunkKeyVersion = "isobar-chunk-v1/"
	// maxTenantInKey is the longest tenant ID put into a key as is;
	// longer ones (or ones with bytes a memcached key cannot hold) are
	// hashed. pkg/tenant allows 150 characters, which fit.
	maxTenantInKey = 150
	// maxChunkKeyLen is the longest key built: the version, the tenant
	// (or its hash), the ULID and a uint64 in hex, with separators. A
	// memcached key may be 250 bytes long.
	maxChunkKeyLen = len(chunkKeyVersion) + maxTenantInKey + 1 + ulid.EncodedSize + 1 + 16
)

// chunkKeyPrefix returns the start of the memcached keys of the chunks of
// a block:
// "isobar-chunk-v1/<tenant>/<ULID>/"; chunkKey appends the chunk ref. A
// tenant ID that is too long or holds bytes outside printable ASCII
// (memcached keys hold no spaces or control characters) is replaced by
// "sha256:" and its hash in hex, which cannot be a valid tenant ID.
func chunkKeyPrefix(tenantID string, id ulid.ULID) string {
	t := tenantID
	if !keySafe(t) {
		sum := sha256.Sum256([]byte(tenantID))
		t = "sha256:" + hex.EncodeToString(sum[:])
	}
	return chunkKeyVersion + t + "/" + id.String() + "/"
}

// keySafe reports whether s can be part of a key as is.
func keySafe(s string) bool {
	if s == "" || len(s) > maxTenantInKey {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// chunkKey returns the key of a chunk of the block with the prefix
// chunkKeyPrefix returned; the ref is in hex.
func chunkKey(prefix string, ref chunks.ChunkRef) string {
	var buf [maxChunkKeyLen]byte
	return string(strconv.AppendUint(append(buf[:0], prefix...), uint64(ref), 16))
}

// A chunk value in memcached is a version byte, the CRC32C of the key
// (big-endian) and the chunk record as in a segment file: uvarint data
// length, encoding byte, data, CRC32C of encoding and data. The key's
// checksum rejects a value stored under another key; the record's rejects
// damaged bytes.
const (
	chunkValueVersion = 1
	chunkValueHeader  = 1 + crc32.Size
)

var errCorruptChunkValue = errors.New("corrupt cached chunk")

// encodeChunkValue returns the value to store under key for a chunk:
// its encoding byte, then its data. The value is a new slice.
func encodeChunkValue(key string, chunk []byte) []byte {
	var lenField [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(lenField[:], uint64(len(chunk)-1))
	v := make([]byte, 0, chunkValueHeader+n+len(chunk)+crc32.Size)
	v = append(v, chunkValueVersion)
	v = binary.BigEndian.AppendUint32(v, crc32.Checksum([]byte(key), castagnoli))
	v = append(v, lenField[:n]...)
	v = append(v, chunk...)
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(chunk, castagnoli))
}

// decodeChunkValue checks a value read under key and returns the chunk:
// its encoding byte followed by its data, a subslice of v. It fails,
// wrapping errCorruptChunkValue, on a value that encodeChunkValue did not
// make for this key or that was damaged since.
func decodeChunkValue(key string, v []byte) ([]byte, error) {
	if len(v) < chunkValueHeader || v[0] != chunkValueVersion {
		return nil, fmt.Errorf("%w %s: unknown format", errCorruptChunkValue, key)
	}
	if want, got := binary.BigEndian.Uint32(v[1:]), crc32.Checksum([]byte(key), castagnoli); want != got {
		return nil, fmt.Errorf("%w %s: stored for another key", errCorruptChunkValue, key)
	}
	record := v[chunkValueHeader:]
	total, ok, err := chunkLen(record) // bounds the length field
	if err == nil && (!ok || total != len(record)) {
		err = fmt.Errorf("bad chunk record of %d bytes", len(record))
	}
	var chunk []byte
	if err == nil {
		chunk, err = decodeChunk(record)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errCorruptChunkValue, key, err)
	}
	if len(chunk) < 1 {
		return nil, fmt.Errorf("%w %s: no encoding byte", errCorruptChunkValue, key)
	}
	return chunk, nil
}

// lruEntryOverhead approximates what an entry costs beyond its data: the
// map slot, the list element and the entry.
const lruEntryOverhead = 96

// lruKey names a chunk in the in-memory cache.
type lruKey struct {
	tenant string
	block  ulid.ULID
	ref    chunks.ChunkRef
}

type lruEntry struct {
	key  lruKey
	data []byte
}

// lruCache is an in-memory least-recently-used chunkCache bounded by size.
// It holds chunks read from the bucket, whose CRC was checked then, and
// never modifies them, so it does not check them again.
type lruCache struct {
	max   int64
	bytes prometheus.Gauge

	mu    sync.Mutex
	size  int64
	order list.List // of *lruEntry, most recently used first
	items map[lruKey]*list.Element
}

var _ chunkCache = (*lruCache)(nil)

// newLRUCache returns a cache of at most maxBytes, whose size bytes
// reports.
func newLRUCache(maxBytes int64, bytes prometheus.Gauge) *lruCache {
	return &lruCache{max: maxBytes, bytes: bytes, items: map[lruKey]*list.Element{}}
}

// GetMulti implements chunkCache; it never fails.
func (c *lruCache) GetMulti(_ context.Context, tenantID string, block ulid.ULID, refs []chunks.ChunkRef) ([][]byte, error) {
	out := make([][]byte, len(refs))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ref := range refs {
		if e, ok := c.items[lruKey{tenantID, block, ref}]; ok {
			c.order.MoveToFront(e)
			out[i] = e.Value.(*lruEntry).data
		}
	}
	return out, nil
}

// SetMultiAsync implements chunkCache: it stores the chunks at once,
// evicting the least recently used ones to make room. A chunk bigger than
// the whole cache is dropped.
func (c *lruCache) SetMultiAsync(tenantID string, block ulid.ULID, chunks []cachedChunk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range chunks {
		c.putLocked(lruKey{tenantID, block, ch.ref}, ch.data)
	}
	c.bytes.Set(float64(c.size))
}

func (c *lruCache) putLocked(k lruKey, data []byte) {
	cost := int64(len(data)) + lruEntryOverhead
	if cost > c.max {
		return
	}
	if _, ok := c.items[k]; ok {
		return
	}
	for c.size+cost > c.max {
		last := c.order.Back()
		if last == nil {
			break
		}
		e := c.order.Remove(last).(*lruEntry)
		delete(c.items, e.key)
		c.size -= int64(len(e.data)) + lruEntryOverhead
	}
	c.items[k] = c.order.PushFront(&lruEntry{key: k, data: data})
	c.size += cost
}

// Stop implements chunkCache.
func (c *lruCache) Stop() {}

// len returns the number of cached chunks.
func (c *lruCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
