package compactor

import (
	"slices"
	"time"

	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// SourceCompactor is the Extension.Source of the blocks the compactor
// writes.
const SourceCompactor = "compactor"

// job is one compaction: every live block that fits in the window
// [start, start+rangeMs) of one of the configured block ranges.
type job struct {
	rangeMs int64
	start   int64
	blocks  []bucketindex.Block // ordered by min time, then ULID
}

func (j job) end() int64 { return j.start + j.rangeMs }

// planner picks the next compaction of a tenant.
type planner struct {
	ranges           []int64 // ms, ascending, each a multiple of the one before
	consistencyDelay time.Duration
}

// next returns the next compaction to run among the live (unmarked)
// blocks, or false if there is none. Smaller ranges go first, so replicas
// are merged before their windows are merged into larger ones, and older
// windows go before newer ones.
//
// A block belongs to the window of range r that contains it whole. For the
// smallest range, a window is compacted when it holds two or more blocks
// (RF replicas, or any others) and none of its ingester-shipped blocks was
// uploaded within the consistency delay. Such a block may be joined by a
// replica still on its way; waiting a delay is simpler and safer than
// counting replicas, which would be wrong when the replication factor
// changes or an ingester ships a block twice. For a larger range, a window
// also has to be complete: its blocks cover it with no gap, or its end is
// older than now minus (smallest range + consistency delay). Ingesters cut
// a block when their head spans 1.5 ranges, so the last level-1 block of a
// window is uploaded about half a range after the window ends; the extra
// smallest range leaves room for that. A late block for a window that was
// already compacted forms a new group with the compacted block, and both
// are merged again.
func (p planner) next(blocks []bucketindex.Block, now time.Time) (job, bool) {
	young := now.Add(-p.consistencyDelay).Unix()
	completeBefore := now.Add(-p.consistencyDelay).UnixMilli() - p.ranges[0]
	for i, r := range p.ranges {
		groups := map[int64][]bucketindex.Block{}
		for _, b := range blocks {
			start := floorDiv(b.MinTime, r) * r
			if b.MaxTime <= start+r {
				groups[start] = append(groups[start], b)
			}
		}
		starts := make([]int64, 0, len(groups))
		for s := range groups {
			starts = append(starts, s)
		}
		slices.Sort(starts)
	windows:
		for _, s := range starts {
			g := groups[s]
			if len(g) < 2 {
				continue
			}
			for _, b := range g {
				if b.Source != SourceCompactor && b.UploadedAt > young {
					continue windows
				}
			}
			slices.SortFunc(g, func(a, b bucketindex.Block) int {
				if a.MinTime != b.MinTime {
					if a.MinTime < b.MinTime {
						return -1
					}
					return 1
				}
				return a.ID.Compare(b.ID)
			})
			j := job{rangeMs: r, start: s, blocks: g}
			if i > 0 && j.end() > completeBefore && !covers(g, s, j.end()) {
				continue
			}
			return j, true
		}
	}
	return job{}, false
}

// covers reports whether the blocks, ordered by min time, cover
// [start, end) with no gap.
func covers(blocks []bucketindex.Block, start, end int64) bool {
	cur := start
	for _, b := range blocks {
		if b.MinTime > cur {
			return false
		}
		cur = max(cur, b.MaxTime)
	}
	return cur >= end
}

// floorDiv divides rounding towards minus infinity, so windows before the
// epoch are aligned too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
