package storegateway

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// BenchmarkSeries selects every series of one block of 10k series with 2h
// of 15s samples, from a filesystem bucket, without gRPC in between.
//
//	go test ./tsdb/storegateway -run '^$' -bench BenchmarkSeries -count 6 | tee new.txt
//	benchstat old.txt new.txt
func BenchmarkSeries(b *testing.B) {
	const nSeries = 10_000
	bkt, err := bucket.NewFilesystem(b.TempDir())
	require.NoError(b, err)
	blk := buildBlock(b, bkt, "t", genSeries(0, nSeries, 0, 2*hour, 15_000))
	writeIndex(b, bkt, "t", &bucketindex.Index{Blocks: []bucketindex.Block{blk}})
	ctx := tenant.With(context.Background(), "t")

	for _, bc := range []struct {
		name      string
		cacheSize int64
		matcher   *labels.Matcher
		series    int
	}{
		{name: "all/no-cache", matcher: labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric"), series: nSeries},
		{name: "all/cached", cacheSize: 1 << 30, matcher: labels.MustNewMatcher(labels.MatchEqual, "__name__", "metric"), series: nSeries},
		{name: "regex-1pct/no-cache", matcher: labels.MustNewMatcher(labels.MatchRegexp, "instance", "i-000[0-9][0-9]"), series: 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig(b, b.TempDir())
			cfg.ChunkCacheSize = bc.cacheSize
			sg, _ := newStoreGateway(b, cfg, bkt, Options{})
			require.NoError(b, sg.SyncOnce(ctx))
			req := &rpc.BlocksQuery{
				Query:    &prompb.Query{StartTimestampMs: 0, EndTimestampMs: 2 * hour, Matchers: rpc.ToLabelMatchers([]*labels.Matcher{bc.matcher})},
				BlockIDs: []string{blk.ID.String()},
			}
			run := func() int {
				n := 0
				err := sg.Series(ctx, req, func(r *prompb.ChunkedReadResponse) error {
					n += len(r.ChunkedSeries)
					return nil
				})
				require.NoError(b, err)
				return n
			}
			if bc.cacheSize > 0 {
				run() // fill the cache
			}
			readBefore := testutil.ToFloat64(sg.metrics.rangeReadBytes)
			readsBefore := testutil.ToFloat64(sg.metrics.rangeReads)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if n := run(); n != bc.series {
					b.Fatalf("got %d series, want %d", n, bc.series)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(bc.series*b.N)/elapsed.Seconds(), "series/s")
			b.ReportMetric((testutil.ToFloat64(sg.metrics.rangeReadBytes)-readBefore)/float64(b.N), "bucket-B/op")
			b.ReportMetric((testutil.ToFloat64(sg.metrics.rangeReads)-readsBefore)/float64(b.N), "range-reads/op")
		})
	}
}
