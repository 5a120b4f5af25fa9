package compactor

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
)

// BenchmarkCompactReplicas measures one vertical compaction of the three
// replicas of a 2h block (15s samples): download from a filesystem bucket,
// merge with deduplication, upload, mark. samples/s counts input samples.
//
//	go test ./tsdb/compactor -run '^$' -bench BenchmarkCompactReplicas -count 6 | tee new.txt
//	benchstat old.txt new.txt
func BenchmarkCompactReplicas(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			clk := &clock{time.Now().Add(time.Hour)}
			mint := dayStart(clk.t, 2)
			series := genSeries("node", n, mint, mint+h2)
			var dirs []string
			for r := range 3 {
				dirs = append(dirs, writeBlock(b, b.TempDir(), mint, mint+h2, fmt.Sprintf("ingester-%d", r), series))
			}
			inputSamples := 3 * n * len(series[0].samples)

			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				bkt, err := bucket.NewFilesystem(b.TempDir())
				require.NoError(b, err)
				for _, d := range dirs {
					require.NoError(b, uploadBlock(b.Context(), bkt, "t1", ulid.MustParse(filepath.Base(d)), d))
				}
				c := newTestCompactor(b, bkt, Options{Now: clk.now}, nil)
				b.StartTimer()

				require.NoError(b, c.CompactTenant(b.Context(), "t1"))
			}
			b.ReportMetric(float64(inputSamples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
