package distributor

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/grafana/dskit/kv"
	"github.com/grafana/dskit/kv/consul"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/ingest/hatracker"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	isolog "github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// labelsPusher keeps the labels of what it is given, read back from the
// bytes an ingester would get.
type labelsPusher struct{ got []string }

func (p *labelsPusher) Push(_ context.Context, req *rwproto.Request) error {
	if err := req.EncodeRaw(); err != nil { // as the ring pusher does
		return err
	}
	for _, ts := range req.Timeseries {
		var back rwproto.Request
		if err := back.Unmarshal(rwproto.AppendSeries(nil, ts.Raw), rwproto.Limits{MaxLabelsPerSeries: 100}); err != nil {
			return err
		}
		var names []string
		for _, l := range back.Timeseries[0].Labels {
			names = append(names, l.Name+"="+l.Value)
		}
		p.got = append(p.got, strings.Join(names, ","))
	}
	return nil
}

func newHADistributor(t testing.TB, p rpc.Pusher, tenantLimits string) *Distributor {
	var cfg Config
	var l limits.Limits
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	l.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-distributor.ha-tracker.enable"}))
	var tl map[string]yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(tenantLimits), &tl))
	o, err := limits.NewOverrides(l, tl)
	require.NoError(t, err)
	store, closer := consul.NewInMemoryClient(hatracker.Codec{}, isolog.GoKit(slog.New(slog.DiscardHandler)), nil)
	t.Cleanup(func() { _ = closer.Close() })
	ha, err := hatracker.New(cfg.HATracker, kv.PrefixClient(store, hatracker.KVPrefix), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	d, err := New(cfg, o, p, ha, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	d.now = func() time.Time { return now }
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), d))
	t.Cleanup(func() { require.NoError(t, services.StopAndAwaitTerminated(context.Background(), d)) })
	return d
}

// haSeries is a series with the given labels (name/value pairs, sorted)
// and one sample now.
func haSeries(kv ...string) rwproto.TimeSeries {
	s := rwproto.TimeSeries{Samples: []rwproto.Sample{{Timestamp: now.UnixMilli(), Value: 1}}}
	for i := 0; i < len(kv); i += 2 {
		s.Labels = append(s.Labels, labels.Label{Name: kv[i], Value: kv[i+1]})
	}
	s.NumLabels = len(s.Labels)
	raw, err := s.Encode()
	if err != nil {
		panic(err)
	}
	s.Raw = raw
	return s
}

func TestHAPairsAreDeduplicatedSeriesBySeries(t *testing.T) {
	p := &labelsPusher{}
	d := newHADistributor(t, p, "raw: {accept_ha_samples: false}\nown: {ha_cluster_label: dc, ha_replica_label: prom}")
	ctx := tenant.With(context.Background(), "team-a")

	// r1 of c1 is heard first: its series are kept without the replica label.
	require.NoError(t, d.Push(ctx, req(haSeries("__name__", "up", "__replica__", "r1", "cluster", "c1"))))
	require.Equal(t, []string{"__name__=up,cluster=c1"}, p.got)

	// A request mixing both replicas of c1, a replica of c2 and series
	// without HA labels: each series by its own labels.
	p.got = nil
	require.NoError(t, d.Push(ctx, req(
		haSeries("__name__", "up", "__replica__", "r2", "cluster", "c1"),
		haSeries("__name__", "load", "__replica__", "r1", "cluster", "c1"),
		haSeries("__name__", "up", "__replica__", "r2", "cluster", "c2"),
		haSeries("__name__", "plain"),
		haSeries("__name__", "only_cluster", "cluster", "c1"),
		haSeries("__name__", "only_replica", "__replica__", "r2"),
	)))
	require.Equal(t, []string{
		"__name__=load,cluster=c1",
		"__name__=up,cluster=c2",
		"__name__=plain",
		"__name__=only_cluster,cluster=c1",
		"__name__=only_replica,__replica__=r2",
	}, p.got)
	require.InDelta(t, 1.0, testutil.ToFloat64(d.dedupedSamples.WithLabelValues("team-a", "c1")), 0)

	// Nothing left to store: a 202 that says why.
	p.got = nil
	err := d.Push(ctx, req(haSeries("__name__", "up", "__replica__", "r2", "cluster", "c1")))
	require.Equal(t, rpc.CauseDeduplicated, rpc.CauseOf(err))
	require.Equal(t, 202, rpc.CauseOf(err).HTTPStatus())
	require.ErrorContains(t, err, `1 samples of replica "r2" of HA cluster "c1" dropped: "r1" is its elected replica`)
	require.Empty(t, p.got)

	// A tenant may opt out, or name its own labels.
	p.got = nil
	raw := tenant.With(context.Background(), "raw")
	require.NoError(t, d.Push(raw, req(haSeries("__name__", "up", "__replica__", "r1", "cluster", "c1"), haSeries("__name__", "up", "__replica__", "r2", "cluster", "c1"))))
	require.Len(t, p.got, 2)
	p.got = nil
	own := tenant.With(context.Background(), "own")
	require.NoError(t, d.Push(own, req(haSeries("__name__", "up", "dc", "x", "prom", "a"))))
	err = d.Push(own, req(haSeries("__name__", "up", "dc", "x", "prom", "b")))
	require.Equal(t, rpc.CauseDeduplicated, rpc.CauseOf(err))
	require.Equal(t, []string{"__name__=up,dc=x"}, p.got)
}

func TestHAMaxClustersRefusesTheSeriesOfMore(t *testing.T) {
	p := &labelsPusher{}
	d := newHADistributor(t, p, "team-a: {ha_max_clusters: 1}")
	ctx := tenant.With(context.Background(), "team-a")
	err := d.Push(ctx, req(
		haSeries("__name__", "up", "__replica__", "r1", "cluster", "c1"),
		haSeries("__name__", "up", "__replica__", "r1", "cluster", "c2"),
	))
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	require.ErrorContains(t, err, `cluster "c2" is not tracked`)
	require.ErrorContains(t, err, "-distributor.ha-tracker.max-clusters")
	require.Equal(t, []string{"__name__=up,cluster=c1"}, p.got, "the valid part is stored")
}

// BenchmarkPushHAPair measures the distributor's side of a push from an HA
// pair: 2000 series a request, half from the elected replica (kept, the
// replica label removed) and half from the other (dropped); and the same
// requests with deduplication off, every series kept as sent.
//
//	go test ./ingest/distributor -run '^$' -bench PushHAPair -count 6
func BenchmarkPushHAPair(b *testing.B) {
	const n = 2000
	build := func() *rwproto.Request {
		r := &rwproto.Request{}
		for i := range n {
			r.Timeseries = append(r.Timeseries, haSeries("__name__", "ovs_interface_rx_bytes_total", "__replica__", []string{"r1", "r2"}[i%2],
				"bridge", "br-int", "cluster", "region-one", "interface", fmt.Sprintf("tap%08x-6a", i/2), "region", "region-one"))
		}
		return r
	}
	for _, ha := range []bool{true, false} {
		b.Run(fmt.Sprintf("dedupe=%v", ha), func(b *testing.B) {
			d := newHADistributor(b, &discardPusher{}, "team-a: {ingestion_rate: 1e12, ingestion_burst_size: 2000000000}")
			if !ha {
				d.ha = nil
			}
			ctx := tenant.With(context.Background(), "team-a")
			require.NoError(b, d.Push(ctx, req(haSeries("__name__", "up", "__replica__", "r1", "cluster", "region-one"))))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				r := build()
				b.StartTimer()
				if err := d.Push(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "series/s")
		})
	}
}

type discardPusher struct{}

func (discardPusher) Push(context.Context, *rwproto.Request) error { return nil }
