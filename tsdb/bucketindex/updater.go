package bucketindex

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
)

// Scan is what listing a tenant's part of the bucket found.
type Scan struct {
	Index *Index
	// Partial are block directories without meta.json: uploads in
	// progress, or ones that died half way.
	Partial []ulid.ULID
}

// Update lists a tenant's blocks and deletion marks and returns a new index.
// Blocks already in old are not read again: a block never changes once its
// meta.json is uploaded.
func Update(ctx context.Context, bkt bucket.Reader, tenant string, old *Index, now time.Time) (*Scan, error) {
	known := map[ulid.ULID]Block{}
	if old != nil {
		for _, b := range old.Blocks {
			known[b.ID] = b
		}
	}
	var ids []ulid.ULID
	err := bkt.Iter(ctx, tenant+"/", false, func(name string) error {
		dir, ok := cutDir(name)
		if !ok {
			return nil
		}
		if id, err := ulid.ParseStrict(dir); err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list blocks of tenant %q: %w", tenant, err)
	}
	scan := &Scan{Index: &Index{Version: IndexVersion, UpdatedAt: now.Unix()}}
	for _, id := range ids {
		b, ok := known[id]
		if !ok {
			attrs, err := bkt.Attributes(ctx, BlockFile(tenant, id, MetaFilename))
			if bucket.IsNotFound(err) {
				scan.Partial = append(scan.Partial, id)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("stat meta.json of block %s of tenant %q: %w", id, tenant, err)
			}
			m, err := ReadMeta(ctx, bkt, tenant, id)
			if bucket.IsNotFound(err) {
				scan.Partial = append(scan.Partial, id) // deleted meanwhile
				continue
			}
			if err != nil {
				return nil, err
			}
			b = BlockFromMeta(m, attrs.LastModified)
		}
		scan.Index.Blocks = append(scan.Index.Blocks, b)
		var mark DeletionMark
		err := readJSON(ctx, bkt, BlockFile(tenant, id, DeletionMarkFilename), false, &mark)
		switch {
		case err == nil:
			scan.Index.DeletionMarks = append(scan.Index.DeletionMarks, mark)
		case !bucket.IsNotFound(err):
			return nil, err
		}
	}
	slices.SortFunc(scan.Index.Blocks, func(a, b Block) int { return a.ID.Compare(b.ID) })
	return scan, nil
}
