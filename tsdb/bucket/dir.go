package bucket

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// UploadDir uploads every file below localDir to prefix/<relative path>,
// one at a time, streaming each file. The files named in last (relative
// paths such as "meta.json", which must exist) are uploaded after all the
// others, in the order given, so that a reader that sees them can rely on
// the rest being there.
func UploadDir(ctx context.Context, bkt Bucket, localDir, prefix string, last ...string) error {
	var files []string
	err := filepath.WalkDir(localDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		rel, err := filepath.Rel(localDir, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("upload dir %s: %w", localDir, err)
	}
	// WalkDir visits files in lexical order already.
	for _, l := range last {
		i := slices.Index(files, path.Clean(l))
		if i < 0 {
			return fmt.Errorf("upload dir %s: file %q to upload last does not exist", localDir, l)
		}
		files = slices.Delete(files, i, i+1)
	}
	for _, l := range last {
		files = append(files, path.Clean(l))
	}
	for _, rel := range files {
		if err := uploadFile(ctx, bkt, filepath.Join(localDir, filepath.FromSlash(rel)), path.Join(prefix, rel)); err != nil {
			return fmt.Errorf("upload dir %s: %w", localDir, err)
		}
	}
	return nil
}

func uploadFile(ctx context.Context, bkt Bucket, file, name string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	// Pass the *os.File itself: S3 then knows the size and Retrying can
	// rewind it.
	if err := bkt.Upload(ctx, name, f); err != nil {
		return err
	}
	return nil
}

// DownloadDir downloads every object below prefix into localDir, at its
// path relative to prefix. Each file is written to a temporary name,
// fsynced and renamed, so localDir never holds a partial file under its
// final name; directories are fsynced at the end. Files already in
// localDir are overwritten or left alone, never deleted.
func DownloadDir(ctx context.Context, bkt Reader, prefix, localDir string) error {
	prefix = strings.TrimSuffix(prefix, "/")
	var names []string
	if err := bkt.Iter(ctx, prefix, true, func(name string) error {
		names = append(names, name)
		return nil
	}); err != nil {
		return fmt.Errorf("download dir %s: %w", prefix, err)
	}
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		return fmt.Errorf("download dir %s: %w", prefix, err)
	}
	localDir = filepath.Clean(localDir)
	dirs := map[string]bool{localDir: true}
	for _, name := range names {
		rel := name
		if prefix != "" {
			rel = strings.TrimPrefix(name, prefix+"/")
		}
		local := filepath.FromSlash(rel)
		if !filepath.IsLocal(local) {
			return fmt.Errorf("download dir %s: object %q would be written outside %s", prefix, name, localDir)
		}
		dst := filepath.Join(localDir, local)
		for d := filepath.Dir(dst); !dirs[d] && d != filepath.Dir(d); d = filepath.Dir(d) {
			dirs[d] = true
		}
		if err := DownloadFile(ctx, bkt, name, dst); err != nil {
			return fmt.Errorf("download dir %s: %w", prefix, err)
		}
	}
	// Make the renames durable, deepest directories first.
	order := make([]string, 0, len(dirs))
	for d := range dirs {
		order = append(order, d)
	}
	slices.SortFunc(order, func(a, b string) int { return len(b) - len(a) })
	for _, d := range order {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("download dir %s: %w", prefix, err)
		}
	}
	return nil
}

// TempPrefix starts the names of the temporary files DownloadFile writes:
// whoever cleans a directory after a crash can remove them.
const TempPrefix = ".tmp-"

// DownloadFile streams an object into the file dst, through a temporary
// file that is fsynced and renamed: dst is whole or absent, never partial.
func DownloadFile(ctx context.Context, bkt Reader, name, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	rc, err := bkt.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), TempPrefix+filepath.Base(dst))
	if err != nil {
		return err
	}
	if err := writeAndRename(ctx, tmp, rc, dst); err != nil {
		return fmt.Errorf("download %q: %w", name, err)
	}
	return nil
}

// writeAndRename copies r into tmp, makes it durable and renames it to
// dst; on failure tmp is removed.
func writeAndRename(ctx context.Context, tmp *os.File, r io.Reader, dst string) (err error) {
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, contextReader{ctx, r}); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
