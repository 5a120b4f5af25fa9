package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Filesystem keeps objects as files under a directory. Uploads go to a
// temporary file that is fsynced and renamed into place, so readers never
// see a part and an acknowledged upload survives a crash.
//
// Unlike S3, a name cannot be both an object and a "directory": uploading
// "a/b" fails while an object "a" exists. Files whose name starts with
// ".tmp-" are in-flight uploads and are never listed.
type Filesystem struct {
	dir string
}

// NewFilesystem returns a bucket rooted at dir, creating dir if needed.
func NewFilesystem(dir string) (*Filesystem, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create bucket dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bucket dir %q: %w", dir, err)
	}
	return &Filesystem{dir: abs}, nil
}

// path maps an object name to its file, refusing names that are not
// clean relative paths (and so could leave the bucket's directory).
func (b *Filesystem) path(name string) (string, error) {
	if name == "" || path.Clean(name) != name || !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", fmt.Errorf("invalid object name %q", name)
	}
	return filepath.Join(b.dir, filepath.FromSlash(name)), nil
}

// isNotExist reports whether err means that a path does not exist,
// including "a/b" where "a" is a file.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func notFound(name string, err error) error {
	if isNotExist(err) {
		return fmt.Errorf("%q: %w", name, ErrNotFound)
	}
	return fmt.Errorf("%q: %w", name, err)
}

// Get implements Reader.
func (b *Filesystem) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return b.GetRange(ctx, name, 0, -1)
}

// GetRange implements Reader.
func (b *Filesystem) GetRange(_ context.Context, name string, off, length int64) (io.ReadCloser, error) {
	p, err := b.path(name)
	if err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("get %q: negative offset %d", name, off)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound(name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %q: %w", name, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%q: %w", name, ErrNotFound)
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("seek %q: %w", name, err)
		}
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

// Exists implements Reader.
func (b *Filesystem) Exists(ctx context.Context, name string) (bool, error) {
	_, err := b.Attributes(ctx, name)
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// Attributes implements Reader.
func (b *Filesystem) Attributes(_ context.Context, name string) (Attributes, error) {
	p, err := b.path(name)
	if err != nil {
		return Attributes{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return Attributes{}, notFound(name, err)
	}
	if st.IsDir() {
		return Attributes{}, fmt.Errorf("%q: %w", name, ErrNotFound)
	}
	return Attributes{Size: st.Size(), LastModified: st.ModTime()}, nil
}

// Iter implements Reader.
func (b *Filesystem) Iter(ctx context.Context, dir string, recursive bool, f func(string) error) error {
	dir = strings.TrimSuffix(dir, "/")
	root, prefix := b.dir, ""
	if dir != "" {
		p, err := b.path(dir)
		if err != nil {
			return fmt.Errorf("list %q: %w", dir, err)
		}
		root, prefix = p, dir+"/"
	}
	var names []string
	if !recursive {
		entries, err := os.ReadDir(root)
		if isNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %q: %w", dir, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			name := prefix + e.Name()
			if e.IsDir() {
				if empty, _ := isEmptyDir(filepath.Join(root, e.Name())); empty {
					continue
				}
				name += "/"
			}
			names = append(names, name)
		}
	} else {
		if st, err := os.Stat(root); isNotExist(err) || (err == nil && !st.IsDir()) {
			return nil // an object, not a directory: nothing below it
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if isNotExist(err) {
					return nil // deleted while walking
				}
				return err
			}
			if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
				return nil
			}
			rel, err := filepath.Rel(b.dir, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %q: %w", dir, err)
		}
	}
	// os.ReadDir sorts "b" before "b.txt", but the listing is sorted by the
	// full name, where "b.txt" sorts before "b/", as in S3.
	sort.Strings(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f(n); err != nil {
			return err
		}
	}
	return nil
}

func isEmptyDir(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF), nil
}

// Upload implements Bucket.
func (b *Filesystem) Upload(ctx context.Context, name string, r io.Reader) (err error) {
	p, err := b.path(name)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	dir := filepath.Dir(p)
	var tmp *os.File
	// A concurrent Delete may remove the directory between MkdirAll and
	// CreateTemp, or inside MkdirAll, between its mkdir failing because a
	// concurrent Upload made the directory and its check that it is there
	// (then it fails with "file exists"); it cannot once the temporary file
	// is in it.
	for range 10 {
		if err = os.MkdirAll(dir, 0o755); errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("upload %q: %w", name, err)
		}
		tmp, err = os.CreateTemp(dir, ".tmp-"+filepath.Base(p))
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("upload %q: %w", name, err)
	}
	if err := writeAndRename(ctx, tmp, r, p); err != nil {
		return fmt.Errorf("upload %q: %w", name, err)
	}
	// The directory is gone if a concurrent Delete removed the new object.
	if err := syncDir(dir); err != nil && !isNotExist(err) {
		return fmt.Errorf("upload %q: %w", name, err)
	}
	return nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %q: %w", dir, err)
	}
	return nil
}

// Delete implements Bucket. It also removes directories left empty, so
// listing does not show deleted blocks.
func (b *Filesystem) Delete(_ context.Context, name string) error {
	p, err := b.path(name)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return nil // a "directory", not an object: there is nothing to delete
	}
	if err := os.Remove(p); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	for d := filepath.Dir(p); d != b.dir && strings.HasPrefix(d, b.dir); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break // not empty
		}
	}
	return nil
}

// Close implements Bucket.
func (b *Filesystem) Close() error { return nil }

// contextReader stops a copy when its context ends.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
