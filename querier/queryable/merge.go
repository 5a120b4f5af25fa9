package queryable

import (
	"bytes"
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// mergeReplicas merges chunk series sets of replicas (ingesters, blocks of
// several ingesters) into one series set. Replicas written the same cut
// the same chunks: a chunk identical to one already taken is dropped, so
// the series of replicas that agree decode from one copy of each chunk,
// with its samples and its histograms' counter reset hints as stored.
// Chunks that still overlap (a replica that missed samples) are merged
// sample by sample, each sample once. Sources send chunks whole, so the
// samples are trimmed here to [mint, maxt], the range the querier was
// asked for.
func mergeReplicas(sets []storage.ChunkSeriesSet, mint, maxt int64) storage.SeriesSet {
	d := &chunkDeduper{}
	sources := make([]*chunkSeriesSet, 0, len(sets))
	for _, set := range sets {
		if src, ok := set.(*chunkSeriesSet); ok {
			sources = append(sources, src)
		}
	}
	var merged storage.ChunkSeriesSet
	if len(sources) == len(sets) && len(sets) > 1 {
		merged = &replicaMerge{sources: sources, dedupe: d}
	} else {
		merged = storage.NewMergeChunkSeriesSet(sets, 0, d.merge)
	}
	return &chunkedSeriesSet{ChunkSeriesSet: merged, mint: mint, maxt: maxt}
}

// replicaMerge merges the sorted series of a few sources (replicas) as they
// were received: labels compared in the frames, and a series whose copies
// carry the same chunks built once, from the first source. A copy that
// only repeats another is never copied out of its frame, nor given labels
// and chunks of its own; copies that differ are built and deduplicated
// chunk by chunk.
type replicaMerge struct {
	sources []*chunkSeriesSet
	dedupe  *chunkDeduper
	started bool
	// taken are the sources whose series is the merge's current one, to
	// advance on Next.
	taken  []*chunkSeriesSet
	copies []storage.ChunkSeries
	at     storage.ChunkSeries
	err    error
}

func (m *replicaMerge) Next() bool {
	if m.err != nil {
		return false
	}
	advance := m.taken
	if !m.started {
		m.started, advance = true, m.sources
	}
	for _, src := range advance {
		if !src.advance() {
			if src.err != nil {
				m.err = src.err
				return false
			}
		}
	}
	// The sources at the smallest labels; a source at its end has none.
	m.taken = m.taken[:0]
	for _, src := range m.sources {
		if src.raw == nil {
			continue
		}
		c := -1
		if len(m.taken) > 0 {
			c = compareRawLabels(src.raw.Labels, m.taken[0].raw.Labels)
		}
		switch {
		case c < 0:
			m.taken = append(m.taken[:0], src)
		case c == 0:
			m.taken = append(m.taken, src)
		}
	}
	if len(m.taken) == 0 {
		return false
	}
	first := m.taken[0]
	same := true
	for _, src := range m.taken[1:] {
		if !sameRawChunks(first.raw.Chunks, src.raw.Chunks) {
			same = false
			break
		}
	}
	if same {
		if !first.build() {
			m.err = first.err
			return false
		}
		m.at = first.at
		return true
	}
	m.copies = m.copies[:0]
	for _, src := range m.taken {
		if !src.build() {
			m.err = src.err
			return false
		}
		m.copies = append(m.copies, src.at)
	}
	m.at = m.dedupe.merge(m.copies...)
	clear(m.copies)
	return true
}

func (m *replicaMerge) At() storage.ChunkSeries { return m.at }
func (m *replicaMerge) Err() error              { return m.err }
func (m *replicaMerge) Warnings() annotations.Annotations {
	return nil
}

// compareRawLabels orders label sets as labels.Compare does, on the
// labels of frames.
func compareRawLabels(a, b []prompb.Label) int {
	for i := range min(len(a), len(b)) {
		if c := strings.Compare(a[i].Name, b[i].Name); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// sameRawChunks reports whether two copies of a series carry the same
// chunks, as received.
func sameRawChunks(a, b []prompb.Chunk) bool {
	return slices.EqualFunc(a, b, func(x, y prompb.Chunk) bool {
		return x.MinTimeMs == y.MinTimeMs && x.MaxTimeMs == y.MaxTimeMs && x.Type == y.Type && bytes.Equal(x.Data, y.Data)
	})
}

// chunkedSeriesSet turns chunk series into series. A series whose chunks do
// not overlap reads them one after the other, as the TSDB does, so every
// sample keeps the counter reset hint its chunk gives it (a merge of
// iterators would make the first sample after a seek "unknown"); one whose
// chunks overlap is merged sample by sample.
type chunkedSeriesSet struct {
	storage.ChunkSeriesSet
	mint, maxt int64
	metas      []chunks.Meta
	err        error
}

func (s *chunkedSeriesSet) Next() bool {
	if s.err != nil || !s.ChunkSeriesSet.Next() {
		return false
	}
	if cs, ok := s.ChunkSeriesSet.At().(*chunkSeries); ok {
		s.metas = cs.metas // one source's series, or a chunkDeduper merge: its own
		return true
	}
	s.metas = nil
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
	at := s.ChunkSeriesSet.At()
	lset := at.Labels()
	metas := s.metas
	for i := 1; i < len(metas); i++ {
		if metas[i].MinTime <= metas[i-1].MaxTime { // overlapping: merge the samples
			series := make([]storage.Series, len(metas))
			for j, m := range metas {
				series[j] = &storage.SeriesEntry{Lset: lset, SampleIteratorFn: func(it chunkenc.Iterator) chunkenc.Iterator { return m.Chunk.Iterator(it) }}
			}
			merged := storage.ChainedSeriesMerge(series...)
			return &storage.SeriesEntry{Lset: lset, SampleIteratorFn: func(it chunkenc.Iterator) chunkenc.Iterator {
				return &rangeIterator{Iterator: merged.Iterator(it), mint: s.mint, maxt: s.maxt}
			}}
		}
	}
	cs, ok := at.(*chunkSeries)
	if !ok {
		cs = &chunkSeries{lset: lset, metas: metas}
	}
	cs.mint, cs.maxt = s.mint, s.maxt
	return (*sampleSeries)(cs)
}

func (s *chunkedSeriesSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.ChunkSeriesSet.Err()
}

// chunkSeries is a series and its chunks (a storage.ChunkSeries).
type chunkSeries struct {
	lset  labels.Labels
	metas []chunks.Meta
	// one holds the chunk of a series of one chunk (most series of a
	// dashboard's range), sparing metas an allocation of its own.
	one [1]chunks.Meta
	// mint and maxt bound the samples read as a sampleSeries.
	mint, maxt int64
}

func (s *chunkSeries) Labels() labels.Labels { return s.lset }

func (s *chunkSeries) Iterator(chunks.Iterator) chunks.Iterator {
	return storage.NewListChunkSeriesIterator(s.metas...)
}

// sampleSeries is a series whose chunks do not overlap (a storage.Series):
// its samples in [mint, maxt] are read from one chunk after the other.
type sampleSeries chunkSeries

func (s *sampleSeries) Labels() labels.Labels { return s.lset }

func (s *sampleSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if ci, ok := it.(*chunksIterator); ok {
		spare := ci.cur
		if spare == nil {
			spare = ci.spare
		}
		*ci = chunksIterator{metas: s.metas, spare: spare, mint: s.mint, maxt: s.maxt}
		return ci
	}
	return &chunksIterator{metas: s.metas, mint: s.mint, maxt: s.maxt}
}

// chunksIterator reads the samples in [mint, maxt] of chunks that do not
// overlap, in order.
type chunksIterator struct {
	metas      []chunks.Meta
	next       int // the chunk after the current one
	cur        chunkenc.Iterator
	curType    chunkenc.ValueType
	spare      chunkenc.Iterator // to reuse for the first chunk
	mint, maxt int64
}

func (it *chunksIterator) Next() chunkenc.ValueType {
	for {
		vt := it.nextInChunks()
		if vt == chunkenc.ValNone {
			return vt
		}
		if t := it.cur.AtT(); t > it.maxt {
			return it.end()
		} else if t >= it.mint {
			return vt
		}
	}
}

// end leaves the iterator exhausted, past maxt.
func (it *chunksIterator) end() chunkenc.ValueType {
	it.next = len(it.metas)
	it.spare, it.cur = it.cur, nil
	it.curType = chunkenc.ValNone
	return it.curType
}

func (it *chunksIterator) nextInChunks() chunkenc.ValueType {
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
		reuse := it.cur
		if reuse == nil {
			reuse, it.spare = it.spare, nil
		}
		it.cur = it.metas[it.next].Chunk.Iterator(reuse)
		it.next++
	}
}

func (it *chunksIterator) Seek(t int64) chunkenc.ValueType {
	t = max(t, it.mint)
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

// rangeIterator gives the samples of an iterator in [mint, maxt].
type rangeIterator struct {
	chunkenc.Iterator
	mint, maxt int64
	done       bool
}

func (it *rangeIterator) Next() chunkenc.ValueType {
	for !it.done {
		vt := it.Iterator.Next()
		if vt == chunkenc.ValNone {
			return vt
		}
		if t := it.AtT(); t > it.maxt {
			it.done = true
		} else if t >= it.mint {
			return vt
		}
	}
	return chunkenc.ValNone
}

func (it *rangeIterator) Seek(t int64) chunkenc.ValueType {
	if it.done {
		return chunkenc.ValNone
	}
	vt := it.Iterator.Seek(max(t, it.mint))
	if vt != chunkenc.ValNone && it.AtT() > it.maxt {
		it.done = true
		return chunkenc.ValNone
	}
	return vt
}

// chunkDeduper merges the copies of a series that several replicas sent:
// its merge is a VerticalChunkSeriesMergeFunc giving the chunks of every
// copy, in time order, without duplicates. A merge set calls it for one
// series at a time, so it keeps its scratch space between calls.
type chunkDeduper struct {
	metas []chunks.Meta
	it    chunks.Iterator
}

func (d *chunkDeduper) merge(series ...storage.ChunkSeries) storage.ChunkSeries {
	metas := d.metas[:0]
	for _, s := range series {
		if cs, ok := s.(*chunkSeries); ok {
			metas = append(metas, cs.metas...)
			continue
		}
		d.it = s.Iterator(d.it)
		for d.it.Next() {
			metas = append(metas, d.it.At())
		}
		if err := d.it.Err(); err != nil {
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
	d.metas = metas
	defer clear(metas) // the scratch space keeps no chunk alive
	// Replicas that agree: the first copy is the answer (the stable sort
	// put its chunks first), and the others are garbage.
	if first, ok := series[0].(*chunkSeries); ok && slices.EqualFunc(out, first.metas, func(a, b chunks.Meta) bool { return a.Chunk == b.Chunk }) {
		return first
	}
	return &chunkSeries{lset: series[0].Labels(), metas: slices.Clone(out)}
}

func sameChunk(a, b chunks.Meta) bool {
	return a.MinTime == b.MinTime && a.MaxTime == b.MaxTime && a.Chunk.Encoding() == b.Chunk.Encoding() && bytes.Equal(a.Chunk.Bytes(), b.Chunk.Bytes())
}

// errChunksIterator is an iterator that fails at once.
type errChunksIterator struct{ err error }

func (errChunksIterator) At() chunks.Meta { return chunks.Meta{} }
func (errChunksIterator) Next() bool      { return false }
func (e errChunksIterator) Err() error    { return e.err }
