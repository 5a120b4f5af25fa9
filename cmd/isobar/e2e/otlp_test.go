//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// TestOTLPFromOpenTelemetrySDK: the OpenTelemetry Go SDK's OTLP HTTP
// exporter sends the same counters, gauges, up-down counters and
// histograms of a resource to isobar (gzip) and to Prometheus 3's own OTLP
// receiver, both promoting cloud.region: they store the same series, names,
// labels and samples.
func TestOTLPFromOpenTelemetrySDK(t *testing.T) {
	iso := startIsobar(t, t.TempDir(), "-distributor.otlp.promote-resource-attributes=cloud.region")
	ref := startPrometheusBin(t, prometheus3Bin(t), "otlp:\n  promote_resource_attributes: [cloud.region]\n", "--web.enable-otlp-receiver")

	ctx := context.Background()
	res := resource.NewSchemaless(
		attribute.String("service.name", "nova-compute"),
		attribute.String("service.instance.id", "cmp-r1a-0001"),
		attribute.String("cloud.region", "region-one"),
		attribute.String("host.name", "cmp-r1a-0001.dc1.example"),
	)
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader))
	meter := provider.Meter("isobar.e2e", metric.WithInstrumentationVersion("1.0.0"))

	boots, err := meter.Int64Counter("vm.boots", metric.WithDescription("Boots of VMs."))
	require.NoError(t, err)
	temp, err := meter.Float64Gauge("gpu.temperature", metric.WithUnit("Cel"), metric.WithDescription("GPU temperature."))
	require.NoError(t, err)
	conns, err := meter.Int64UpDownCounter("lb.active_connections", metric.WithUnit("{connection}"))
	require.NoError(t, err)
	latency, err := meter.Float64Histogram("rpc.duration", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.01, 0.1, 1))
	require.NoError(t, err)
	for i := range 3 {
		boots.Add(ctx, int64(i+1), metric.WithAttributes(attribute.String("flavor", fmt.Sprintf("m1.%d", i))))
		temp.Record(ctx, 60+float64(i), metric.WithAttributes(attribute.Int("gpu", i)))
		conns.Add(ctx, int64(10*i), metric.WithAttributes(attribute.String("listener", "https")))
		latency.Record(ctx, 0.05*float64(i+1), metric.WithAttributes(attribute.String("method", "GET")))
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))

	// One collection, exported to both: the same bytes of data reach both.
	for _, target := range []struct {
		url  string
		opts []otlpmetrichttp.Option
	}{
		{iso.URL + "/otlp/v1/metrics", []otlpmetrichttp.Option{otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression)}},
		{ref.URL + "/api/v1/otlp/v1/metrics", nil},
	} {
		exp, err := otlpmetrichttp.New(ctx, append(target.opts, otlpmetrichttp.WithEndpointURL(target.url), otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}))...)
		require.NoError(t, err)
		require.NoError(t, exp.Export(ctx, &rm), target.url)
		require.NoError(t, exp.Shutdown(ctx))
	}

	now := time.Now().Add(time.Second)
	selector := `{job="nova-compute"}[10m]`
	got := rawSamples(t, apiClient{base: iso.URL}, selector, now)
	want := rawSamples(t, apiClient{base: ref.URL}, selector, now)
	require.NotEmpty(t, want)
	t.Logf("%d series, the first: %s", len(want), want[0])
	require.Equal(t, want, got, "isobar stores what Prometheus' OTLP receiver stores")
	for _, name := range []string{"vm_boots_total", "gpu_temperature_celsius", "lb_active_connections", "rpc_duration_seconds_bucket", "target_info"} {
		require.Contains(t, fmt.Sprint(got), "__name__="+name)
	}
	require.Contains(t, fmt.Sprint(got), "cloud_region=region-one", "the promoted attribute")
}
