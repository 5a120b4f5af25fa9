// Package bucketindex describes a tenant's blocks in the bucket: the layout
// of a block, its meta.json, deletion marks, and the per-tenant bucket index
// that the compactor writes so queriers and store-gateways need not list
// the bucket.
package bucketindex

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
)

// Names of the objects of a block, relative to its directory
// <tenant>/<ULID>/.
const (
	MetaFilename         = "meta.json"
	IndexFilename        = "index"
	ChunksDirname        = "chunks"
	TombstonesFilename   = "tombstones"
	DeletionMarkFilename = "deletion-mark.json"
	// IndexObject is the bucket index of a tenant, <tenant>/bucket-index.json.gz.
	IndexObject = "bucket-index.json.gz"
)

// BlockDir is the bucket directory of a tenant's block, with no trailing slash.
func BlockDir(tenant string, id ulid.ULID) string { return tenant + "/" + id.String() }

// BlockFile is the bucket name of one file of a block.
func BlockFile(tenant string, id ulid.ULID, file string) string {
	return path.Join(BlockDir(tenant, id), file)
}

// Meta is a block's meta.json: Prometheus' own, plus what Isobar adds.
// Prometheus ignores the extra field, so any Prometheus tool reads our
// blocks.
type Meta struct {
	tsdb.BlockMeta
	Isobar Extension `json:"isobar"`
}

// Extension is Isobar's part of meta.json.
type Extension struct {
	// Source is "ingester" or "compactor".
	Source string `json:"source"`
	// Ingester is the ring ID of the ingester that cut the block.
	Ingester string `json:"ingester,omitempty"`
}

// ReadMeta reads and parses a block's meta.json from the bucket.
func ReadMeta(ctx context.Context, bkt bucket.Reader, tenant string, id ulid.ULID) (*Meta, error) {
	var m Meta
	if err := readJSON(ctx, bkt, BlockFile(tenant, id, MetaFilename), false, &m); err != nil {
		return nil, err
	}
	if m.ULID != id {
		return nil, fmt.Errorf("meta.json of block %s names block %s", id, m.ULID)
	}
	return &m, nil
}

// DeletionMark says that a block is to be deleted. Queriers stop asking for
// it at once; the compactor deletes it only after a delay, so queries that
// already planned to read it still can.
type DeletionMark struct {
	ID           ulid.ULID `json:"id"`
	DeletionTime int64     `json:"deletion_time"` // unix seconds
}

// WriteDeletionMark marks a block for deletion.
func WriteDeletionMark(ctx context.Context, bkt bucket.Bucket, tenant string, id ulid.ULID, now time.Time) error {
	b, err := json.Marshal(DeletionMark{ID: id, DeletionTime: now.Unix()})
	if err != nil {
		return err
	}
	if err := bkt.Upload(ctx, BlockFile(tenant, id, DeletionMarkFilename), bytes.NewReader(b)); err != nil {
		return fmt.Errorf("mark block %s of tenant %q for deletion: %w", id, tenant, err)
	}
	return nil
}

// Block is a block as the bucket index lists it.
type Block struct {
	ID      ulid.ULID `json:"id"`
	MinTime int64     `json:"min_time"` // inclusive, ms
	MaxTime int64     `json:"max_time"` // exclusive, ms
	Level   int       `json:"level"`
	// Source is the Extension's source; Ingester the ingester that cut it.
	Source   string `json:"source,omitempty"`
	Ingester string `json:"ingester,omitempty"`
	// UploadedAt is when meta.json, the last file of a block, was uploaded
	// (unix seconds).
	UploadedAt int64  `json:"uploaded_at"`
	NumSamples uint64 `json:"num_samples"`
	NumSeries  uint64 `json:"num_series"`
	// Sources are the ULIDs of the level-1 blocks this one was made from.
	Sources []ulid.ULID `json:"sources,omitempty"`
}

// Overlaps reports whether the block holds data in [mint, maxt], both
// inclusive, as in storage.Querier.
func (b *Block) Overlaps(mint, maxt int64) bool { return b.MinTime <= maxt && mint < b.MaxTime }

// BlockFromMeta lists a block from its meta.json.
func BlockFromMeta(m *Meta, uploaded time.Time) Block {
	return Block{
		ID: m.ULID, MinTime: m.MinTime, MaxTime: m.MaxTime, Level: m.Compaction.Level,
		Source: m.Isobar.Source, Ingester: m.Isobar.Ingester,
		UploadedAt: uploaded.Unix(), NumSamples: m.Stats.NumSamples, NumSeries: m.Stats.NumSeries,
		Sources: m.Compaction.Sources,
	}
}

// Index is a tenant's bucket index.
type Index struct {
	Version       int            `json:"version"`
	UpdatedAt     int64          `json:"updated_at"` // unix seconds
	Blocks        []Block        `json:"blocks"`
	DeletionMarks []DeletionMark `json:"deletion_marks"`
}

// IndexVersion is the version of the index format written.
const IndexVersion = 1

// Marked reports whether the block is marked for deletion.
func (x *Index) Marked(id ulid.ULID) bool {
	return slices.ContainsFunc(x.DeletionMarks, func(m DeletionMark) bool { return m.ID == id })
}

// Queryable returns the blocks holding data in [mint, maxt] that are not
// marked for deletion, ordered by min time.
func (x *Index) Queryable(mint, maxt int64) []Block {
	var out []Block
	for _, b := range x.Blocks {
		if b.Overlaps(mint, maxt) && !x.Marked(b.ID) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Block) int {
		if a.MinTime != b.MinTime {
			return int(min(max(a.MinTime-b.MinTime, -1), 1))
		}
		return a.ID.Compare(b.ID)
	})
	return out
}

// ReadIndex reads a tenant's bucket index. A tenant with no index yet gets
// an error wrapping bucket.ErrNotFound.
func ReadIndex(ctx context.Context, bkt bucket.Reader, tenant string) (*Index, error) {
	var x Index
	if err := readJSON(ctx, bkt, tenant+"/"+IndexObject, true, &x); err != nil {
		return nil, err
	}
	if x.Version != IndexVersion {
		return nil, fmt.Errorf("bucket index of tenant %q has version %d, want %d", tenant, x.Version, IndexVersion)
	}
	return &x, nil
}

// WriteIndex writes a tenant's bucket index.
func WriteIndex(ctx context.Context, bkt bucket.Bucket, tenant string, x *Index) error {
	x.Version = IndexVersion
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(x); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bkt.Upload(ctx, tenant+"/"+IndexObject, &buf); err != nil {
		return fmt.Errorf("write bucket index of tenant %q: %w", tenant, err)
	}
	return nil
}

func readJSON(ctx context.Context, bkt bucket.Reader, name string, gzipped bool, v any) error {
	rc, err := bkt.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if gzipped {
		zr, err := gzip.NewReader(rc)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		defer zr.Close()
		r = zr
	}
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}

// Tenants lists the tenants that have anything in the bucket.
func Tenants(ctx context.Context, bkt bucket.Reader) ([]string, error) {
	var out []string
	err := bkt.Iter(ctx, "", false, func(name string) error {
		if n, ok := cutDir(name); ok {
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

func cutDir(name string) (string, bool) {
	if len(name) < 2 || name[len(name)-1] != '/' {
		return "", false
	}
	return path.Base(name[:len(name)-1]), true
}
