package rpc

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func testFrame() *prompb.ChunkedReadResponse {
	return &prompb.ChunkedReadResponse{
		QueryIndex: 3,
		ChunkedSeries: []*prompb.ChunkedSeries{
			{
				Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "node"}},
				Chunks: []prompb.Chunk{{MinTimeMs: -5, MaxTimeMs: 10, Type: prompb.Chunk_XOR, Data: []byte{1, 2, 3}}, {MinTimeMs: 11, MaxTimeMs: 20, Type: prompb.Chunk_HISTOGRAM, Data: []byte{4}}},
			},
			{Labels: []prompb.Label{{Name: "a", Value: ""}}},
			{Chunks: []prompb.Chunk{{MinTimeMs: 1, MaxTimeMs: 1}}},
		},
	}
}

func TestDecodeFrameDecodesWhatGogoEncodes(t *testing.T) {
	for _, want := range []*prompb.ChunkedReadResponse{testFrame(), {}, {QueryIndex: 7}} {
		b, err := want.Marshal()
		require.NoError(t, err)
		var got prompb.ChunkedReadResponse
		require.NoError(t, new(frameDecoder).decode(b, &got))
		requireSameFrame(t, want, &got)
	}
}

// A frame of a thousand series is four allocations: the series, their
// pointers, one array of labels and one of chunks; none once the decoder
// has decoded a frame as large.
func TestDecodeFrameAllocatesPerFrame(t *testing.T) {
	var f prompb.ChunkedReadResponse
	for i := range 1000 {
		f.ChunkedSeries = append(f.ChunkedSeries, &prompb.ChunkedSeries{
			Labels: []prompb.Label{{Name: "__name__", Value: "x"}, {Name: "i", Value: fmt.Sprint(i)}},
			Chunks: []prompb.Chunk{{MinTimeMs: 1, MaxTimeMs: 2, Data: []byte{1, 2}}},
		})
	}
	b, err := f.Marshal()
	require.NoError(t, err)
	var got prompb.ChunkedReadResponse
	allocs := testing.AllocsPerRun(10, func() { require.NoError(t, new(frameDecoder).decode(b, &got)) })
	require.LessOrEqual(t, allocs, 5.0) // and the decoder
	requireSameFrame(t, &f, &got)
	var d frameDecoder
	require.NoError(t, d.decode(b, &got))
	require.Zero(t, testing.AllocsPerRun(10, func() { require.NoError(t, d.decode(b, &got)) }))
	requireSameFrame(t, &f, &got)
}

func BenchmarkDecodeFrame(b *testing.B) {
	var f prompb.ChunkedReadResponse
	for i := range 3000 {
		f.ChunkedSeries = append(f.ChunkedSeries, &prompb.ChunkedSeries{
			Labels: []prompb.Label{{Name: "__name__", Value: "openstack_vnic_rx_bytes_total"}, {Name: "hypervisor", Value: fmt.Sprintf("cmp-%04d", i%1000)}, {Name: "port", Value: fmt.Sprintf("%06d-%0200d", i, 0)}},
			Chunks: []prompb.Chunk{{MinTimeMs: 1, MaxTimeMs: 2, Data: make([]byte, 40)}},
		})
	}
	buf, err := f.Marshal()
	require.NoError(b, err)
	for _, dec := range []struct {
		name   string
		decode func([]byte, *prompb.ChunkedReadResponse) error
	}{
		{"slab", new(frameDecoder).decode},
		{"gogo", func(b []byte, m *prompb.ChunkedReadResponse) error { return m.Unmarshal(b) }},
	} {
		b.Run(dec.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var got prompb.ChunkedReadResponse
				if err := dec.decode(buf, &got); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf))*float64(b.N)/b.Elapsed().Seconds()/(1<<20), "MB/s")
			b.ReportMetric(float64(len(f.ChunkedSeries))*float64(b.N)/b.Elapsed().Seconds(), "series/s")
		})
	}
}

// FuzzDecodeFrame: where both decoders read a frame, they read the same;
// what gogo reads, once encoded again, frameDecoder reads too (it refuses
// deprecated groups gogo skips loosely); nothing panics.
//
//	go test ./pkg/rpc -run '^$' -fuzz '^FuzzDecodeFrame$' -fuzztime 10m
func FuzzDecodeFrame(f *testing.F) {
	b, err := testFrame().Marshal()
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// A decoder that decoded a frame before, as a stream's does.
		var d frameDecoder
		var got prompb.ChunkedReadResponse
		require.NoError(t, d.decode(b, &got))
		ours := d.decode(data, &got)
		var want prompb.ChunkedReadResponse
		if want.Unmarshal(data) != nil {
			return
		}
		if ours == nil {
			requireSameFrame(t, &want, &got)
		}
		dropUnknownFields(&want)
		canonical, err := want.Marshal()
		require.NoError(t, err)
		require.NoError(t, d.decode(canonical, &got))
		requireSameFrame(t, &want, &got)
	})
}

func requireSameFrame(t *testing.T, want, got *prompb.ChunkedReadResponse) {
	t.Helper()
	require.Equal(t, want.QueryIndex, got.QueryIndex)
	require.Len(t, got.ChunkedSeries, len(want.ChunkedSeries))
	for i, w := range want.ChunkedSeries {
		g := got.ChunkedSeries[i]
		require.Len(t, g.Labels, len(w.Labels), "series %d", i)
		for j, l := range w.Labels {
			require.Equal(t, l.Name, g.Labels[j].Name)
			require.Equal(t, l.Value, g.Labels[j].Value)
		}
		require.Len(t, g.Chunks, len(w.Chunks), "series %d", i)
		for j, c := range w.Chunks {
			gc := g.Chunks[j]
			require.Equal(t, []any{c.MinTimeMs, c.MaxTimeMs, c.Type}, []any{gc.MinTimeMs, gc.MaxTimeMs, gc.Type})
			require.Equal(t, len(c.Data), len(gc.Data))
			if len(c.Data) > 0 {
				require.Equal(t, c.Data, gc.Data)
			}
		}
	}
}

// dropUnknownFields clears what gogo keeps of fields it does not know, so
// that the frame encodes to its canonical form.
func dropUnknownFields(f *prompb.ChunkedReadResponse) {
	f.XXX_unrecognized = nil
	for _, s := range f.ChunkedSeries {
		s.XXX_unrecognized = nil
		for i := range s.Labels {
			s.Labels[i].XXX_unrecognized = nil
		}
		for i := range s.Chunks {
			s.Chunks[i].XXX_unrecognized = nil
		}
	}
}
