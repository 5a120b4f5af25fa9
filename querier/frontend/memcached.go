package frontend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/grafana/dskit/cache"
	"github.com/prometheus/client_golang/prometheus"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/memcache"
)

const (
	// memcachedResultsTTL is how long memcached keeps a piece's extents:
	// answers about the past do not change, the TTL only lets memcached
	// drop what nobody asks for before its LRU would.
	memcachedResultsTTL = 7 * 24 * time.Hour
	// resultsValueVersion starts every value, so frontends of different
	// versions can share a memcached.
	resultsValueVersion = 1
)

// memcachedCache is a results cache in memcached, shared by the frontends
// and kept across their restarts. A value holds the full key it was stored
// under, so a hash collision or a corrupt value is a miss, never another
// query's answer.
type memcachedCache struct {
	client *cache.MemcachedClient
	logger *slog.Logger
}

func newMemcachedCache(cfg memcache.Config, logger *slog.Logger, reg prometheus.Registerer) (*memcachedCache, error) {
	if reg != nil {
		reg = prometheus.WrapRegistererWithPrefix("isobar_", reg)
	}
	client, err := cache.NewMemcachedClientWithConfig(isolog.GoKit(logger), "query-frontend-results", cfg.ClientConfig(), reg)
	if err != nil {
		return nil, fmt.Errorf("create memcached client for %v: %w", []string(cfg.Addresses), err)
	}
	return &memcachedCache{client: client, logger: logger}, nil
}

// memcachedKey is a key memcached takes (at most 250 bytes, no spaces).
func memcachedKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "qfr1:" + hex.EncodeToString(sum[:])
}

func (c *memcachedCache) Get(ctx context.Context, key string) []extent {
	k := memcachedKey(key)
	hits, err := c.client.GetMultiWithError(ctx, []string{k})
	if err != nil {
		c.logger.Debug("results cache: memcached get failed; asking the queriers", "err", err)
		return nil
	}
	v, ok := hits[k]
	if !ok {
		return nil
	}
	exts, err := decodeExtents(key, v)
	if err != nil {
		c.logger.Warn("results cache: invalid value in memcached; asking the queriers", "err", err)
		return nil
	}
	return exts
}

func (c *memcachedCache) Put(key string, exts []extent) {
	c.client.SetAsync(memcachedKey(key), encodeExtents(key, exts), memcachedResultsTTL)
}

func (c *memcachedCache) stop() { c.client.Stop() }

// encodeExtents writes the version, the key, and each extent's start, end
// and answer (as the querier's JSON).
func encodeExtents(key string, exts []extent) []byte {
	var b bytes.Buffer
	b.WriteByte(resultsValueVersion)
	b.Write(binary.AppendUvarint(nil, uint64(len(key))))
	b.WriteString(key)
	b.Write(binary.AppendUvarint(nil, uint64(len(exts))))
	for _, x := range exts {
		body := x.m.encode()
		b.Write(binary.AppendVarint(nil, x.start))
		b.Write(binary.AppendVarint(nil, x.end))
		b.Write(binary.AppendUvarint(nil, uint64(len(body))))
		b.Write(body)
	}
	return b.Bytes()
}

var errBadValue = errors.New("not a results cache value")

// decodeExtents reads what encodeExtents wrote under key.
func decodeExtents(key string, v []byte) ([]extent, error) {
	r := bytes.NewReader(v)
	version, err := r.ReadByte()
	if err != nil || version != resultsValueVersion {
		return nil, fmt.Errorf("%w: version %d", errBadValue, version)
	}
	readBytes := func() ([]byte, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return nil, errBadValue
		}
		out := make([]byte, n)
		_, _ = r.Read(out)
		return out, nil
	}
	stored, err := readBytes()
	if err != nil || string(stored) != key {
		return nil, fmt.Errorf("%w: stored under another key", errBadValue)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(r.Len()) {
		return nil, errBadValue
	}
	exts := make([]extent, 0, n)
	for range n {
		start, err1 := binary.ReadVarint(r)
		end, err2 := binary.ReadVarint(r)
		body, err3 := readBytes()
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadValue, err)
		}
		m, err := decodeMatrix(body)
		if err != nil {
			return nil, err
		}
		exts = append(exts, extent{start: start, end: end, m: m})
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes left over", errBadValue, r.Len())
	}
	return exts, nil
}
