package bucket

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkFilesystemGetRange reads ranges of a 64 MiB object.
//
//	go test -run '^$' -bench FilesystemGetRange -count 6 ./tsdb/bucket/ | benchstat -
func BenchmarkFilesystemGetRange(b *testing.B) {
	ctx := context.Background()
	bkt, err := NewFilesystem(filepath.Join(b.TempDir(), "bucket"))
	require.NoError(b, err)
	const size = 64 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	require.NoError(b, bkt.Upload(ctx, "obj", bytes.NewReader(data)))
	for _, length := range []int64{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("length=%d", length), func(b *testing.B) {
			buf := make([]byte, length)
			b.ReportAllocs()
			var off int64
			for b.Loop() {
				rc, err := bkt.GetRange(ctx, "obj", off, length)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(rc, buf); err != nil {
					b.Fatal(err)
				}
				rc.Close()
				off = (off + 7919*length) % (size - length)
			}
			b.ReportMetric(float64(b.N)*float64(length)/b.Elapsed().Seconds(), "bytes/s")
		})
	}
}
