package bucket

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestFilesystem(t *testing.T) {
	testBucket(t, func(t *testing.T) Bucket {
		b, err := NewFilesystem(filepath.Join(t.TempDir(), "bucket"))
		require.NoError(t, err)
		return b
	})
}

func TestS3Fake(t *testing.T) {
	testBucket(t, func(t *testing.T) Bucket {
		srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
		t.Cleanup(srv.Close)
		return newTestS3(t, S3Config{
			Endpoint:        strings.TrimPrefix(srv.URL, "http://"),
			BucketName:      "isobar-test",
			Region:          "us-east-1",
			AccessKeyID:     "test",
			SecretAccessKey: flagext.SecretWithValue("test-secret"),
			Insecure:        true,
			PathStyle:       true,
		})
	})
}

// TestS3Real runs the suite against a real S3 server, such as MinIO:
//
//	ISOBAR_TEST_S3_ENDPOINT=127.0.0.1:9000 ISOBAR_TEST_S3_ACCESS_KEY=minioadmin \
//	ISOBAR_TEST_S3_SECRET_KEY=minioadmin go test -run TestS3Real ./tsdb/bucket/
//
// Set ISOBAR_TEST_S3_SECURE=1 for HTTPS. Every test makes its own bucket
// and deletes it at the end.
func TestS3Real(t *testing.T) {
	endpoint := os.Getenv("ISOBAR_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("ISOBAR_TEST_S3_ENDPOINT is not set")
	}
	testBucket(t, func(t *testing.T) Bucket {
		return newTestS3(t, S3Config{
			Endpoint:        endpoint,
			BucketName:      fmt.Sprintf("isobar-test-%d-%s", time.Now().UnixNano(), strings.ToLower(rand.Text()[:6])),
			Region:          os.Getenv("ISOBAR_TEST_S3_REGION"),
			AccessKeyID:     os.Getenv("ISOBAR_TEST_S3_ACCESS_KEY"),
			SecretAccessKey: flagext.SecretWithValue(os.Getenv("ISOBAR_TEST_S3_SECRET_KEY")),
			Insecure:        os.Getenv("ISOBAR_TEST_S3_SECURE") != "1",
			PathStyle:       true,
		})
	})
}

// newTestS3 creates the bucket of cfg, and removes it with its objects at
// the end of the test.
func newTestS3(t *testing.T, cfg S3Config) *S3 {
	t.Helper()
	b, err := NewS3(cfg, testLogger())
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, b.Client().MakeBucket(ctx, cfg.BucketName, minio.MakeBucketOptions{Region: cfg.Region}))
	t.Cleanup(func() {
		for obj := range b.Client().ListObjectsIter(ctx, cfg.BucketName, minio.ListObjectsOptions{Recursive: true}) {
			if obj.Err == nil {
				require.NoError(t, b.Client().RemoveObject(ctx, cfg.BucketName, obj.Key, minio.RemoveObjectOptions{}))
			}
		}
		require.NoError(t, b.Client().RemoveBucket(ctx, cfg.BucketName))
		require.NoError(t, b.Close())
	})
	return b
}

// testBucket is the conformance suite of Bucket implementations. Each
// subtest gets an empty bucket from newBucket.
func testBucket(t *testing.T, newBucket func(t *testing.T) Bucket) {
	ctx := context.Background()
	upload := func(t *testing.T, b Bucket, name, content string) {
		t.Helper()
		require.NoError(t, b.Upload(ctx, name, strings.NewReader(content)))
	}
	get := func(t *testing.T, b Reader, name string) string {
		t.Helper()
		rc, err := b.Get(ctx, name)
		require.NoError(t, err)
		defer rc.Close()
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		return string(data)
	}
	list := func(t *testing.T, b Reader, dir string, recursive bool) []string {
		t.Helper()
		names := []string{}
		require.NoError(t, b.Iter(ctx, dir, recursive, func(name string) error {
			names = append(names, name)
			return nil
		}))
		return names
	}

	t.Run("round trip", func(t *testing.T) {
		b := newBucket(t)
		upload(t, b, "tenant/01ABC/meta.json", `{"version":1}`)
		require.Equal(t, `{"version":1}`, get(t, b, "tenant/01ABC/meta.json"))
		ok, err := b.Exists(ctx, "tenant/01ABC/meta.json")
		require.NoError(t, err)
		require.True(t, ok)
	})

	t.Run("missing object", func(t *testing.T) {
		b := newBucket(t)
		upload(t, b, "a/present", "x")
		for _, name := range []string{"missing", "a/missing", "missing/a/b", "a/present/below"} {
			_, err := b.Get(ctx, name)
			require.True(t, IsNotFound(err), "get %s: %v", name, err)
			_, err = b.GetRange(ctx, name, 1, 2)
			require.True(t, IsNotFound(err), "get range %s: %v", name, err)
			_, err = b.GetRange(ctx, name, 0, 0)
			require.True(t, IsNotFound(err), "get empty range %s: %v", name, err)
			_, err = b.Attributes(ctx, name)
			require.True(t, IsNotFound(err), "attributes %s: %v", name, err)
			ok, err := b.Exists(ctx, name)
			require.NoError(t, err)
			require.False(t, ok)
		}
		// A "directory" is not an object.
		_, err := b.Get(ctx, "a")
		require.True(t, IsNotFound(err), "get a: %v", err)
		ok, err := b.Exists(ctx, "a")
		require.NoError(t, err)
		require.False(t, ok)
	})

	t.Run("get range", func(t *testing.T) {
		b := newBucket(t)
		const content = "0123456789"
		upload(t, b, "obj", content)
		for _, tc := range []struct {
			name        string
			off, length int64
			want        string
		}{
			{"start", 0, 3, "012"},
			{"middle", 4, 3, "456"},
			{"end", 7, 3, "789"},
			{"whole", 0, 10, content},
			{"to end", 6, -1, "6789"},
			{"all", 0, -1, content},
			{"length past end", 8, 5, "89"},
			{"at end", 10, 3, ""},
			{"beyond end", 20, 3, ""},
			{"beyond end to end", 20, -1, ""},
			{"empty", 3, 0, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rc, err := b.GetRange(ctx, "obj", tc.off, tc.length)
				require.NoError(t, err)
				data, err := io.ReadAll(rc)
				require.NoError(t, err)
				require.NoError(t, rc.Close())
				require.Equal(t, tc.want, string(data))
			})
		}
		_, err := b.GetRange(ctx, "obj", -1, 3)
		require.Error(t, err)
	})

	t.Run("attributes", func(t *testing.T) {
		b := newBucket(t)
		before := time.Now().Add(-time.Minute)
		upload(t, b, "dir/obj", "hello world")
		a, err := b.Attributes(ctx, "dir/obj")
		require.NoError(t, err)
		require.Equal(t, int64(11), a.Size)
		require.WithinRange(t, a.LastModified, before, time.Now().Add(time.Minute))
		upload(t, b, "empty", "")
		a, err = b.Attributes(ctx, "empty")
		require.NoError(t, err)
		require.Zero(t, a.Size)
		require.Empty(t, get(t, b, "empty"))
	})

	t.Run("iter", func(t *testing.T) {
		b := newBucket(t)
		for _, name := range []string{"e", "a/d", "a/b/c", "a/b.txt", "f/g/h/i", "a/b/c2"} {
			upload(t, b, name, name)
		}
		for _, tc := range []struct {
			name      string
			dir       string
			recursive bool
			want      []string
		}{
			{"root", "", false, []string{"a/", "e", "f/"}},
			{"dir", "a", false, []string{"a/b.txt", "a/b/", "a/d"}},
			{"dir with slash", "a/", false, []string{"a/b.txt", "a/b/", "a/d"}},
			{"nested", "a/b", false, []string{"a/b/c", "a/b/c2"}},
			{"deep", "f/g", false, []string{"f/g/h/"}},
			{"root recursive", "", true, []string{"a/b.txt", "a/b/c", "a/b/c2", "a/d", "e", "f/g/h/i"}},
			{"dir recursive", "a", true, []string{"a/b.txt", "a/b/c", "a/b/c2", "a/d"}},
			{"missing", "zzz", false, []string{}},
			{"missing recursive", "zzz/y", true, []string{}},
			{"object", "e", false, []string{}},
			{"object recursive", "e", true, []string{}},
			{"name prefix", "a/b.t", true, []string{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				require.Equal(t, tc.want, list(t, b, tc.dir, tc.recursive))
			})
		}
		for _, recursive := range []bool{false, true} {
			errStop := fmt.Errorf("stop")
			calls := 0
			err := b.Iter(ctx, "a", recursive, func(string) error {
				calls++
				return errStop
			})
			require.ErrorIs(t, err, errStop)
			require.Equal(t, 1, calls)
		}
	})

	t.Run("delete", func(t *testing.T) {
		b := newBucket(t)
		upload(t, b, "a/b/c", "1")
		upload(t, b, "a/d", "2")
		require.NoError(t, b.Delete(ctx, "a/b/c"))
		ok, err := b.Exists(ctx, "a/b/c")
		require.NoError(t, err)
		require.False(t, ok)
		_, err = b.Get(ctx, "a/b/c")
		require.True(t, IsNotFound(err), "%v", err)
		require.Equal(t, []string{"a/d"}, list(t, b, "a", false))
		require.NoError(t, b.Delete(ctx, "a/b/c"), "delete missing")
		require.NoError(t, b.Delete(ctx, "never/existed"), "delete missing")
		require.NoError(t, b.Delete(ctx, "a/d"))
		require.Equal(t, []string{}, list(t, b, "", false))
		require.Equal(t, []string{}, list(t, b, "", true))
		// The name can be used again.
		upload(t, b, "a/b/c", "3")
		require.Equal(t, "3", get(t, b, "a/b/c"))
	})

	t.Run("overwrite", func(t *testing.T) {
		b := newBucket(t)
		upload(t, b, "obj", "a long first version")
		upload(t, b, "obj", "short")
		require.Equal(t, "short", get(t, b, "obj"))
		a, err := b.Attributes(ctx, "obj")
		require.NoError(t, err)
		require.Equal(t, int64(5), a.Size)
		require.Equal(t, []string{"obj"}, list(t, b, "", true))
	})

	t.Run("readers", func(t *testing.T) {
		b := newBucket(t)
		file := filepath.Join(t.TempDir(), "f")
		require.NoError(t, os.WriteFile(file, []byte("skip:file content"), 0o644))
		f, err := os.Open(file)
		require.NoError(t, err)
		defer f.Close()
		_, err = f.Seek(5, io.SeekStart)
		require.NoError(t, err)
		br := bytes.NewReader([]byte("skip:bytes reader"))
		_, err = br.Seek(5, io.SeekStart)
		require.NoError(t, err)
		for _, tc := range []struct {
			name string
			r    io.Reader
			want string
		}{
			{"bytes.Reader at offset", br, "bytes reader"},
			{"bytes.Buffer", bytes.NewBufferString("buffer"), "buffer"},
			{"os.File at offset", f, "file content"},
			{"unknown size", io.MultiReader(strings.NewReader("multi"), strings.NewReader("reader")), "multireader"},
			{"unknown size empty", io.MultiReader(), ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				require.NoError(t, b.Upload(ctx, "obj", tc.r))
				require.Equal(t, tc.want, get(t, b, "obj"))
			})
		}
	})

	t.Run("large file", func(t *testing.T) {
		if testing.Short() {
			t.Skip("uploads 17 MiB")
		}
		// Larger than a multipart part, so S3 uploads it in parts read
		// with ReadAt; at an offset, to check that it is honoured.
		b := newBucket(t)
		data := make([]byte, s3PartSize+1<<20)
		_, _ = rand.Read(data)
		file := filepath.Join(t.TempDir(), "big")
		require.NoError(t, os.WriteFile(file, data, 0o644))
		f, err := os.Open(file)
		require.NoError(t, err)
		defer f.Close()
		_, err = f.Seek(100, io.SeekStart)
		require.NoError(t, err)
		require.NoError(t, b.Upload(ctx, "big", f))
		a, err := b.Attributes(ctx, "big")
		require.NoError(t, err)
		require.Equal(t, int64(len(data)-100), a.Size)
		rc, err := b.GetRange(ctx, "big", s3PartSize-10, 20)
		require.NoError(t, err)
		got, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.Equal(t, data[100+s3PartSize-10:100+s3PartSize+10], got)

		// Of unknown size: S3 uploads it in buffered parts.
		require.NoError(t, b.Upload(ctx, "big", io.MultiReader(bytes.NewReader(data))))
		a, err = b.Attributes(ctx, "big")
		require.NoError(t, err)
		require.Equal(t, int64(len(data)), a.Size)
		rc, err = b.GetRange(ctx, "big", s3PartSize-10, -1)
		require.NoError(t, err)
		got, err = io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.Equal(t, data[s3PartSize-10:], got)
	})

	t.Run("canceled upload", func(t *testing.T) {
		b := newBucket(t)
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		require.Error(t, b.Upload(ctx, "obj", io.MultiReader(strings.NewReader("data"))))
		ok, err := b.Exists(context.Background(), "obj")
		require.NoError(t, err)
		require.False(t, ok)
	})

	t.Run("concurrent", func(t *testing.T) {
		b := newBucket(t)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				name := fmt.Sprintf("dir%d/obj", i%2)
				for range 5 {
					if err := b.Upload(ctx, name, strings.NewReader("data")); err != nil {
						t.Error(err)
						return
					}
					if err := b.Delete(ctx, name); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("dir round trip", func(t *testing.T) {
		b := newBucket(t)
		src := t.TempDir()
		files := map[string]string{
			"meta.json":         `{"ulid":"01ABC"}`,
			"index":             "index data",
			"chunks/000001":     "chunk 1",
			"chunks/000002":     "chunk 2",
			"tombstones":        "",
			"deep/er/still/one": "x",
		}
		for name, content := range files {
			p := filepath.Join(src, filepath.FromSlash(name))
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		}
		rec := &recordingBucket{Bucket: b}
		require.NoError(t, UploadDir(ctx, rec, src, "tenant/01ABC", "index", "meta.json"))
		require.Len(t, rec.uploads, len(files))
		require.Equal(t, []string{"tenant/01ABC/index", "tenant/01ABC/meta.json"}, rec.uploads[len(files)-2:])

		dst := filepath.Join(t.TempDir(), "block")
		require.NoError(t, DownloadDir(ctx, b, "tenant/01ABC", dst))
		got := map[string]string{}
		require.NoError(t, filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
			require.NoError(t, err)
			if d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			rel, err := filepath.Rel(dst, p)
			require.NoError(t, err)
			got[filepath.ToSlash(rel)] = string(data)
			return nil
		}))
		require.Equal(t, files, got)

		require.ErrorContains(t, UploadDir(ctx, b, src, "x", "missing.json"), "missing.json")
		// An empty prefix downloads the whole bucket.
		all := t.TempDir()
		require.NoError(t, DownloadDir(ctx, b, "", all))
		data, err := os.ReadFile(filepath.Join(all, "tenant", "01ABC", "meta.json"))
		require.NoError(t, err)
		require.Equal(t, files["meta.json"], string(data))
	})
}

// recordingBucket records the order of uploads.
type recordingBucket struct {
	Bucket
	mu      sync.Mutex
	uploads []string
}

func (r *recordingBucket) Upload(ctx context.Context, name string, rd io.Reader) error {
	r.mu.Lock()
	r.uploads = append(r.uploads, name)
	r.mu.Unlock()
	return r.Bucket.Upload(ctx, name, rd)
}

// TestS3KeysFromTheEnvironment: without key flags, requests are signed
// with the keys of the environment, so that no secret is on the command
// line; with none there, they are anonymous.
func TestS3KeysFromTheEnvironment(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	for _, tc := range []struct {
		name, keyID, secret string
		want                string
	}{
		{name: "environment", keyID: "env-key-id", secret: "env-secret", want: "Credential=env-key-id/"},
		{name: "anonymous", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tc.keyID)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.secret)
			mu.Lock()
			auth = nil
			mu.Unlock()
			b, err := NewS3(S3Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), BucketName: "isobar-test", Region: "us-east-1", Insecure: true, PathStyle: true}, testLogger())
			require.NoError(t, err)
			defer b.Close()
			_, _ = b.Exists(context.Background(), "some/object")
			mu.Lock()
			defer mu.Unlock()
			require.NotEmpty(t, auth)
			for _, a := range auth {
				if tc.want == "" {
					require.Empty(t, a)
				} else {
					require.Contains(t, a, tc.want)
				}
			}
		})
	}
}
