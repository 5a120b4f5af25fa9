// Package storegateway serves queries over the blocks in the bucket. It
// keeps each owned block's index file on local disk, opens index readers
// (mmapped) on demand and closes the least recently used ones beyond a
// limit, and reads chunks from the bucket by byte range, caching them in
// memory or in memcached (shared by the store-gateways).
//
// Memory grows with the blocks open and the chunk cache, not with the
// blocks held: a block that is not open costs a small struct.
package storegateway

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
)

// blockKey names a held block.
type blockKey struct {
	tenant string
	id     ulid.ULID
}

// block is a block held by the store-gateway: its index file is on local
// disk. Fields below mu are guarded by StoreGateway.mu.
type block struct {
	blockKey
	minTime, maxTime int64 // ms; max exclusive
	dir              string
	indexSize        int64

	openMu sync.Mutex // serialises opening the reader

	reader  *index.Reader // nil when closed
	refs    int           // queries using reader
	elem    *list.Element // in StoreGateway.open while reader != nil
	dropped bool          // no longer held; close reader when refs drop to 0
}

// StoreGateway serves the blocks it owns. It is a dskit service: starting
// syncs once, running syncs every Config.SyncInterval.
type StoreGateway struct {
	services.Service

	cfg     Config
	bkt     bucket.Reader
	opts    Options
	logger  *slog.Logger
	metrics *metrics
	cache   chunkCache // nil: no cache
	// stopCache stops the cache once: stopping may run more than once in
	// tests.
	stopCache func()
	// chunkGuess is how far past the start of a range's last chunk is
	// read; chunkSizeGuess but in tests.
	chunkGuess int

	syncMu sync.Mutex // one sync at a time

	mu     sync.Mutex
	blocks map[blockKey]*block
	open   list.List // of *block with an open reader, most recently used first
}

// New returns a store-gateway over bkt. It reads nothing until started.
func New(cfg Config, bkt bucket.Reader, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*StoreGateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bkt == nil {
		return nil, errors.New("store-gateway: no bucket")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "store-gateway")
	m := newMetrics(reg, cfg.ChunkCache.Backend)
	c, err := newChunkCache(cfg, m, logger, reg)
	if err != nil {
		return nil, err
	}
	s := &StoreGateway{
		cfg:        cfg,
		bkt:        bkt,
		opts:       opts,
		logger:     logger,
		metrics:    m,
		cache:      c,
		stopCache:  func() {},
		chunkGuess: chunkSizeGuess,
		blocks:     map[blockKey]*block{},
	}
	if c != nil {
		s.stopCache = sync.OnceFunc(c.Stop)
	}
	s.Service = services.NewBasicService(s.starting, s.running, s.stopping)
	return s, nil
}

// newChunkCache returns the chunk cache cfg describes, or nil for none.
func newChunkCache(cfg Config, m *metrics, logger *slog.Logger, reg prometheus.Registerer) (chunkCache, error) {
	switch cfg.ChunkCache.Backend {
	case ChunkCacheMemcached:
		c, err := newMemcachedCache(cfg.ChunkCache.Memcached, m.cacheErrors.WithLabelValues(cacheErrorCorrupt), logger, reg)
		if err != nil {
			return nil, fmt.Errorf("store-gateway chunk cache: %w", err)
		}
		return c, nil
	case ChunkCacheInMemory:
		if cfg.ChunkCacheSize <= 0 {
			return nil, nil
		}
		return newLRUCache(cfg.ChunkCacheSize, m.cacheBytes), nil
	}
	return nil, fmt.Errorf("store-gateway: unknown chunk cache backend %q", cfg.ChunkCache.Backend)
}

func (s *StoreGateway) starting(ctx context.Context) error {
	if err := s.SyncOnce(ctx); err != nil {
		// Blocks that did load are served; the rest are retried on the
		// next sync, and queriers ask other replicas meanwhile.
		s.logger.Warn("first sync of blocks incomplete", "err", err)
	}
	return ctx.Err()
}

func (s *StoreGateway) running(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("sync of blocks failed", "err", err)
			}
		}
	}
}

func (s *StoreGateway) stopping(_ error) error {
	// Queries still running find the cache stopped: memcached fails their
	// gets and drops their stores, so they read the bucket.
	s.stopCache()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for e := s.open.Front(); e != nil; e = e.Next() {
		b := e.Value.(*block)
		if b.refs > 0 {
			continue // a query still runs; its release closes the reader
		}
		if err := s.closeLocked(b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// acquire returns the open index reader of each requested block, in the
// order of ids, and a function that releases them. It fails with
// rpc.BlocksNotHeld if any block is not held.
func (s *StoreGateway) acquire(tenantID string, ids []ulid.ULID) ([]*block, []*index.Reader, func(), error) {
	bs := make([]*block, 0, len(ids))
	var missing []string
	s.mu.Lock()
	for _, id := range ids {
		b, ok := s.blocks[blockKey{tenantID, id}]
		if !ok || b.dropped {
			missing = append(missing, id.String())
			continue
		}
		b.refs++ // keeps it from being closed while we open the others
		bs = append(bs, b)
	}
	s.mu.Unlock()
	release := func() {
		for _, b := range bs {
			s.release(b)
		}
	}
	if len(missing) > 0 {
		release()
		return nil, nil, nil, rpc.BlocksNotHeld(tenantID, len(ids), missing)
	}
	readers := make([]*index.Reader, len(bs))
	for i, b := range bs {
		r, err := s.openReader(b)
		if err != nil {
			release()
			// The local file is broken; another replica may answer.
			return nil, nil, nil, rpc.Errorf(rpc.CauseUnavailable, "%v", err)
		}
		readers[i] = r
	}
	return bs, readers, release, nil
}

// openReader returns b's index reader, opening it if closed. The caller
// holds a reference on b.
func (s *StoreGateway) openReader(b *block) (*index.Reader, error) {
	s.mu.Lock()
	if r := b.reader; r != nil {
		s.open.MoveToFront(b.elem)
		s.mu.Unlock()
		return r, nil
	}
	s.mu.Unlock()

	b.openMu.Lock()
	defer b.openMu.Unlock()
	s.mu.Lock()
	if r := b.reader; r != nil { // opened by another query meanwhile
		s.open.MoveToFront(b.elem)
		s.mu.Unlock()
		return r, nil
	}
	s.mu.Unlock()

	r, err := index.NewFileReader(indexPath(b.dir), index.DecodePostingsRaw)
	if err != nil {
		return nil, fmt.Errorf("open index of block %s of tenant %q: %w", b.id, b.tenant, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b.reader = r
	b.elem = s.open.PushFront(b)
	s.evictLocked()
	return r, nil
}

// release drops a query's reference on b.
func (s *StoreGateway) release(b *block) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.refs--
	if b.refs > 0 {
		return
	}
	if b.dropped {
		if err := s.closeLocked(b); err != nil {
			s.logger.Warn("close index of dropped block", "tenant", b.tenant, "block", b.id, "err", err)
		}
		return
	}
	s.evictLocked()
}

// evictLocked closes the least recently used readers not in use until at
// most MaxOpenBlocks are open. Readers in use are never closed, so while
// more than MaxOpenBlocks blocks are queried at once, more stay open; the
// last release closes them.
func (s *StoreGateway) evictLocked() {
	for e := s.open.Back(); e != nil && s.open.Len() > s.cfg.MaxOpenBlocks; {
		prev := e.Prev()
		if b := e.Value.(*block); b.refs == 0 {
			if err := s.closeLocked(b); err != nil {
				s.logger.Warn("close index reader", "tenant", b.tenant, "block", b.id, "err", err)
			}
		}
		e = prev
	}
	s.metrics.blocksOpen.Set(float64(s.open.Len()))
}

// closeLocked closes b's reader, if open.
func (s *StoreGateway) closeLocked(b *block) error {
	if b.reader == nil {
		return nil
	}
	err := b.reader.Close()
	b.reader = nil
	s.open.Remove(b.elem)
	b.elem = nil
	s.metrics.blocksOpen.Set(float64(s.open.Len()))
	if err != nil {
		return fmt.Errorf("close index of block %s of tenant %q: %w", b.id, b.tenant, err)
	}
	return nil
}

// openBlocks is the number of open index readers.
func (s *StoreGateway) openBlocks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open.Len()
}

// heldBlocks returns the IDs of the blocks held for the tenant.
func (s *StoreGateway) heldBlocks(tenantID string) []ulid.ULID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ulid.ULID
	for k := range s.blocks {
		if k.tenant == tenantID {
			out = append(out, k.id)
		}
	}
	return out
}
