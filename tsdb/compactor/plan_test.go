package compactor

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

func TestPlanner(t *testing.T) {
	now := time.Unix(1_800_000_000, 0) // an aligned 12h window starts 20h before
	w0 := now.Add(-20 * time.Hour).Truncate(12 * time.Hour).UnixMilli()
	old := now.Add(-time.Hour).Unix()
	young := now.Add(-10 * time.Minute).Unix()
	var seq uint64
	blk := func(mint, maxt int64, uploaded int64, source string) bucketindex.Block {
		seq++
		return bucketindex.Block{ID: ulid.MustNew(seq, nil), MinTime: mint, MaxTime: maxt, UploadedAt: uploaded, Source: source}
	}
	p := planner{ranges: []int64{h2, h12, day}, consistencyDelay: 30 * time.Minute}

	for name, tc := range map[string]struct {
		blocks    []bucketindex.Block
		now       time.Time
		wantRange int64
		wantStart int64
		wantN     int // 0: no job
	}{
		"nothing": {},
		"single block": {
			blocks: []bucketindex.Block{blk(w0, w0+h2, old, "ingester")},
		},
		"replicas": {
			blocks:    []bucketindex.Block{blk(w0, w0+h2, old, "ingester"), blk(w0, w0+h2, old, "ingester"), blk(w0+h2, w0+2*h2, old, "ingester")},
			wantRange: h2, wantStart: w0, wantN: 2,
		},
		"a young replica holds the window back": {
			blocks: []bucketindex.Block{blk(w0, w0+h2, old, "ingester"), blk(w0, w0+h2, young, "ingester")},
		},
		"unaligned first block of an ingester": {
			blocks:    []bucketindex.Block{blk(w0+1234, w0+h2, old, "ingester"), blk(w0, w0+h2, old, "ingester")},
			wantRange: h2, wantStart: w0, wantN: 2,
		},
		"older window first": {
			blocks:    []bucketindex.Block{blk(w0+h2, w0+2*h2, old, "ingester"), blk(w0+h2, w0+2*h2, old, "ingester"), blk(w0, w0+h2, old, "ingester"), blk(w0, w0+h2, old, "ingester")},
			wantRange: h2, wantStart: w0, wantN: 2,
		},
		"young compactor output does not wait": {
			blocks:    []bucketindex.Block{blk(w0, w0+h2, young, SourceCompactor), blk(w0+h2, w0+2*h2, young, SourceCompactor)},
			now:       now.Add(12 * time.Hour),
			wantRange: h12, wantStart: w0, wantN: 2,
		},
		"incomplete recent 12h window waits": {
			blocks: []bucketindex.Block{blk(w0, w0+h2, old, SourceCompactor), blk(w0+h2, w0+2*h2, old, SourceCompactor)},
			now:    time.UnixMilli(w0 + h12 + h2).Add(29 * time.Minute),
		},
		"incomplete old 12h window": {
			blocks:    []bucketindex.Block{blk(w0, w0+h2, old, SourceCompactor), blk(w0+h2, w0+2*h2, old, SourceCompactor)},
			now:       time.UnixMilli(w0 + h12 + h2).Add(31 * time.Minute),
			wantRange: h12, wantStart: w0, wantN: 2,
		},
		"covered 12h window": {
			blocks:    []bucketindex.Block{blk(w0, w0+6*h2-h2, old, SourceCompactor), blk(w0+5*h2, w0+h12, old, SourceCompactor)},
			now:       time.UnixMilli(w0 + h12),
			wantRange: h12, wantStart: w0, wantN: 2,
		},
		"a block spanning two windows is left alone": {
			blocks: []bucketindex.Block{blk(w0+h2/2, w0+h2+h2/2, old, "ingester"), blk(w0, w0+h2, old, "ingester")},
			now:    time.UnixMilli(w0 + h12 + h2),
		},
		"24h window of two 12h blocks": {
			blocks:    []bucketindex.Block{blk(w0-w0%day, w0-w0%day+h12, old, SourceCompactor), blk(w0-w0%day+h12, w0-w0%day+day, old, SourceCompactor)},
			now:       now.Add(48 * time.Hour),
			wantRange: day, wantStart: w0 - w0%day, wantN: 2,
		},
		"before the epoch": {
			blocks:    []bucketindex.Block{blk(-h2, 0, old, "ingester"), blk(-h2, 0, old, "ingester")},
			wantRange: h2, wantStart: -h2, wantN: 2,
		},
	} {
		t.Run(name, func(t *testing.T) {
			n := tc.now
			if n.IsZero() {
				n = now
			}
			j, ok := p.next(tc.blocks, n)
			if tc.wantN == 0 {
				require.False(t, ok, "unexpected job %+v", j)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.wantRange, j.rangeMs)
			require.Equal(t, tc.wantStart, j.start)
			require.Len(t, j.blocks, tc.wantN)
		})
	}
}

func TestFloorDiv(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 1}, {-1, 10, -1}, {-10, 10, -1}, {-11, 10, -2},
	} {
		require.Equal(t, tc.want, floorDiv(tc.a, tc.b), "%d/%d", tc.a, tc.b)
	}
}
