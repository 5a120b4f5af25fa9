package distributor

import (
	"context"
	"flag"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

var now = time.Unix(1_700_000_000, 0)

type pusher struct {
	got []string
	err error
}

func (p *pusher) Push(_ context.Context, req *rwproto.Request) error {
	for _, ts := range req.Timeseries {
		p.got = append(p.got, ts.Labels[0].Value)
	}
	return p.err
}

func newDistributor(t *testing.T, p rpc.Pusher, tenantLimits string) *Distributor {
	var cfg Config
	var l limits.Limits
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	l.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	var tl map[string]yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(tenantLimits), &tl))
	o, err := limits.NewOverrides(l, tl)
	require.NoError(t, err)
	d, err := New(cfg, o, p, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	d.now = func() time.Time { return now }
	return d
}

func req(series ...rwproto.TimeSeries) *rwproto.Request { return &rwproto.Request{Timeseries: series} }

func ts(name string, tsMs int64) rwproto.TimeSeries {
	return rwproto.TimeSeries{
		Labels:    []labels.Label{{Name: "__name__", Value: name}},
		NumLabels: 1,
		Samples:   []rwproto.Sample{{Timestamp: tsMs, Value: 1}},
	}
}

func TestPushDropsInvalidSeriesKeepsValid(t *testing.T) {
	p := &pusher{}
	d := newDistributor(t, p, "")
	ctx := tenant.With(context.Background(), "team-a")
	nowMs := now.UnixMilli()

	err := d.Push(ctx, req(ts("a", nowMs), ts("future", nowMs+3600_000), ts("b", nowMs), ts("future2", nowMs+3600_000)))
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(err))
	require.ErrorContains(t, err, "2 series failed validation")
	require.ErrorContains(t, err, `__name__="future"`)
	require.ErrorContains(t, err, "in the future")
	require.Equal(t, []string{"a", "b"}, p.got)
	require.InDelta(t, 2.0, testutil.ToFloat64(d.discardedSamples.WithLabelValues("team-a", "too_far_in_future")), 0)
	require.InDelta(t, 4.0, testutil.ToFloat64(d.receivedSamples.WithLabelValues("team-a")), 0)
}

func TestPushRateLimitPerTenant(t *testing.T) {
	p := &pusher{}
	d := newDistributor(t, p, "slow: {ingestion_rate: 1, ingestion_burst_size: 2}")
	nowMs := now.UnixMilli()

	slow := tenant.With(context.Background(), "slow")
	require.NoError(t, d.Push(slow, req(ts("a", nowMs), ts("b", nowMs))))
	err := d.Push(slow, req(ts("c", nowMs)))
	require.Equal(t, rpc.CauseTenantLimit, rpc.CauseOf(err))
	require.ErrorContains(t, err, "-distributor.ingestion-rate-limit")
	require.Equal(t, []string{"a", "b"}, p.got)

	require.NoError(t, d.Push(tenant.With(context.Background(), "fast"), req(ts("d", nowMs))), "another tenant is not limited")
	d.now = func() time.Time { return now.Add(2 * time.Second) }
	require.NoError(t, d.Push(slow, req(ts("e", nowMs))), "the bucket refills")

	// Metadata counts as samples do: a metadata-only flood is limited.
	d.now = func() time.Time { return now.Add(10 * time.Second) }
	meta := &rwproto.Request{Metadata: []rwproto.Metadata{{MetricFamilyName: "x"}, {MetricFamilyName: "y"}, {MetricFamilyName: "z"}}}
	err = d.Push(slow, meta)
	require.Equal(t, rpc.CauseTenantLimit, rpc.CauseOf(err))
	require.ErrorContains(t, err, "0 samples and 3 metadata")
}

func TestPushErrorPrecedence(t *testing.T) {
	nowMs := now.UnixMilli()
	for _, tc := range []struct {
		name      string
		pushErr   error
		wantCause rpc.Cause
		wantMsg   string
	}{
		{name: "storage failure wins so the sender retries", pushErr: rpc.Errorf(rpc.CauseInternal, "disk full"), wantCause: rpc.CauseInternal, wantMsg: "disk full"},
		{name: "rejections are combined", pushErr: rpc.Errorf(rpc.CauseBadData, "1 samples were rejected"), wantCause: rpc.CauseBadData, wantMsg: "1 samples were rejected; and 1 series failed validation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDistributor(t, &pusher{err: tc.pushErr}, "")
			err := d.Push(tenant.With(context.Background(), "t"), req(ts("a", nowMs), ts("b", nowMs+3600_000)))
			require.Equal(t, tc.wantCause, rpc.CauseOf(err))
			require.ErrorContains(t, err, tc.wantMsg)
		})
	}
}

func TestPushNeedsTenant(t *testing.T) {
	d := newDistributor(t, &pusher{}, "")
	require.Equal(t, rpc.CauseBadData, rpc.CauseOf(d.Push(context.Background(), req(ts("a", 0)))))
}

func TestIdleTenantsAreForgotten(t *testing.T) {
	d := newDistributor(t, &pusher{}, "")
	nowMs := now.UnixMilli()
	require.NoError(t, d.Push(tenant.With(context.Background(), "gone"), req(ts("a", nowMs))))
	require.Equal(t, 1, testutil.CollectAndCount(d.receivedSamples))

	d.now = func() time.Time { return now.Add(10 * time.Minute) }
	require.NoError(t, d.Push(tenant.With(context.Background(), "active"), req(ts("a", nowMs))))
	d.now = func() time.Time { return now.Add(20 * time.Minute) }
	require.NoError(t, d.forgetIdleTenants(context.Background()))

	require.Equal(t, 1, testutil.CollectAndCount(d.receivedSamples), "only the active tenant's series is left")
	require.InDelta(t, 1.0, testutil.ToFloat64(d.receivedSamples.WithLabelValues("active")), 0)
	require.NotContains(t, d.limiters, "gone")
}
