package storegateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb/index"
	"golang.org/x/sync/errgroup"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

const tmpPrefix = bucket.TempPrefix

func indexPath(dir string) string { return filepath.Join(dir, bucketindex.IndexFilename) }

// SyncOnce reads every tenant's bucket index, downloads the index files of
// new owned blocks and drops the blocks no longer owned or listed. A
// tenant whose index cannot be read keeps the blocks it had. The error
// joins every failure; the blocks that did sync are served.
func (s *StoreGateway) SyncOnce(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	start := time.Now()
	err := s.sync(ctx)
	s.metrics.syncs.Inc()
	s.metrics.lastSyncDuration.Set(time.Since(start).Seconds())
	if err != nil {
		s.metrics.syncFailures.Inc()
	}
	return err
}

func (s *StoreGateway) sync(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("create store-gateway dir: %w", err)
	}
	tenants, err := bucketindex.Tenants(ctx, s.bkt)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	var errs []error
	want := map[blockKey]bucketindex.Block{}
	keep := map[string]bool{} // tenants whose blocks stay as they are
	for _, t := range tenants {
		if tenant.Validate(t) != nil {
			continue // not a tenant's directory
		}
		x, err := bucketindex.ReadIndex(ctx, s.bkt, t)
		if bucket.IsNotFound(err) {
			continue // no index yet: no blocks
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read bucket index of tenant %q: %w", t, err))
			keep[t] = true
			continue
		}
		s.mu.Lock()
		loaded := map[ulid.ULID]bool{}
		for k := range s.blocks {
			if k.tenant == t {
				loaded[k.id] = true
			}
		}
		s.mu.Unlock()
		for _, b := range x.Blocks {
			// A block marked for deletion is not loaded any more, but one
			// loaded stays until it is deleted: queriers whose copy of the
			// bucket index predates the mark still ask for it.
			if x.Marked(b.ID) && !loaded[b.ID] {
				continue
			}
			if s.opts.OwnsBlock != nil {
				owned, err := s.opts.OwnsBlock(t, b.ID)
				if err != nil {
					errs = append(errs, fmt.Errorf("check owner of block %s of tenant %q: %w", b.ID, t, err))
					keep[t] = true
					continue
				}
				if !owned {
					continue
				}
			}
			want[blockKey{t, b.ID}] = b
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Load the new blocks.
	s.mu.Lock()
	var toLoad []bucketindex.Block
	var toLoadTenants []string
	for k, b := range want {
		if _, ok := s.blocks[k]; !ok {
			toLoad = append(toLoad, b)
			toLoadTenants = append(toLoadTenants, k.tenant)
		}
	}
	s.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.SyncConcurrency)
	loadErrs := make([]error, len(toLoad))
	for i := range toLoad {
		g.Go(func() error {
			b, err := s.loadBlock(gctx, toLoadTenants[i], toLoad[i])
			if err != nil {
				loadErrs[i] = err
				return nil
			}
			s.mu.Lock()
			s.blocks[b.blockKey] = b
			s.mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	errs = append(errs, loadErrs...)

	// Drop the blocks no longer wanted.
	var drop []*block
	s.mu.Lock()
	for k, b := range s.blocks {
		if _, ok := want[k]; ok || keep[k.tenant] {
			continue
		}
		delete(s.blocks, k)
		b.dropped = true
		if b.refs == 0 {
			if err := s.closeLocked(b); err != nil {
				errs = append(errs, err)
			}
		}
		drop = append(drop, b)
	}
	s.mu.Unlock()
	for _, b := range drop {
		// A query still reading the block keeps its mmapped index: removing
		// the file does not unmap it.
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove dropped block %s of tenant %q: %w", b.id, b.tenant, err))
		}
		s.logger.Info("dropped block", "tenant", b.tenant, "block", b.id)
	}
	if err := s.removeStray(keep); err != nil {
		errs = append(errs, err)
	}
	s.updateGauges()
	return errors.Join(errs...)
}

// loadBlock makes sure the block's index and meta.json are on local disk,
// downloading them unless a previous run did, and checks that the index
// opens.
func (s *StoreGateway) loadBlock(ctx context.Context, tenantID string, b bucketindex.Block) (*block, error) {
	dir := filepath.Join(s.cfg.Dir, tenantID, b.ID.String())
	size, err := checkIndex(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.logger.Warn("local index of block unusable, downloading it again", "tenant", tenantID, "block", b.ID, "err", err)
		}
		if err := s.download(ctx, tenantID, b.ID, dir); err != nil {
			return nil, err
		}
		if size, err = checkIndex(dir); err != nil {
			return nil, fmt.Errorf("downloaded index of block %s of tenant %q: %w", b.ID, tenantID, err)
		}
		s.logger.Info("loaded block", "tenant", tenantID, "block", b.ID, "index_bytes", size)
	}
	return &block{
		blockKey:  blockKey{tenantID, b.ID},
		minTime:   b.MinTime,
		maxTime:   b.MaxTime,
		dir:       dir,
		indexSize: size,
	}, nil
}

// checkIndex opens and closes the local index of a block, returning its
// size. meta.json is downloaded last, so its presence means the block's
// files are complete.
func checkIndex(dir string) (int64, error) {
	if _, err := os.Stat(filepath.Join(dir, bucketindex.MetaFilename)); err != nil {
		return 0, err
	}
	r, err := index.NewFileReader(indexPath(dir), index.DecodePostingsRaw)
	if err != nil {
		return 0, fmt.Errorf("open index: %w", err)
	}
	size := r.Size()
	if err := r.Close(); err != nil {
		return 0, fmt.Errorf("close index: %w", err)
	}
	return size, nil
}

// download fetches the block's index, then its meta.json, into dir.
func (s *StoreGateway) download(ctx context.Context, tenantID string, id ulid.ULID, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create dir of block %s of tenant %q: %w", id, tenantID, err)
	}
	// A crash may have left meta.json beside a bad index: remove it first
	// so a failed download never looks complete.
	if err := os.Remove(filepath.Join(dir, bucketindex.MetaFilename)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clean dir of block %s of tenant %q: %w", id, tenantID, err)
	}
	for _, f := range []string{bucketindex.IndexFilename, bucketindex.MetaFilename} {
		if err := bucket.DownloadFile(ctx, s.bkt, bucketindex.BlockFile(tenantID, id, f), filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("download %s of block %s of tenant %q: %w", f, id, tenantID, err)
		}
	}
	s.metrics.indexDownloads.Inc()
	return nil
}

// removeStray deletes local block directories that are not held, and
// temporary files, except in the tenants in keep.
func (s *StoreGateway) removeStray(keep map[string]bool) error {
	tenants, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("list store-gateway dir: %w", err)
	}
	var errs []error
	for _, t := range tenants {
		if !t.IsDir() || keep[t.Name()] {
			continue
		}
		tdir := filepath.Join(s.cfg.Dir, t.Name())
		entries, err := os.ReadDir(tdir)
		if err != nil {
			errs = append(errs, fmt.Errorf("list local blocks of tenant %q: %w", t.Name(), err))
			continue
		}
		held := 0
		for _, e := range entries {
			id, perr := ulid.ParseStrict(e.Name())
			s.mu.Lock()
			b, ok := s.blocks[blockKey{t.Name(), id}]
			s.mu.Unlock()
			if perr == nil && ok {
				held++
				removeTemps(b.dir)
				continue
			}
			if err := os.RemoveAll(filepath.Join(tdir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("remove stray %s: %w", filepath.Join(t.Name(), e.Name()), err))
			}
		}
		if held == 0 {
			_ = os.Remove(tdir) // only if empty
		}
	}
	return errors.Join(errs...)
}

func removeTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func (s *StoreGateway) updateGauges() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var size int64
	for _, b := range s.blocks {
		size += b.indexSize
	}
	s.metrics.blocksLoaded.Set(float64(len(s.blocks)))
	s.metrics.indexBytes.Set(float64(size))
}

// loadRequested loads the blocks named by ids that the tenant's bucket
// index lists and this store-gateway owns, also ones marked for deletion
// (queriers with an older copy of the index still read those), without
// waiting for the next sync. Blocks loaded meanwhile are left as they are.
func (s *StoreGateway) loadRequested(ctx context.Context, tenantID string, ids []string) error {
	s.syncMu.Lock() // not while a sync loads the same blocks
	defer s.syncMu.Unlock()
	x, err := bucketindex.ReadIndex(ctx, s.bkt, tenantID)
	if err != nil {
		return fmt.Errorf("read bucket index of tenant %q: %w", tenantID, err)
	}
	var errs []error
	for _, b := range x.Blocks {
		if !slices.Contains(ids, b.ID.String()) {
			continue
		}
		key := blockKey{tenantID, b.ID}
		s.mu.Lock()
		_, loaded := s.blocks[key]
		s.mu.Unlock()
		if loaded {
			continue
		}
		if s.opts.OwnsBlock != nil {
			owned, err := s.opts.OwnsBlock(tenantID, b.ID)
			if err != nil || !owned {
				errs = append(errs, err)
				continue
			}
		}
		blk, err := s.loadBlock(ctx, tenantID, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		s.blocks[key] = blk
		s.mu.Unlock()
		s.metrics.blocksLoadedOnDemand.Inc()
	}
	s.updateGauges()
	return errors.Join(errs...)
}
