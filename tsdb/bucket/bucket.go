// Package bucket is Isobar's object-storage client: one small interface with
// a filesystem backend (the default for a single binary) and an S3 backend
// for MinIO, Ceph RGW and cloud S3. Wrappers add retries, metrics and a
// per-tenant prefix.
package bucket

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned, wrapped, when an object does not exist.
var ErrNotFound = errors.New("object not found")

// IsNotFound reports whether err means that the object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// Attributes describe a stored object.
type Attributes struct {
	Size         int64
	LastModified time.Time
}

// Reader is the read-only half of a bucket. Store-gateways and queriers
// only ever need this.
type Reader interface {
	// Get returns the whole object. The caller closes the reader.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// GetRange returns length bytes of the object from off; length < 0
	// reads to the end.
	GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	// Exists reports whether the object exists.
	Exists(ctx context.Context, name string) (bool, error)
	// Attributes returns the object's size and modification time.
	Attributes(ctx context.Context, name string) (Attributes, error)
	// Iter calls f with the names directly under dir ("" is the root).
	// Names of "directories" end with "/". With recursive, it lists every
	// object below dir instead, and no directories. Names are full paths
	// relative to the bucket root, in lexical order.
	Iter(ctx context.Context, dir string, recursive bool, f func(name string) error) error
}

// Bucket reads and writes objects. Names use "/" as separator and never
// start with it. Implementations are safe for concurrent use.
type Bucket interface {
	Reader
	// Upload stores the object, replacing any object of that name. Readers
	// see either the old or the whole new object, never a part.
	Upload(ctx context.Context, name string, r io.Reader) error
	// Delete removes the object. Deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// Close releases the client's resources.
	Close() error
}
