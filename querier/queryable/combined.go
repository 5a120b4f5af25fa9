package queryable

import (
	"time"

	"github.com/prometheus/prometheus/storage"
)

// Split asks the ingesters for the recent window and the blocks for the
// rest, and merges the two: where they overlap, each sample counts once.
type Split struct {
	ingesters, blocks storage.Queryable
	// ingestersWithin: only the last this long is asked of the ingesters
	// (0: all of it). storeAfter: only data older than this is asked of
	// the blocks (0: all of it).
	ingestersWithin, storeAfter time.Duration
	now                         func() time.Time
}

// NewSplit returns the queryable of a querier. blocks may be nil: then
// only the ingesters are asked.
func NewSplit(ingesters, blocks storage.Queryable, ingestersWithin, storeAfter time.Duration) *Split {
	return &Split{ingesters: ingesters, blocks: blocks, ingestersWithin: ingestersWithin, storeAfter: storeAfter, now: time.Now}
}

var _ storage.Queryable = (*Split)(nil)

// Querier implements storage.Queryable.
func (s *Split) Querier(mint, maxt int64) (storage.Querier, error) {
	now := s.now().UnixMilli()
	var qs []storage.Querier
	ingMint := mint
	if s.ingestersWithin > 0 {
		ingMint = max(mint, now-s.ingestersWithin.Milliseconds())
	}
	if ingMint <= maxt {
		q, err := s.ingesters.Querier(ingMint, maxt)
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	if s.blocks != nil {
		storeMaxt := maxt
		if s.storeAfter > 0 {
			storeMaxt = min(maxt, now-s.storeAfter.Milliseconds())
		}
		if mint <= storeMaxt {
			q, err := s.blocks.Querier(mint, storeMaxt)
			if err != nil {
				return nil, err
			}
			qs = append(qs, q)
		}
	}
	if len(qs) == 1 {
		return qs[0], nil
	}
	// Both are primaries: an error from either fails the query, never a
	// silent hole.
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}
