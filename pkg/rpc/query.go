package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/isobar-tsdb/isobar/pkg/shard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// IngesterReaderServer is the read side of an ingester.
type IngesterReaderServer interface {
	// QueryStream sends the series matching req, with their chunks, in
	// frames of a bounded size.
	QueryStream(ctx context.Context, req *prompb.Query, send func(*prompb.ChunkedReadResponse) error) error
	LabelNames(ctx context.Context, req *LabelsRequest) ([]string, error)
	LabelValues(ctx context.Context, req *LabelsRequest) ([]string, error)
	// QueryExemplars returns the exemplars matching req, as
	// storage.ExemplarQuerier.Select does.
	QueryExemplars(ctx context.Context, req *ExemplarsRequest) (*ExemplarsResponse, error)
	// QueryMetadata returns the metric metadata req selects, limited as
	// req says (gRPC method MetricMetadata).
	QueryMetadata(ctx context.Context, req *MetadataRequest) (*MetadataResponse, error)
	// Cardinality answers req about the tenant's head (ServeCardinality).
	Cardinality(ctx context.Context, req *CardinalityRequest) (*CardinalityResponse, error)
}

const (
	queryStreamMethod = "/isobar.IngesterReader/QueryStream"
	labelNamesMethod  = "/isobar.IngesterReader/LabelNames"
	labelValuesMethod = "/isobar.IngesterReader/LabelValues"
)

var readerServiceDesc = grpc.ServiceDesc{
	ServiceName: "isobar.IngesterReader",
	HandlerType: (*IngesterReaderServer)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "QueryStream", ServerStreams: true, Handler: framesHandler(IngesterReaderServer.QueryStream)},
		{StreamName: "LabelNames", ServerStreams: true, Handler: labelsStreamHandler(IngesterReaderServer.LabelNames)},
		{StreamName: "LabelValues", ServerStreams: true, Handler: labelsStreamHandler(IngesterReaderServer.LabelValues)},
		{StreamName: "QueryExemplars", ServerStreams: true, Handler: framedHandler(IngesterReaderServer.QueryExemplars, exemplarFrames)},
		{StreamName: "MetricMetadata", ServerStreams: true, Handler: framedHandler(IngesterReaderServer.QueryMetadata, metadataFrames)},
		{StreamName: "Cardinality", ServerStreams: true, Handler: framedHandler(IngesterReaderServer.Cardinality, cardinalityFrames)},
	},
	Metadata: "pkg/rpc/query.go",
}

// RegisterIngesterReaderServer serves srv's reads on s.
func RegisterIngesterReaderServer(s grpc.ServiceRegistrar, srv IngesterReaderServer) {
	s.RegisterService(&readerServiceDesc, srv)
}

// framesHandler serves a server stream of series frames: it decodes a Req
// and lets call send the frames.
func framesHandler[S, Req any](call func(S, context.Context, *Req, func(*prompb.ChunkedReadResponse) error) error) grpc.StreamHandler {
	return func(srv any, stream grpc.ServerStream) error {
		req := new(Req)
		if err := stream.RecvMsg(req); err != nil {
			return err
		}
		send := func(r *prompb.ChunkedReadResponse) error { return stream.SendMsg(r) }
		return ToStatus(call(srv.(S), stream.Context(), req, send))
	}
}

// labelsStreamHandler serves label names or values as a server stream of
// LabelsResponse frames of about maxFrameBytes each, so that no answer,
// however many and long the values, is one message over gRPC's limits.
func labelsStreamHandler[S, Req any](call func(S, context.Context, *Req) ([]string, error)) grpc.StreamHandler {
	return framedHandler(call, func(values []string) []*LabelsResponse {
		var out []*LabelsResponse
		for _, f := range bySize(values, func(v string) int { return len(v) }) {
			out = append(out, &LabelsResponse{Values: f})
		}
		return out
	})
}

// framedHandler serves a unary-shaped call as a server stream: it decodes
// a Req, calls call and sends the answer cut into frames by frames.
func framedHandler[S, Req, Answer, Frame any](call func(S, context.Context, *Req) (Answer, error), frames func(Answer) []*Frame) grpc.StreamHandler {
	return func(srv any, stream grpc.ServerStream) error {
		req := new(Req)
		if err := stream.RecvMsg(req); err != nil {
			return err
		}
		answer, err := call(srv.(S), stream.Context(), req)
		if err != nil {
			return ToStatus(err)
		}
		for _, f := range frames(answer) {
			if err := stream.SendMsg(f); err != nil {
				return err
			}
		}
		return nil
	}
}

// bySize cuts items into runs of about maxFrameBytes encoded, by the
// encoded size of each. There is always one run, empty if items are.
func bySize[T any](items []T, size func(T) int) [][]T {
	var out [][]T
	start, total := 0, 0
	for i, it := range items {
		total += protowire.SizeTag(1) + protowire.SizeBytes(size(it))
		if total >= maxFrameBytes {
			out = append(out, items[start:i+1])
			start, total = i+1, 0
		}
	}
	if start < len(items) || len(out) == 0 {
		out = append(out, items[start:])
	}
	return out
}

// streamDesc finds the stream of desc named name.
func streamDesc(desc *grpc.ServiceDesc, name string) *grpc.StreamDesc {
	for i := range desc.Streams {
		if desc.Streams[i].StreamName == name {
			return &desc.Streams[i]
		}
	}
	panic(fmt.Sprintf("service %s has no stream %s", desc.ServiceName, name))
}

// QueryStream asks the ingester for the series matching req and hands each
// frame to recv, which must be done with a frame, and everything in it,
// when its call for the next frame returns: the frame after that is
// received into its memory.
func (c *IngesterClient) QueryStream(ctx context.Context, req *prompb.Query, recv func(*prompb.ChunkedReadResponse) error) error {
	return receiveChunkFrames(ctx, c.cc, streamDesc(&readerServiceDesc, "QueryStream"), queryStreamMethod, req, recv)
}

// chunkFrame is a frame of a chunk query's answer as received: its bytes,
// gathered out of gRPC's buffers, and the frame decoded over them.
type chunkFrame struct {
	bytes []byte
	resp  prompb.ChunkedReadResponse
	dec   frameDecoder
}

func (f *chunkFrame) unmarshal(data mem.BufferSlice) error {
	f.bytes = reuse(f.bytes, data.Len())
	data.CopyTo(f.bytes)
	return f.dec.decode(f.bytes, &f.resp)
}

// receiveChunkFrames sends req on a new server stream of method and hands
// each frame of the answer to recv. Frames are received into two memories
// in turn, so that the next frame is received while recv's caller reads
// one: recv must be done with a frame when its call for the next returns.
func receiveChunkFrames(ctx context.Context, cc grpc.ClientConnInterface, desc *grpc.StreamDesc, method string, req any, recv func(*prompb.ChunkedReadResponse) error) error {
	// Not pooled: the caller may read the last frame after the stream ends.
	frames := [2]*chunkFrame{new(chunkFrame), new(chunkFrame)}
	turn := 0
	next := func() *chunkFrame {
		turn ^= 1
		return frames[turn]
	}
	return streamFrames(ctx, cc, desc, method, req, next, func(f *chunkFrame) error { return recv(&f.resp) })
}

// streamFrames sends req on a new server stream of method and hands each
// frame of the answer, received into a Resp that msg gives, to recv.
func streamFrames[Resp any](ctx context.Context, cc grpc.ClientConnInterface, desc *grpc.StreamDesc, method string, req any, msg func() *Resp, recv func(*Resp) error) error {
	stream, err := cc.NewStream(ctx, desc, method, grpc.CallContentSubtype(CodecName))
	if err != nil {
		return FromStatus(err)
	}
	if err := stream.SendMsg(req); err != nil {
		return FromStatus(err)
	}
	if err := stream.CloseSend(); err != nil {
		return FromStatus(err)
	}
	for {
		resp := msg()
		if err := stream.RecvMsg(resp); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return FromStatus(err)
		}
		if err := recv(resp); err != nil {
			return err
		}
	}
}

func newMessage[M any]() *M { return new(M) }

// LabelNames asks the ingester for label names.
func (c *IngesterClient) LabelNames(ctx context.Context, req *LabelsRequest) ([]string, error) {
	return c.labels(ctx, labelNamesMethod, req)
}

// LabelValues asks the ingester for the values of req.Name.
func (c *IngesterClient) LabelValues(ctx context.Context, req *LabelsRequest) ([]string, error) {
	return c.labels(ctx, labelValuesMethod, req)
}

func (c *IngesterClient) labels(ctx context.Context, method string, req *LabelsRequest) ([]string, error) {
	return receiveLabels(ctx, c.cc, &readerServiceDesc, method, req)
}

// receiveLabels asks for label names or values on the stream of method and
// gathers the frames of the answer.
func receiveLabels(ctx context.Context, cc grpc.ClientConnInterface, desc *grpc.ServiceDesc, method string, req any) ([]string, error) {
	var values []string
	err := receiveFrames(ctx, cc, desc, method, req, func(r *LabelsResponse) {
		values = appendFrame(values, r.Values)
	})
	return values, err
}

// receiveFrames asks on the stream of method and hands each frame of the
// answer to join.
func receiveFrames[Frame any](ctx context.Context, cc grpc.ClientConnInterface, desc *grpc.ServiceDesc, method string, req any, join func(*Frame)) error {
	return streamFrames(ctx, cc, streamDesc(desc, method[strings.LastIndexByte(method, '/')+1:]), method, req, newMessage[Frame], func(f *Frame) error {
		join(f)
		return nil
	})
}

// appendFrame appends a frame's items to those received before, taking the
// first frame as it is.
func appendFrame[T any](all, frame []T) []T {
	if all == nil {
		return frame
	}
	return append(all, frame...)
}

// maxFrameBytes is the size of one frame of a streamed answer, encoded;
// only a single series or value larger than it makes a larger frame.
const maxFrameBytes = 1 << 20

// ServeChunkQuery runs req on q and sends the series, chunks as stored,
// sorted by labels, in frames of about maxFrameBytes, labels included.
// send must not keep a frame, nor anything in it, once it returns: its
// memory is reused for the next. It sends whole the chunks that overlap
// the request's range: one trimmed to the range would be encoded again,
// which costs more than the rest of the query (every open head chunk
// reaches past any range) and loses a histogram chunk's counter reset
// hint.
func ServeChunkQuery(ctx context.Context, q storage.ChunkQuerier, req *prompb.Query, send func(*prompb.ChunkedReadResponse) error) error {
	ms, err := FromLabelMatchers(req.Matchers)
	if err != nil {
		return Errorf(CauseBadData, "%v", err)
	}
	ms, sh, err := shard.FromMatchers(ms)
	if err != nil {
		return Errorf(CauseBadData, "%v", err)
	}
	hints := &storage.SelectHints{Start: req.StartTimestampMs, End: req.EndTimestampMs, DisableTrimming: true}
	if sh.Count > 0 {
		hints = shard.Hints(hints, sh)
	}
	ss := q.Select(ctx, true, hints, ms...)
	var f frameBuilder
	var it chunks.Iterator
	for ss.Next() {
		s := ss.At()
		f.startSeries(s.Labels())
		it = s.Iterator(it)
		for it.Next() {
			m := it.At()
			if m.MaxTime < req.StartTimestampMs || m.MinTime > req.EndTimestampMs {
				continue
			}
			f.addChunk(prompb.Chunk{MinTimeMs: m.MinTime, MaxTimeMs: m.MaxTime, Type: prompb.Chunk_Encoding(m.Chunk.Encoding()), Data: m.Chunk.Bytes()})
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("read chunks of %s: %w", s.Labels(), err)
		}
		if f.endSeries() >= maxFrameBytes {
			if err := f.send(send); err != nil {
				return err
			}
		}
	}
	if err := ss.Err(); err != nil {
		return fmt.Errorf("select series: %w", err)
	}
	if len(f.frame.ChunkedSeries) > 0 {
		return f.send(send)
	}
	return nil
}

// frameBuilder builds the frames of a chunk query in memory it reuses from
// one frame to the next: the series, labels and chunks of a frame are cut
// from slabs, and the label strings are the series' own.
type frameBuilder struct {
	frame  prompb.ChunkedReadResponse
	series []prompb.ChunkedSeries
	labels []prompb.Label
	chunks []prompb.Chunk
	size   int // encoded bytes of the frame so far
	// firstLabel and firstChunk index the current series' own in the slabs.
	firstLabel, firstChunk int
}

func (f *frameBuilder) startSeries(lset labels.Labels) {
	f.firstLabel, f.firstChunk = len(f.labels), len(f.chunks)
	lset.Range(func(l labels.Label) { f.labels = append(f.labels, prompb.Label{Name: l.Name, Value: l.Value}) })
}

func (f *frameBuilder) addChunk(c prompb.Chunk) { f.chunks = append(f.chunks, c) }

// endSeries adds the current series to the frame, unless it has no chunk
// (a series without samples is no series to PromQL), and returns the
// frame's encoded size. A slab that grew leaves the series before in the
// old array, where they stay valid.
func (f *frameBuilder) endSeries() int {
	if len(f.chunks) == f.firstChunk {
		f.labels = f.labels[:f.firstLabel]
		return f.size
	}
	f.series = append(f.series, prompb.ChunkedSeries{
		Labels: f.labels[f.firstLabel:len(f.labels):len(f.labels)],
		Chunks: f.chunks[f.firstChunk:len(f.chunks):len(f.chunks)],
	})
	cs := &f.series[len(f.series)-1]
	f.frame.ChunkedSeries = append(f.frame.ChunkedSeries, cs)
	f.size += protowire.SizeTag(1) + protowire.SizeBytes(cs.Size())
	return f.size
}

// send sends the frame and empties the builder for the next one: send
// must not keep the frame, nor anything in it, once it returns.
func (f *frameBuilder) send(send func(*prompb.ChunkedReadResponse) error) error {
	err := send(&f.frame)
	clear(f.frame.ChunkedSeries)
	clear(f.series)
	clear(f.labels)
	clear(f.chunks)
	f.frame.ChunkedSeries, f.series, f.labels, f.chunks = f.frame.ChunkedSeries[:0], f.series[:0], f.labels[:0], f.chunks[:0]
	f.size = 0
	return err
}

// FromLabelMatchers turns wire matchers into Prometheus matchers.
func FromLabelMatchers(in []*prompb.LabelMatcher) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(in))
	for _, m := range in {
		var t labels.MatchType
		switch m.Type {
		case prompb.LabelMatcher_EQ:
			t = labels.MatchEqual
		case prompb.LabelMatcher_NEQ:
			t = labels.MatchNotEqual
		case prompb.LabelMatcher_RE:
			t = labels.MatchRegexp
		case prompb.LabelMatcher_NRE:
			t = labels.MatchNotRegexp
		default:
			return nil, fmt.Errorf("unknown matcher type %d", m.Type)
		}
		lm, err := labels.NewMatcher(t, m.Name, m.Value)
		if err != nil {
			return nil, fmt.Errorf("matcher %s: %w", m.Name, err)
		}
		out = append(out, lm)
	}
	return out, nil
}

// ToLabelMatchers turns Prometheus matchers into wire matchers.
func ToLabelMatchers(in []*labels.Matcher) []*prompb.LabelMatcher {
	out := make([]*prompb.LabelMatcher, 0, len(in))
	for _, m := range in {
		t := prompb.LabelMatcher_EQ
		switch m.Type {
		case labels.MatchNotEqual:
			t = prompb.LabelMatcher_NEQ
		case labels.MatchRegexp:
			t = prompb.LabelMatcher_RE
		case labels.MatchNotRegexp:
			t = prompb.LabelMatcher_NRE
		}
		out = append(out, &prompb.LabelMatcher{Type: t, Name: m.Name, Value: m.Value})
	}
	return out
}

// LabelsRequest asks for label names, or for the values of Name, of the
// series matching Matchers in [Start, End].
type LabelsRequest struct {
	Start, End int64
	Name       string
	Matchers   []*prompb.LabelMatcher
	Limit      int
}

// Marshal encodes the request as protobuf (fields 1 start, 2 end, 3 name,
// 4 matchers, 5 limit).
func (r *LabelsRequest) Marshal() ([]byte, error) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.Start))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.End))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, r.Name)
	for _, m := range r.Matchers {
		mb, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	b = protowire.AppendTag(b, 5, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(r.Limit)), nil
}

// Unmarshal decodes what Marshal encodes.
func (r *LabelsRequest) Unmarshal(b []byte) error {
	*r = LabelsRequest{}
	return eachField(b, func(num protowire.Number, v uint64, bytes []byte) error {
		switch num {
		case 1:
			r.Start = int64(v)
		case 2:
			r.End = int64(v)
		case 3:
			r.Name = string(bytes)
		case 4:
			m := &prompb.LabelMatcher{}
			if err := m.Unmarshal(bytes); err != nil {
				return err
			}
			r.Matchers = append(r.Matchers, m)
		case 5:
			r.Limit = int(v)
		}
		return nil
	})
}

// LabelsResponse carries label names or values.
type LabelsResponse struct {
	Values []string
}

// Marshal encodes the values as repeated field 1.
func (r *LabelsResponse) Marshal() ([]byte, error) {
	var b []byte
	for _, v := range r.Values {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b, nil
}

// Unmarshal decodes what Marshal encodes.
func (r *LabelsResponse) Unmarshal(b []byte) error {
	r.Values = r.Values[:0]
	return eachField(b, func(num protowire.Number, _ uint64, bytes []byte) error {
		if num == 1 {
			r.Values = append(r.Values, string(bytes))
		}
		return nil
	})
}

// eachField calls f for every varint and bytes field of a message.
func eachField(b []byte, f func(num protowire.Number, v uint64, bytes []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var (
			v     uint64
			bytes []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			bytes, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, v, bytes); err != nil {
			return err
		}
	}
	return nil
}
