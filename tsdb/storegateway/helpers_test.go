package storegateway

import (
	"context"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// fsample is a float sample.
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }

// testSeries is a series with its samples, as written.
type testSeries struct {
	lset    labels.Labels
	samples []fsample
}

// genSeries makes series i in [from, to) of "metric" with labels job
// (i%3) and instance, a sample every step ms in [mint, maxt).
func genSeries(from, to int, mint, maxt, step int64) []testSeries {
	var out []testSeries
	for i := from; i < to; i++ {
		s := testSeries{lset: labels.FromStrings("__name__", "metric", "job", fmt.Sprintf("job-%d", i%3), "instance", fmt.Sprintf("i-%05d", i))}
		for t := mint; t < maxt; t += step {
			s.samples = append(s.samples, fsample{t, float64(i)*1000 + float64(t%100_000)/7})
		}
		out = append(out, s)
	}
	return out
}

// buildBlock writes the series to a block with tsdb.CreateBlock and uploads
// it to bkt as the tenant's, meta.json last.
func buildBlock(t testing.TB, bkt bucket.Bucket, tenantID string, series []testSeries) bucketindex.Block {
	t.Helper()
	in := make([]storage.Series, 0, len(series))
	for _, s := range series {
		smpls := make([]chunks.Sample, len(s.samples))
		for i, x := range s.samples {
			smpls[i] = x
		}
		in = append(in, storage.NewListSeries(s.lset, smpls))
	}
	tmp := t.TempDir()
	dir, err := tsdb.CreateBlock(in, tmp, 48*time.Hour.Milliseconds(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	id, err := ulid.ParseStrict(filepath.Base(dir))
	require.NoError(t, err)
	ctx := context.Background()
	upload := func(rel string) {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		require.NoError(t, err)
		defer f.Close()
		require.NoError(t, bkt.Upload(ctx, bucketindex.BlockFile(tenantID, id, rel), f))
	}
	segs, err := os.ReadDir(filepath.Join(dir, "chunks"))
	require.NoError(t, err)
	for _, s := range segs {
		upload("chunks/" + s.Name())
	}
	upload("index")
	upload("tombstones")
	upload("meta.json")
	m, err := bucketindex.ReadMeta(ctx, bkt, tenantID, id)
	require.NoError(t, err)
	return bucketindex.BlockFromMeta(m, time.Now())
}

func writeIndex(t testing.TB, bkt bucket.Bucket, tenantID string, x *bucketindex.Index) {
	t.Helper()
	require.NoError(t, bucketindex.WriteIndex(context.Background(), bkt, tenantID, x))
}

// countingBucket counts the reads of a bucket.
type countingBucket struct {
	bucket.Bucket
	mu     sync.Mutex
	gets   map[string]int
	ranges int
}

func newCountingBucket(b bucket.Bucket) *countingBucket {
	return &countingBucket{Bucket: b, gets: map[string]int{}}
}

func (c *countingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	c.mu.Lock()
	c.gets[name]++
	c.mu.Unlock()
	return c.Bucket.Get(ctx, name)
}

func (c *countingBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.ranges++
	c.mu.Unlock()
	return c.Bucket.GetRange(ctx, name, off, length)
}

// blockGets counts Get calls for objects of blocks (not bucket indexes).
func (c *countingBucket) blockGets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for name, v := range c.gets {
		if filepath.Base(name) != bucketindex.IndexObject {
			n += v
		}
	}
	return n
}

func (c *countingBucket) rangeReads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ranges
}

func testConfig(t testing.TB, dir string) Config {
	t.Helper()
	var cfg Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	cfg.Dir = dir
	return cfg
}

func newStoreGateway(t testing.TB, cfg Config, bkt bucket.Reader, opts Options) (*StoreGateway, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	sg, err := New(cfg, bkt, opts, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sg.stopping(nil)) })
	return sg, reg
}

// serve runs srv on a gRPC server on 127.0.0.1 and returns a client.
func serve(t testing.TB, srv rpc.StoreGatewayServer) *rpc.StoreGatewayClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(grpc.UnaryInterceptor(rpc.ServerTenantInterceptor), grpc.StreamInterceptor(rpc.ServerTenantStreamInterceptor))
	rpc.RegisterStoreGatewayServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(rpc.ClientTenantInterceptor),
		grpc.WithStreamInterceptor(rpc.ClientTenantStreamInterceptor),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return rpc.NewStoreGatewayClient(cc)
}

// result is what a query returned: samples per series (by labels string)
// in the time range, and the number of frames and chunks.
type result struct {
	series map[string][]fsample
	order  []labels.Labels // as sent
	frames int
	chunks int
}

// query runs a Series call and decodes every chunk, keeping the samples in
// [mint, maxt]. It fails the test on chunks entirely outside the range.
func query(t testing.TB, c *rpc.StoreGatewayClient, tenantID string, ids []string, mint, maxt int64, ms ...*labels.Matcher) (*result, error) {
	t.Helper()
	ctx := tenant.With(context.Background(), tenantID)
	res := &result{series: map[string][]fsample{}}
	err := c.Series(ctx, &rpc.BlocksQuery{
		Query:    &prompb.Query{StartTimestampMs: mint, EndTimestampMs: maxt, Matchers: rpc.ToLabelMatchers(ms)},
		BlockIDs: ids,
	}, func(r *prompb.ChunkedReadResponse) error {
		res.frames++
		for _, cs := range r.ChunkedSeries {
			var b labels.ScratchBuilder
			for _, l := range cs.Labels {
				b.Add(l.Name, l.Value)
			}
			key := b.Labels().String()
			res.order = append(res.order, b.Labels())
			for _, ch := range cs.Chunks {
				res.chunks++
				if ch.MaxTimeMs < mint || ch.MinTimeMs > maxt {
					return fmt.Errorf("chunk [%d, %d] of %s is outside [%d, %d]", ch.MinTimeMs, ch.MaxTimeMs, key, mint, maxt)
				}
				chk, err := chunkenc.FromData(chunkenc.Encoding(ch.Type), ch.Data)
				if err != nil {
					return err
				}
				it := chk.Iterator(nil)
				for it.Next() == chunkenc.ValFloat {
					ts, v := it.At()
					if ts >= mint && ts <= maxt {
						res.series[key] = append(res.series[key], fsample{ts, v})
					}
				}
				if err := it.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return res, err
}

// expect returns the samples of the series matching ms in [mint, maxt].
func expect(series []testSeries, mint, maxt int64, ms ...*labels.Matcher) map[string][]fsample {
	out := map[string][]fsample{}
	for _, s := range series {
		match := true
		for _, m := range ms {
			match = match && m.Matches(s.lset.Get(m.Name))
		}
		if !match {
			continue
		}
		for _, x := range s.samples {
			if x.t >= mint && x.t <= maxt {
				out[s.lset.String()] = append(out[s.lset.String()], x)
			}
		}
	}
	return out
}

func bytesReader(s string) io.Reader { return strings.NewReader(s) }

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
