package compactor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// neededForCompaction reports whether a block file, relative to the block
// directory, is needed to open the block locally.
func neededForCompaction(rel string) bool {
	switch rel {
	case bucketindex.MetaFilename, bucketindex.IndexFilename, bucketindex.TombstonesFilename:
		return true
	}
	return strings.HasPrefix(rel, bucketindex.ChunksDirname+"/")
}

// downloadBlock streams the files of a block needed to open it into
// dir/<ULID> and returns that directory.
func downloadBlock(ctx context.Context, bkt bucket.Reader, tenant string, id ulid.ULID, dir string) (string, error) {
	prefix := bucketindex.BlockDir(tenant, id) + "/"
	dst := filepath.Join(dir, id.String())
	var names []string
	err := bkt.Iter(ctx, prefix, true, func(name string) error {
		if rel := strings.TrimPrefix(name, prefix); neededForCompaction(rel) {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list block %s: %w", id, err)
	}
	if !slices.Contains(names, bucketindex.MetaFilename) || !slices.Contains(names, bucketindex.IndexFilename) {
		return "", fmt.Errorf("download block %s: meta.json or index missing from the bucket", id)
	}
	for _, rel := range names {
		if err := bucket.DownloadFile(ctx, bkt, prefix+rel, filepath.Join(dst, filepath.FromSlash(rel))); err != nil {
			return "", fmt.Errorf("download block %s: %w", id, err)
		}
	}
	return dst, nil
}

// uploadBlock uploads the block in dir as <tenant>/<ULID>/, meta.json
// last, so that nobody sees a block before all of its files are there.
func uploadBlock(ctx context.Context, bkt bucket.Bucket, tenant string, id ulid.ULID, dir string) error {
	if err := bucket.UploadDir(ctx, bkt, dir, bucketindex.BlockDir(tenant, id), bucketindex.MetaFilename); err != nil {
		return fmt.Errorf("upload block %s: %w", id, err)
	}
	return nil
}

// readLocalMeta reads a local block's meta.json.
func readLocalMeta(dir string) (*bucketindex.Meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, bucketindex.MetaFilename))
	if err != nil {
		return nil, fmt.Errorf("read meta.json: %w", err)
	}
	var m bucketindex.Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, bucketindex.MetaFilename), err)
	}
	return &m, nil
}

// writeLocalMeta replaces a local block's meta.json, through a temporary
// file so that a crash leaves the old or the new one.
func writeLocalMeta(dir string, m *bucketindex.Meta) error {
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("encode meta.json: %w", err)
	}
	p := filepath.Join(dir, bucketindex.MetaFilename)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("write meta.json: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("write meta.json: %w", err)
	}
	return nil
}

// blockObjects lists every object under a block's directory, relative to
// it.
func blockObjects(ctx context.Context, bkt bucket.Reader, tenant string, id ulid.ULID) ([]string, error) {
	prefix := bucketindex.BlockDir(tenant, id) + "/"
	var out []string
	err := bkt.Iter(ctx, prefix, true, func(name string) error {
		out = append(out, strings.TrimPrefix(name, prefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list block %s: %w", id, err)
	}
	return out, nil
}

// deleteBlock deletes every object of a block: meta.json first, so the
// block turns partial at once for anyone listing the bucket, then the
// rest, then deletion-mark.json, so that a deletion that stops half way
// is still a marked block the next cycle deletes.
func deleteBlock(ctx context.Context, bkt bucket.Bucket, tenant string, id ulid.ULID) error {
	objs, err := blockObjects(ctx, bkt, tenant, id)
	if err != nil {
		return err
	}
	order := func(rel string) int {
		switch rel {
		case bucketindex.MetaFilename:
			return 0
		case bucketindex.DeletionMarkFilename:
			return 2
		}
		return 1
	}
	slices.SortStableFunc(objs, func(a, b string) int { return order(a) - order(b) })
	for _, rel := range objs {
		if err := bkt.Delete(ctx, path.Join(bucketindex.BlockDir(tenant, id), rel)); err != nil {
			return fmt.Errorf("delete block %s: %w", id, err)
		}
	}
	return nil
}

// partialAge returns how long ago the newest object of a partial block was
// written, and the block's deletion mark if it has one (a block whose
// deletion stopped after meta.json was deleted).
func partialAge(ctx context.Context, bkt bucket.Reader, tenant string, id ulid.ULID, now time.Time) (time.Duration, *bucketindex.DeletionMark, error) {
	objs, err := blockObjects(ctx, bkt, tenant, id)
	if err != nil {
		return 0, nil, err
	}
	var newest time.Time
	var mark *bucketindex.DeletionMark
	for _, rel := range objs {
		name := bucketindex.BlockFile(tenant, id, rel)
		if rel == bucketindex.DeletionMarkFilename {
			m, err := readDeletionMark(ctx, bkt, name)
			if err != nil && !bucket.IsNotFound(err) {
				return 0, nil, err
			}
			mark = m
		}
		attrs, err := bkt.Attributes(ctx, name)
		if bucket.IsNotFound(err) {
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("stat %s: %w", name, err)
		}
		if attrs.LastModified.After(newest) {
			newest = attrs.LastModified
		}
	}
	if newest.IsZero() {
		return 0, mark, nil
	}
	return now.Sub(newest), mark, nil
}

func readDeletionMark(ctx context.Context, bkt bucket.Reader, name string) (*bucketindex.DeletionMark, error) {
	rc, err := bkt.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer rc.Close()
	var m bucketindex.DeletionMark
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	return &m, nil
}
