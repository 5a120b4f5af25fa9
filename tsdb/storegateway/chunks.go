package storegateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

const (
	// maxRangeGap is the largest gap between two chunks read in one range
	// request: reading it costs less than another request.
	maxRangeGap = 16 << 10
	// chunkSizeGuess is how far past the start of the last chunk of a
	// range is read. Most XOR chunks (120 samples) are smaller; a longer
	// chunk costs one more request for its remainder.
	chunkSizeGuess = 2 << 10
	// maxRangeBytes bounds one range request; longer runs are split.
	maxRangeBytes = 8 << 20
	// maxChunkBytes bounds a chunk's declared length, to reject garbage
	// before asking the bucket for it.
	maxChunkBytes = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentName is the bucket object of a chunk segment. A chunk ref's
// segment is 0-based (chunks.Writer); the files are numbered from 000001.
func segmentName(b *block, seg int) string {
	return bucketindex.BlockFile(b.tenant, b.id, fmt.Sprintf("%s/%06d", bucketindex.ChunksDirname, seg+1))
}

// loadChunks sets the Chunk of every meta, reading the ones not cached
// from the bucket in coalesced byte ranges, and caching them. A cache that
// fails, or holds chunks that fail verification, only costs bucket reads.
func (s *StoreGateway) loadChunks(ctx context.Context, b *block, metas []*chunks.Meta) error {
	var missing []*chunks.Meta // sorted below: not the caller's slice
	if s.cache != nil {
		missing = s.loadCachedChunks(ctx, b, metas)
	} else {
		missing = slices.Clone(metas)
	}
	if len(missing) == 0 {
		return nil
	}
	slices.SortFunc(missing, func(x, y *chunks.Meta) int {
		switch {
		case x.Ref < y.Ref:
			return -1
		case x.Ref > y.Ref:
			return 1
		}
		return 0
	})
	var toCache []cachedChunk
	if s.cache != nil {
		toCache = make([]cachedChunk, 0, len(missing))
	}
	var err error
	for len(missing) > 0 && err == nil {
		seg, start := chunks.BlockChunkRef(missing[0].Ref).Unpack()
		end := start + s.chunkGuess
		n := 1
		for ; n < len(missing); n++ {
			sg, off := chunks.BlockChunkRef(missing[n].Ref).Unpack()
			if sg != seg || off > end+maxRangeGap || off+s.chunkGuess-start > maxRangeBytes {
				break
			}
			end = max(end, off+s.chunkGuess)
		}
		toCache, err = s.readRange(ctx, b, seg, start, end, missing[:n], toCache)
		missing = missing[n:]
	}
	if len(toCache) > 0 {
		// Even after a failed read: the chunks read before it are good.
		s.cache.SetMultiAsync(b.tenant, b.id, toCache)
	}
	return err
}

// loadCachedChunks sets the Chunk of the metas found in the cache and
// returns the others.
func (s *StoreGateway) loadCachedChunks(ctx context.Context, b *block, metas []*chunks.Meta) []*chunks.Meta {
	refs := make([]chunks.ChunkRef, len(metas))
	for i, m := range metas {
		refs[i] = m.Ref
	}
	found, err := s.cache.GetMulti(ctx, b.tenant, b.id, refs)
	if err != nil && ctx.Err() == nil {
		s.metrics.cacheErrors.WithLabelValues(cacheErrorUnavailable).Inc()
		s.logger.Debug("chunk cache get failed; reading the bucket", "tenant", b.tenant, "block", b.id, "chunks", len(refs), "err", err)
	}
	var missing []*chunks.Meta
	for i, m := range metas {
		var data []byte
		if i < len(found) {
			data = found[i]
		}
		if len(data) == 0 {
			missing = append(missing, m)
			continue
		}
		c, err := chunkenc.FromData(chunkenc.Encoding(data[0]), data[1:])
		if err != nil {
			s.metrics.cacheErrors.WithLabelValues(cacheErrorCorrupt).Inc()
			s.logger.Warn("undecodable chunk in the chunk cache; reading the bucket", "tenant", b.tenant, "block", b.id, "ref", m.Ref, "err", err)
			missing = append(missing, m)
			continue
		}
		m.Chunk = c
	}
	s.metrics.cacheHits.Add(float64(len(metas) - len(missing)))
	s.metrics.cacheMisses.Add(float64(len(missing)))
	return missing
}

// readRange reads [start, end) of a segment and decodes the chunks of
// metas, all within the segment and starting in the range, in order. With
// toCache non-nil, it appends the chunks to it, to be cached.
func (s *StoreGateway) readRange(ctx context.Context, b *block, seg, start, end int, metas []*chunks.Meta, toCache []cachedChunk) ([]cachedChunk, error) {
	name := segmentName(b, seg)
	buf, err := s.getRange(ctx, name, int64(start), int64(end-start))
	if err != nil {
		return toCache, err
	}
	for _, m := range metas {
		_, off := chunks.BlockChunkRef(m.Ref).Unpack()
		raw := buf[min(off-start, len(buf)):]
		total, ok, err := chunkLen(raw)
		if err == nil && !ok {
			// The range ended inside the length field.
			if raw, err = s.getRange(ctx, name, int64(off), int64(binary.MaxVarintLen32+s.chunkGuess)); err != nil {
				return toCache, err
			}
			if total, ok, err = chunkLen(raw); err == nil && !ok {
				err = fmt.Errorf("segment ends inside the length field")
			}
		}
		if err != nil {
			return toCache, fmt.Errorf("chunk %d in %s: %w", m.Ref, name, err)
		}
		if total > len(raw) {
			// Longer than guessed.
			if raw, err = s.getRange(ctx, name, int64(off), int64(total)); err != nil {
				return toCache, err
			}
			if len(raw) < total {
				return toCache, fmt.Errorf("chunk %d in %s: segment ends after %d of its %d bytes", m.Ref, name, len(raw), total)
			}
		}
		data, err := decodeChunk(raw[:total])
		if err != nil {
			return toCache, fmt.Errorf("chunk %d in %s: %w", m.Ref, name, err)
		}
		if toCache != nil {
			// The range buffer is shared by the chunks read with it: keep
			// only this chunk's bytes.
			data = slices.Clone(data)
			toCache = append(toCache, cachedChunk{ref: m.Ref, data: data})
		}
		c, err := chunkenc.FromData(chunkenc.Encoding(data[0]), data[1:])
		if err != nil {
			return toCache, fmt.Errorf("chunk %d in %s: %w", m.Ref, name, err)
		}
		m.Chunk = c
	}
	return toCache, nil
}

// chunkLen returns the length on disk of the chunk that raw starts with:
// uvarint data length, encoding byte, data, CRC32. ok is false if raw ends
// inside the length field.
func chunkLen(raw []byte) (total int, ok bool, err error) {
	l, n := binary.Uvarint(raw)
	switch {
	case n == 0:
		if len(raw) < binary.MaxVarintLen32 {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("bad chunk length field")
	case n < 0:
		return 0, false, fmt.Errorf("bad chunk length field")
	case l > maxChunkBytes:
		return 0, false, fmt.Errorf("chunk length %d exceeds %d", l, maxChunkBytes)
	}
	return n + 1 + int(l) + crc32.Size, true, nil
}

// decodeChunk checks the CRC of a whole chunk record and returns its
// encoding byte followed by its data, a subslice of raw.
func decodeChunk(raw []byte) ([]byte, error) {
	l, n := binary.Uvarint(raw)
	if n <= 0 || n+1+int(l)+crc32.Size != len(raw) {
		return nil, fmt.Errorf("bad chunk record of %d bytes", len(raw))
	}
	body := raw[n : len(raw)-crc32.Size] // encoding and data
	want := binary.BigEndian.Uint32(raw[len(raw)-crc32.Size:])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", want, got)
	}
	return body, nil
}

// getRange reads length bytes of an object from off, or fewer if the
// object ends first.
func (s *StoreGateway) getRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	rc, err := s.bkt.GetRange(ctx, name, off, length)
	if err != nil {
		return nil, fmt.Errorf("read %d bytes at %d of %s: %w", length, off, name, err)
	}
	defer rc.Close()
	buf := make([]byte, length)
	n, err := io.ReadFull(rc, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("read %d bytes at %d of %s: %w", length, off, name, err)
	}
	s.metrics.rangeReads.Inc()
	s.metrics.rangeReadBytes.Add(float64(n))
	return buf[:n], nil
}
