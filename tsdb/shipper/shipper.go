// Package shipper uploads the blocks a tenant's TSDB cuts to the bucket,
// once each: it records what it shipped in the tenant's directory, so a
// restart neither loses nor uploads a block again.
package shipper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// StateFilename is the file, in the tenant's TSDB directory, that lists the
// blocks shipped.
const StateFilename = "shipper.json"

// Metrics count what shippers do; one set serves every tenant.
type Metrics struct {
	uploads       *prometheus.CounterVec
	uploadedBytes prometheus.Counter
	lastShipped   *prometheus.GaugeVec
}

// NewMetrics registers the shipper metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		uploads: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ingester_shipper_uploads_total",
			Help: "Blocks the ingester tried to ship to the bucket, by outcome.",
		}, []string{"outcome"}),
		uploadedBytes: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "isobar_ingester_shipper_uploaded_bytes_total",
			Help: "Bytes of blocks shipped to the bucket.",
		}),
		lastShipped: promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
			Name: "isobar_ingester_shipper_last_success_timestamp_seconds",
			Help: "When the tenant's shipper last finished a sync without error.",
		}, []string{"tenant"}),
	}
}

// DeleteTenant drops a tenant's series from the metrics.
func (m *Metrics) DeleteTenant(tenant string) { m.lastShipped.DeleteLabelValues(tenant) }

// Shipper ships one tenant's blocks. Sync may be called from several
// goroutines; calls are serialised.
type Shipper struct {
	bkt      bucket.Bucket
	tenant   string
	dir      string
	ingester string
	logger   *slog.Logger
	metrics  *Metrics

	mu      sync.Mutex // serialises Sync
	stateMu sync.Mutex
	shipped map[ulid.ULID]struct{}
}

// New returns the shipper of the tenant whose TSDB lives in dir; ingester is
// the ring ID written into each block's meta.json.
func New(bkt bucket.Bucket, tenant, dir, ingester string, metrics *Metrics, logger *slog.Logger) (*Shipper, error) {
	s := &Shipper{bkt: bkt, tenant: tenant, dir: dir, ingester: ingester, logger: logger, metrics: metrics}
	shipped, err := readState(filepath.Join(dir, StateFilename))
	if err != nil {
		return nil, err
	}
	s.shipped = shipped
	return s, nil
}

type state struct {
	Version int         `json:"version"`
	Shipped []ulid.ULID `json:"shipped"`
}

func readState(path string) (map[ulid.ULID]struct{}, error) {
	shipped := map[ulid.ULID]struct{}{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return shipped, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read shipper state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse shipper state %s: %w", StateFilename, err)
	}
	for _, id := range st.Shipped {
		shipped[id] = struct{}{}
	}
	return shipped, nil
}

// writeState replaces the state file atomically, and syncs it: a block
// recorded as shipped may be deleted locally.
func (s *Shipper) writeState() error {
	s.stateMu.Lock()
	st := state{Version: 1, Shipped: make([]ulid.ULID, 0, len(s.shipped))}
	for id := range s.shipped {
		st.Shipped = append(st.Shipped, id)
	}
	s.stateMu.Unlock()
	slices.SortFunc(st.Shipped, func(a, b ulid.ULID) int { return a.Compare(b) })
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, StateFilename)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write shipper state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write shipper state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync shipper state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write shipper state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write shipper state: %w", err)
	}
	return nil
}

// Shipped reports whether the block has been shipped.
func (s *Shipper) Shipped(id ulid.ULID) bool {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	_, ok := s.shipped[id]
	return ok
}

// Sync uploads every complete block in the TSDB directory that was not
// shipped yet, and returns how many it uploaded. A block whose meta.json is
// already in the bucket (the process died after uploading it and before
// recording it) is recorded, not uploaded again.
func (s *Shipper) Sync(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("list blocks of tenant %q: %w", s.tenant, err)
	}
	uploaded := 0
	var errs []error
	for _, e := range entries {
		id, err := ulid.ParseStrict(e.Name())
		if !e.IsDir() || err != nil || s.Shipped(id) {
			continue // not a block (the TSDB's temporary dirs have suffixes), or done
		}
		meta, err := readLocalMeta(filepath.Join(s.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done, err := s.ship(ctx, meta)
		if err != nil {
			s.metrics.uploads.WithLabelValues("error").Inc()
			errs = append(errs, fmt.Errorf("ship block %s of tenant %q: %w", id, s.tenant, err))
			continue
		}
		s.stateMu.Lock()
		s.shipped[id] = struct{}{}
		s.stateMu.Unlock()
		if err := s.writeState(); err != nil {
			return uploaded, err
		}
		if done {
			uploaded++
			s.metrics.uploads.WithLabelValues("success").Inc()
		} else {
			s.metrics.uploads.WithLabelValues("already_shipped").Inc()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return uploaded, err
	}
	s.metrics.lastShipped.WithLabelValues(s.tenant).SetToCurrentTime()
	return uploaded, nil
}

func readLocalMeta(dir string) (*tsdb.BlockMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, bucketindex.MetaFilename))
	if err != nil {
		return nil, err
	}
	var m tsdb.BlockMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(filepath.Base(dir), bucketindex.MetaFilename), err)
	}
	return &m, nil
}

// ship uploads one block, meta.json last: a block is complete in the
// bucket exactly when its meta.json is there. It reports false if the
// block was already there.
func (s *Shipper) ship(ctx context.Context, m *tsdb.BlockMeta) (bool, error) {
	metaName := bucketindex.BlockFile(s.tenant, m.ULID, bucketindex.MetaFilename)
	exists, err := s.bkt.Exists(ctx, metaName)
	if err != nil {
		return false, err
	}
	if exists {
		return false, nil
	}
	local := filepath.Join(s.dir, m.ULID.String())
	var size int64
	err = filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil || rel == bucketindex.MetaFilename {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			size += st.Size()
		}
		return s.bkt.Upload(ctx, bucketindex.BlockFile(s.tenant, m.ULID, filepath.ToSlash(rel)), f)
	})
	if err != nil {
		return false, err
	}
	meta, err := json.MarshalIndent(bucketindex.Meta{BlockMeta: *m, Isobar: bucketindex.Extension{Source: "ingester", Ingester: s.ingester}}, "", "\t")
	if err != nil {
		return false, err
	}
	if err := s.bkt.Upload(ctx, metaName, bytes.NewReader(meta)); err != nil {
		return false, err
	}
	s.metrics.uploadedBytes.Add(float64(size + int64(len(meta))))
	s.logger.Info("block shipped", "tenant", s.tenant, "block", m.ULID, "mint", m.MinTime, "maxt", m.MaxTime, "samples", m.Stats.NumSamples, "bytes", size)
	return true, nil
}

// BlocksToDelete wraps a TSDB's choice of blocks to delete so that a block
// is deleted only once it is shipped.
func (s *Shipper) BlocksToDelete(next tsdb.BlocksToDeleteFunc) tsdb.BlocksToDeleteFunc {
	return func(blocks []*tsdb.Block) map[ulid.ULID]struct{} {
		del := next(blocks)
		for id := range del {
			if !s.Shipped(id) {
				delete(del, id)
			}
		}
		return del
	}
}
