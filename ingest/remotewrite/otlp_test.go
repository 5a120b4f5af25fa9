package remotewrite

import (
	"bytes"
	"compress/gzip"
	"flag"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/pkg/limits"
)

func otlpOverrides(t testing.TB, tenantLimits string) *limits.Overrides {
	var l limits.Limits
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	l.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	var tl map[string]yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(tenantLimits), &tl))
	o, err := limits.NewOverrides(l, tl)
	require.NoError(t, err)
	return o
}

// otlpMetrics is a resource with a gauge, a cumulative counter, a delta
// counter and an explicit-bucket histogram.
func otlpMetrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "nova-compute")
	rm.Resource().Attributes().PutStr("service.instance.id", "cmp-001")
	rm.Resource().Attributes().PutStr("cloud.region", "region-one")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	now := pcommon.NewTimestampFromTime(time.Unix(1_700_000_000, 0))

	g := ms.AppendEmpty()
	g.SetName("gpu.temperature")
	g.SetUnit("Cel")
	dp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	dp.SetDoubleValue(71)
	dp.Attributes().PutStr("gpu", "0")

	c := ms.AppendEmpty()
	c.SetName("vm.boots")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp = sum.DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	dp.SetIntValue(3)

	d := ms.AppendEmpty()
	d.SetName("lb.requests")
	dsum := d.SetEmptySum()
	dsum.SetIsMonotonic(true)
	dsum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp = dsum.DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	dp.SetIntValue(10)

	h := ms.AppendEmpty()
	h.SetName("rpc.duration")
	h.SetUnit("s")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := hist.DataPoints().AppendEmpty()
	hp.SetTimestamp(now)
	hp.SetCount(4)
	hp.SetSum(2)
	hp.ExplicitBounds().FromRaw([]float64{0.1, 1})
	hp.BucketCounts().FromRaw([]uint64{1, 2, 1})
	return md
}

func TestOTLP(t *testing.T) {
	req := pmetricotlp.NewExportRequestFromMetrics(otlpMetrics())
	proto, err := req.MarshalProto()
	require.NoError(t, err)
	json, err := req.MarshalJSON()
	require.NoError(t, err)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, err = zw.Write(proto)
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	names := func(series []string) []string {
		out := slices.Clone(series)
		sort.Strings(out)
		return out
	}
	cumulative := []string{
		"__name__=gpu_temperature_celsius,gpu=0,instance=cmp-001,job=nova-compute,",
		"__name__=rpc_duration_seconds_bucket,instance=cmp-001,job=nova-compute,le=+Inf,",
		"__name__=rpc_duration_seconds_bucket,instance=cmp-001,job=nova-compute,le=0.1,",
		"__name__=rpc_duration_seconds_bucket,instance=cmp-001,job=nova-compute,le=1,",
		"__name__=rpc_duration_seconds_count,instance=cmp-001,job=nova-compute,",
		"__name__=rpc_duration_seconds_sum,instance=cmp-001,job=nova-compute,",
		"__name__=target_info,cloud_region=region-one,instance=cmp-001,job=nova-compute,",
		"__name__=vm_boots_total,instance=cmp-001,job=nova-compute,",
	}
	for _, tc := range []struct {
		name, limits string
		hdr          map[string]string
		body         []byte
		wantCode     int
		wantMsg      string
		wantSeries   []string
	}{
		{name: "protobuf, delta refused", hdr: map[string]string{"Content-Type": "application/x-protobuf"}, body: proto, wantCode: 400,
			wantMsg: `metrics of delta temporality are not stored (-distributor.otlp.accept-delta-temporality): lb.requests; the other metrics of the request were stored`, wantSeries: cumulative},
		{name: "json", hdr: map[string]string{"Content-Type": "application/json"}, body: json, wantCode: 400, wantMsg: "lb.requests", wantSeries: cumulative},
		{name: "gzip", hdr: map[string]string{"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, body: zipped.Bytes(), wantCode: 400, wantSeries: cumulative},
		{name: "delta accepted, attributes promoted, native histograms", limits: "anonymous: {otlp_accept_delta_temporality: true, otlp_promote_resource_attributes: cloud.region, otlp_convert_histograms_to_nhcb: true}",
			hdr: map[string]string{"Content-Type": "application/x-protobuf"}, body: proto, wantCode: 200, wantSeries: []string{
				"__name__=gpu_temperature_celsius,cloud_region=region-one,gpu=0,instance=cmp-001,job=nova-compute,",
				"__name__=lb_requests_total,cloud_region=region-one,instance=cmp-001,job=nova-compute,",
				"__name__=rpc_duration_seconds,cloud_region=region-one,instance=cmp-001,job=nova-compute,",
				"__name__=target_info,cloud_region=region-one,instance=cmp-001,job=nova-compute,",
				"__name__=vm_boots_total,cloud_region=region-one,instance=cmp-001,job=nova-compute,",
			}},
		{name: "no suffixes", limits: "anonymous: {otlp_translation_strategy: UnderscoreEscapingWithoutSuffixes, otlp_accept_delta_temporality: true, otlp_disable_target_info: true}",
			hdr: map[string]string{"Content-Type": "application/x-protobuf"}, body: proto, wantCode: 200, wantSeries: []string{
				"__name__=gpu_temperature,gpu=0,instance=cmp-001,job=nova-compute,",
				"__name__=lb_requests,instance=cmp-001,job=nova-compute,",
				"__name__=rpc_duration_bucket,instance=cmp-001,job=nova-compute,le=+Inf,",
				"__name__=rpc_duration_bucket,instance=cmp-001,job=nova-compute,le=0.1,",
				"__name__=rpc_duration_bucket,instance=cmp-001,job=nova-compute,le=1,",
				"__name__=rpc_duration_count,instance=cmp-001,job=nova-compute,",
				"__name__=rpc_duration_sum,instance=cmp-001,job=nova-compute,",
				"__name__=vm_boots,instance=cmp-001,job=nova-compute,",
			}},
		{name: "not OTLP", hdr: map[string]string{"Content-Type": "text/plain"}, body: proto, wantCode: 415, wantMsg: "OTLP takes application/x-protobuf or application/json"},
		{name: "bad compression", hdr: map[string]string{"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}, body: proto, wantCode: 415, wantMsg: "gzip or none"},
		{name: "not gzip", hdr: map[string]string{"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, body: proto, wantCode: 400, wantMsg: "decode gzip body"},
		{name: "not protobuf", hdr: map[string]string{"Content-Type": "application/x-protobuf"}, body: []byte("\x0a\x7fhello"), wantCode: 400, wantMsg: "decode OTLP request"},
		{name: "gzip bomb", hdr: map[string]string{"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, body: gzipOf(t, make([]byte, 1<<20)), wantCode: 413, wantMsg: "exceeds the limit of 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &recorder{max: 1 << 16}
			h := New(d, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).OTLP(otlpOverrides(t, tc.limits))
			rec := serveAt(h, "/otlp/v1/metrics", http.MethodPost, tc.hdr, tc.body)
			require.Equal(t, tc.wantCode, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tc.wantMsg)
			require.Equal(t, tc.wantSeries, names(d.series))
			if tc.wantCode == 200 {
				require.Equal(t, tc.hdr["Content-Type"], rec.Header().Get("Content-Type"))
			}
		})
	}
}

func gzipOf(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// FuzzOTLP: whatever arrives, the OTLP handler answers without a 5xx and
// the process lives.
func FuzzOTLP(f *testing.F) {
	req := pmetricotlp.NewExportRequestFromMetrics(otlpMetrics())
	proto, err := req.MarshalProto()
	require.NoError(f, err)
	json, err := req.MarshalJSON()
	require.NoError(f, err)
	f.Add(proto, false)
	f.Add(json, true)
	f.Add([]byte("{}"), true)
	o := otlpOverrides(f, "")
	f.Fuzz(func(t *testing.T, b []byte, isJSON bool) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		h := New(&recorder{max: 1 << 16}, slog.New(slog.DiscardHandler), nil).OTLP(o)
		rec := serveAt(h, "/otlp/v1/metrics", http.MethodPost, map[string]string{"Content-Type": ct}, b)
		require.Less(t, rec.Code, 500, rec.Body.String())
	})
}

// Two data points centuries apart would make the translator write a
// target_info sample every 2.5 minutes between them: the request is
// refused when it passes its share of samples, quickly and in little memory.
func TestOTLPDataPointsCenturiesApartAreRefused(t *testing.T) {
	md := otlpMetrics()
	g := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints()
	far := g.AppendEmpty()
	far.SetTimestamp(pcommon.NewTimestampFromTime(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)))
	far.SetDoubleValue(1)
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(t, err)
	d := &recorder{max: 1 << 16}
	start := time.Now()
	rec := serveAt(New(d, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).OTLP(otlpOverrides(t, "anonymous: {otlp_accept_delta_temporality: true}")), "/otlp/v1/metrics", http.MethodPost,
		map[string]string{"Content-Type": "application/x-protobuf"}, body)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "span too long a time for its target_info samples")
	require.Less(t, time.Since(start), 5*time.Second)
	require.Empty(t, d.series)
}
