package queryable

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

type fixedLimits limits.Limits

func (f fixedLimits) For(string) *limits.Limits { l := limits.Limits(f); return &l }

func TestQueryLimits(t *testing.T) {
	readers, ingesters := replicas(t, 3)
	const n = 10
	for i := range n {
		ls := labels.FromStrings("__name__", "up", "instance", fmt.Sprintf("node-%02d", i))
		for _, r := range readers {
			r.add(t, ls, t0, t0+10*15_000) // one chunk of 11 samples
		}
	}
	up := labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")
	hour := int64(time.Hour / time.Millisecond)

	for _, tc := range []struct {
		name       string
		limits     limits.Limits
		now        int64
		start, end int64
		wantSeries int
		wantErr    string
	}{
		{name: "no limits", wantSeries: n},
		{name: "series at the limit", limits: limits.Limits{MaxFetchedSeriesPerQuery: n}, wantSeries: n},
		{name: "series over the limit", limits: limits.Limits{MaxFetchedSeriesPerQuery: n - 1}, wantErr: "-querier.max-fetched-series-per-query"},
		// A read quorum is two of three replicas: each series comes as
		// two chunks.
		{name: "chunks at the limit", limits: limits.Limits{MaxFetchedChunksPerQuery: 2 * n}, wantSeries: n},
		{name: "chunks over the limit", limits: limits.Limits{MaxFetchedChunksPerQuery: 2*n - 1}, wantErr: "-querier.max-fetched-chunks-per-query"},
		{name: "chunk bytes over the limit", limits: limits.Limits{MaxFetchedChunkBytesPerQuery: 100}, wantErr: "-querier.max-fetched-chunk-bytes-per-query"},
		{name: "length at the limit", limits: limits.Limits{MaxQueryLength: model.Duration(time.Hour)}, start: t0, end: t0 + hour, wantSeries: n},
		{name: "length over the limit", limits: limits.Limits{MaxQueryLength: model.Duration(time.Hour)}, start: t0, end: t0 + hour + 1, wantErr: "-querier.max-query-length"},
		{name: "lookback keeps recent data", limits: limits.Limits{MaxQueryLookback: model.Duration(time.Hour)}, now: t0 + hour, wantSeries: n},
		{name: "lookback leaves older data out", limits: limits.Limits{MaxQueryLookback: model.Duration(time.Hour)}, now: t0 + 2*hour, wantSeries: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLimited(ingesters, fixedLimits(tc.limits))
			if tc.now != 0 {
				l.now = func() time.Time { return time.UnixMilli(tc.now) }
			}
			start, end := tc.start, tc.end
			if end == 0 {
				start, end = t0, t0+10*15_000
			}
			q, err := l.Querier(start, end)
			require.NoError(t, err)
			defer q.Close()
			ss := q.Select(ctxA, true, &storage.SelectHints{Start: start, End: end}, up)
			got := 0
			for ss.Next() {
				got++
			}
			if tc.wantErr != "" {
				require.Error(t, ss.Err())
				require.Contains(t, ss.Err().Error(), tc.wantErr)
				require.Equal(t, rpc.CauseTenantLimit, rpc.CauseOf(ss.Err()))
				return
			}
			require.NoError(t, ss.Err())
			require.Equal(t, tc.wantSeries, got)
		})
	}
}
