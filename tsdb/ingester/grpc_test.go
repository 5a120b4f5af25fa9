package ingester

import (
	"context"
	"fmt"
	"net"
	"testing"

	_ "github.com/grafana/dskit/grpcencoding/snappy" // registers the snappy compressor
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// serveGRPC serves ing's push contract on 127.0.0.1 and returns a client.
func serveGRPC(t testing.TB, ing *Ingester) *rpc.IngesterClient {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.UnaryInterceptor(rpc.ServerTenantInterceptor), grpc.StreamInterceptor(rpc.ServerTenantStreamInterceptor))
	rpc.RegisterIngesterServer(srv, ing)
	rpc.RegisterIngesterReaderServer(srv, ing)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(rpc.ClientTenantInterceptor),
		grpc.WithStreamInterceptor(rpc.ClientTenantStreamInterceptor),
		grpc.WithDefaultCallOptions(grpc.UseCompressor("snappy")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return rpc.NewIngesterClient(cc)
}

// forward builds the body a distributor sends: the series' own bytes.
func forward(t testing.TB, wr *prompb.WriteRequest) []byte {
	in := request(t, wr)
	var body []byte
	for _, ts := range in.Timeseries {
		body = rwproto.AppendSeries(body, ts.Raw)
	}
	for _, m := range in.Metadata {
		body = rwproto.AppendMetadata(body, m.Raw)
	}
	return body
}

func TestPushOverGRPC(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	client := serveGRPC(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	require.NoError(t, client.Push(ctx, forward(t, &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{floatSeries(t0, 1, "__name__", "up", "job", "a"), floatSeries(t0, 2, "__name__", "up", "job", "b")},
		Metadata:   []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Up."}},
	})))
	require.Equal(t, map[string][]point{
		`{__name__="up", job="a"}`: {{t0, 1}},
		`{__name__="up", job="b"}`: {{t0, 2}},
	}, readAll(t, ing, "team-a"))
	md, err := ing.MetricMetadata(ctx, "up", 0, 0)
	require.NoError(t, err)
	require.Equal(t, "Up.", md["up"][0].Help)
	require.Empty(t, readAll(t, ing, "team-b"), "the tenant travels with the call")

	for _, tc := range []struct {
		name      string
		ctx       context.Context
		body      []byte
		wantCause rpc.Cause
		wantMsg   string
	}{
		{name: "out of order", ctx: ctx, body: forward(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0-1000, 1, "__name__", "up", "job", "a")}}), wantCause: rpc.CauseBadData, wantMsg: "out-of-order"},
		{name: "invalid labels", ctx: ctx, body: forward(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{floatSeries(t0, 1, "job", "x")}}), wantCause: rpc.CauseBadData, wantMsg: "no metric name"},
		{name: "garbage", ctx: ctx, body: []byte{0x0a, 0x7f}, wantCause: rpc.CauseBadData, wantMsg: "decode pushed request"},
		{name: "no tenant", ctx: context.Background(), body: forward(t, &prompb.WriteRequest{}), wantCause: rpc.CauseBadData, wantMsg: "tenant"},
		{name: "path tenant", ctx: tenant.With(context.Background(), ".."), body: forward(t, &prompb.WriteRequest{}), wantCause: rpc.CauseBadData, wantMsg: `"." or ".."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := client.Push(tc.ctx, tc.body)
			require.Equal(t, tc.wantCause, rpc.CauseOf(err), "%v", err)
			require.ErrorContains(t, err, tc.wantMsg)
		})
	}
}

func TestReadOverGRPC(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	client := serveGRPC(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	var series []prompb.TimeSeries
	for i := range 300 {
		s := floatSeries(t0, float64(i), "__name__", "up", "instance", fmt.Sprintf("host-%03d", i), "job", "node")
		for j := 1; j < 200; j++ {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: t0 + int64(j)*15000, Value: float64(i + j)})
		}
		series = append(series, s)
	}
	require.NoError(t, client.Push(ctx, forward(t, &prompb.WriteRequest{Timeseries: series})))

	q := &prompb.Query{StartTimestampMs: t0, EndTimestampMs: t0 + 200*15000,
		Matchers: rpc.ToLabelMatchers([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "node")})}
	frames, got := 0, 0
	samples := 0
	require.NoError(t, client.QueryStream(ctx, q, func(r *prompb.ChunkedReadResponse) error {
		frames++
		for _, cs := range r.ChunkedSeries {
			got++
			require.Equal(t, "up", cs.Labels[0].Value)
			for _, c := range cs.Chunks {
				chk, err := chunkenc.FromData(chunkenc.Encoding(c.Type), c.Data)
				require.NoError(t, err)
				samples += chk.NumSamples()
			}
		}
		return nil
	}))
	require.Equal(t, 300, got)
	require.Equal(t, 300*200, samples, "every sample comes back, in chunks")

	names, err := client.LabelNames(ctx, &rpc.LabelsRequest{Start: t0, End: t0 + 200*15000})
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "instance", "job"}, names)
	values, err := client.LabelValues(ctx, &rpc.LabelsRequest{Start: t0, End: t0 + 200*15000, Name: "instance", Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"host-000", "host-001"}, values)

	other := tenant.With(context.Background(), "team-b")
	require.NoError(t, client.QueryStream(other, q, func(*prompb.ChunkedReadResponse) error {
		return fmt.Errorf("tenant team-b must see nothing")
	}))
	names, err = client.LabelNames(other, &rpc.LabelsRequest{Start: t0, End: t0 + 200*15000})
	require.NoError(t, err)
	require.Empty(t, names)
}

func TestTruncatedLabelSetNeverMatchesAnotherSeries(t *testing.T) {
	cfg, l := testConfig(t, t.TempDir())
	l.MaxLabelNamesPerSeries = 4
	ing := startIngester(t, cfg, l, nil)
	defer stop(t, ing)
	ctx := tenant.With(context.Background(), "team-a")

	// A series of 5 labels exists (say, from before the limit was lowered).
	five := floatSeries(t0, 1, "__name__", "up", "a", "1", "b", "2", "c", "3", "d", "4")
	r := request(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{five}})
	td, err := ing.tenant(ctx, "team-a", true)
	require.NoError(t, err)
	app := td.db.AppenderV2(ctx)
	_, err = app.Append(0, labelsOf(r.Timeseries[0]), 0, t0, 1, nil, nil, storageOpts)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	td.inUse.RUnlock()

	// Six labels: the decoder keeps the first five, which name that series.
	six := floatSeries(t0+1000, 99, "__name__", "up", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{six}}
	buf, err := wr.Marshal()
	require.NoError(t, err)
	var dec rwproto.Request
	require.NoError(t, dec.Unmarshal(buf, rwproto.Limits{MaxLabelsPerSeries: 4}))
	err = ing.Push(ctx, &dec)
	require.ErrorContains(t, err, "more than the limit of 4")
	require.Equal(t, []point{{t0, 1}}, readAll(t, ing, "team-a")[`{__name__="up", a="1", b="2", c="3", d="4"}`])
}

var storageOpts = storage.AOptions{}

func labelsOf(ts rwproto.TimeSeries) labels.Labels {
	b := labels.NewScratchBuilder(len(ts.Labels))
	for _, l := range ts.Labels {
		b.Add(l.Name, l.Value)
	}
	return b.Labels()
}

// BenchmarkPushGRPC measures the ingester's side of a forwarded push over
// loopback gRPC with snappy: 2000 known series per call.
//
//	go test ./tsdb/ingester -run '^$' -bench PushGRPC -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkPushGRPC(b *testing.B) {
	cfg, l := testConfig(b, b.TempDir())
	ing := startIngester(b, cfg, l, nil)
	defer stop(b, ing)
	client := serveGRPC(b, ing)
	ctx := tenant.With(context.Background(), "bench")
	const n = 2000
	bodyAt := func(ts int64) []byte {
		wr := &prompb.WriteRequest{}
		for i := range n {
			wr.Timeseries = append(wr.Timeseries, floatSeries(ts, float64(i), "__name__", "ovs_interface_rx_bytes_total",
				"bridge", "br-int", "hypervisor", fmt.Sprintf("cmp-r1a-%04d.dc1.example", i/40), "interface", fmt.Sprintf("tap%08x-6a", i), "region", "region-one"))
		}
		return forward(b, wr)
	}
	next := t0
	require.NoError(b, client.Push(ctx, bodyAt(next)))
	bodies := make([][]byte, 64)
	refill := func() {
		for j := range bodies {
			next += 15000
			bodies[j] = bodyAt(next)
		}
	}
	refill()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(bodies) {
			b.StopTimer()
			refill()
			b.StartTimer()
			i = 0
		}
		if err := client.Push(ctx, bodies[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkQueryStreamGRPC measures a chunk query over loopback gRPC with
// snappy, both ends: 20,000 series of 40 samples each, in their open head
// chunks, all asked for.
//
//	go test ./tsdb/ingester -run '^$' -bench QueryStreamGRPC -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkQueryStreamGRPC(b *testing.B) {
	cfg, l := testConfig(b, b.TempDir())
	ing := startIngester(b, cfg, l, nil)
	defer stop(b, ing)
	client := serveGRPC(b, ing)
	ctx := tenant.With(context.Background(), "bench")
	const n, rounds = 20000, 40
	for r := range int64(rounds) {
		wr := &prompb.WriteRequest{}
		for i := range n {
			wr.Timeseries = append(wr.Timeseries, floatSeries(t0+r*15000, float64(i), "__name__", "ovs_interface_rx_bytes_total",
				"bridge", "br-int", "hypervisor", fmt.Sprintf("cmp-r1a-%04d.dc1.example", i/40), "interface", fmt.Sprintf("tap%08x-6a", i), "region", "region-one"))
		}
		require.NoError(b, client.Push(ctx, forward(b, wr)))
	}
	q := &prompb.Query{StartTimestampMs: t0, EndTimestampMs: t0 + rounds*15000,
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "ovs_interface_rx_bytes_total"}}}
	b.ReportAllocs()
	for b.Loop() {
		got := 0
		if err := client.QueryStream(ctx, q, func(r *prompb.ChunkedReadResponse) error { got += len(r.ChunkedSeries); return nil }); err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("%d series, want %d", got, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "series/s")
}
