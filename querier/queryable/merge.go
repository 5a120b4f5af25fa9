package queryable

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// mergeReplicas merges chunk series sets of replicas (ingesters, blocks of
// several ingesters) into one series set. Replicas written the same cut
// the same chunks: a chunk identical to one already taken is dropped, so
// the series of replicas that agree decode from one copy of each chunk,
// with its samples and its histograms' counter reset hints as stored.
// Chunks that still overlap (a replica that missed samples) are merged
// sample by sample, each sample once.
func mergeReplicas(sets []storage.ChunkSeriesSet) storage.SeriesSet {
	return &chunkedSeriesSet{ChunkSeriesSet: storage.NewMergeChunkSeriesSet(sets, 0, dedupeChunks)}
}

// chunkedSeriesSet turns chunk series into series. A series whose chunks do
// not overlap reads them one after the other, as the TSDB does, so every
// sample keeps the counter reset hint its chunk gives it (a merge of
// iterators would make the first sample after a seek "unknown"); one whose
// chunks overlap is merged sample by sample.
type chunkedSeriesSet struct {
	storage.ChunkSeriesSet
	metas []chunks.Meta
	err   error
}

func (s *chunkedSeriesSet) Next() bool {
	if s.err != nil || !s.ChunkSeriesSet.Next() {
		return false
	}
	s.metas = s.metas[:0]
	it := s.ChunkSeriesSet.At().Iterator(nil)
	for it.Next() {
		s.metas = append(s.metas, it.At())
	}
	if err := it.Err(); err != nil {
		s.err = err
		return false
	}
	return true
}

func (s *chunkedSeriesSet) At() storage.Series {
	lset := s.ChunkSeriesSet.At().Labels()
	metas := slices.Clone(s.metas)
	for i := 1; i < len(metas); i++ {
		if metas[i].MinTime <= metas[i-1].MaxTime { // overlapping: merge the samples
			series := make([]storage.Series, len(metas))
			for j, m := range metas {
				series[j] = &storage.SeriesEntry{Lset: lset, SampleIteratorFn: func(it chunkenc.Iterator) chunkenc.Iterator { return m.Chunk.Iterator(it) }}
			}
			return storage.ChainedSeriesMerge(series...)
		}
	}
	return &storage.SeriesEntry{Lset: lset, SampleIteratorFn: func(chunkenc.Iterator) chunkenc.Iterator {
		return &chunksIterator{metas: metas}
	}}
}

func (s *chunkedSeriesSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.ChunkSeriesSet.Err()
}

// chunksIterator reads the samples of chunks that do not overlap, in
// order.
type chunksIterator struct {
	metas   []chunks.Meta
	next    int // the chunk after the current one
	cur     chunkenc.Iterator
	curType chunkenc.ValueType
}

func (it *chunksIterator) Next() chunkenc.ValueType {
	for {
		if it.cur != nil {
			if it.curType = it.cur.Next(); it.curType != chunkenc.ValNone || it.cur.Err() != nil {
				return it.curType
			}
		}
		if it.next >= len(it.metas) {
			it.curType = chunkenc.ValNone
			return it.curType
		}
		it.cur = it.metas[it.next].Chunk.Iterator(it.cur)
		it.next++
	}
}

func (it *chunksIterator) Seek(t int64) chunkenc.ValueType {
	if it.curType != chunkenc.ValNone && it.cur.AtT() >= t {
		return it.curType
	}
	// Chunks that end before t are skipped whole.
	for it.next < len(it.metas) && it.metas[it.next].MaxTime < t {
		it.next++
		it.cur, it.curType = nil, chunkenc.ValNone
	}
	for {
		if vt := it.Next(); vt == chunkenc.ValNone || it.cur.AtT() >= t {
			return vt
		}
	}
}

func (it *chunksIterator) At() (int64, float64) { return it.cur.At() }
func (it *chunksIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return it.cur.AtHistogram(h)
}

func (it *chunksIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.cur.AtFloatHistogram(fh)
}
func (it *chunksIterator) AtT() int64  { return it.cur.AtT() }
func (it *chunksIterator) AtST() int64 { return it.cur.AtST() }

func (it *chunksIterator) Err() error {
	if it.cur == nil {
		return nil
	}
	return it.cur.Err()
}

// dedupeChunks is a VerticalChunkSeriesMergeFunc: the chunks of every
// series, in time order, without duplicates.
func dedupeChunks(series ...storage.ChunkSeries) storage.ChunkSeries {
	var metas []chunks.Meta
	var it chunks.Iterator
	for _, s := range series {
		it = s.Iterator(it)
		for it.Next() {
			metas = append(metas, it.At())
		}
		if err := it.Err(); err != nil {
			return &storage.ChunkSeriesEntry{Lset: series[0].Labels(), ChunkIteratorFn: func(chunks.Iterator) chunks.Iterator {
				return errChunksIterator{err}
			}}
		}
	}
	slices.SortStableFunc(metas, func(a, b chunks.Meta) int {
		return cmp.Or(cmp.Compare(a.MinTime, b.MinTime), cmp.Compare(a.MaxTime, b.MaxTime))
	})
	out := metas[:0]
	for _, m := range metas {
		if n := len(out); n > 0 && sameChunk(out[n-1], m) {
			continue
		}
		out = append(out, m)
	}
	return &storage.ChunkSeriesEntry{Lset: series[0].Labels(), ChunkIteratorFn: func(chunks.Iterator) chunks.Iterator {
		return storage.NewListChunkSeriesIterator(out...)
	}}
}

func sameChunk(a, b chunks.Meta) bool {
	return a.MinTime == b.MinTime && a.MaxTime == b.MaxTime && a.Chunk.Encoding() == b.Chunk.Encoding() && bytes.Equal(a.Chunk.Bytes(), b.Chunk.Bytes())
}

// errChunksIterator is an iterator that fails at once.
type errChunksIterator struct{ err error }

func (errChunksIterator) At() chunks.Meta { return chunks.Meta{} }
func (errChunksIterator) Next() bool      { return false }
func (e errChunksIterator) Err() error    { return e.err }
