package ingester

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	activeSeries    *prometheus.GaugeVec
	ingestedSamples *prometheus.CounterVec
	rejectedSamples *prometheus.CounterVec
	droppedMetadata *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, i *Ingester) *metrics {
	m := &metrics{
		activeSeries: promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
			Name: "isobar_ingester_active_series",
			Help: "Series in the tenant's head.",
		}, []string{"tenant"}),
		ingestedSamples: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ingester_ingested_samples_total",
			Help: "Samples appended to the tenant's head.",
		}, []string{"tenant"}),
		rejectedSamples: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ingester_rejected_samples_total",
			Help: "Samples the tenant's TSDB rejected, by reason.",
		}, []string{"tenant", "reason"}),
		droppedMetadata: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ingester_dropped_metadata_total",
			Help: "Metadata of new metric families dropped because the tenant holds -ingester.max-metadata-families-per-tenant.",
		}, []string{"tenant"}),
	}
	promauto.With(reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "isobar_ingester_open_tenants",
		Help: "Tenants whose TSDB is open.",
	}, func() float64 { return float64(len(i.Tenants())) })
	if reg != nil {
		reg.MustRegister(&tsdbCollector{i: i})
	}
	return m
}

// deleteTenant drops every series of a tenant whose TSDB closed, so idle
// tenants do not keep series alive in /metrics forever.
func (m *metrics) deleteTenant(id string) {
	m.activeSeries.DeleteLabelValues(id)
	m.ingestedSamples.DeleteLabelValues(id)
	m.rejectedSamples.DeletePartialMatch(prometheus.Labels{"tenant": id})
	m.droppedMetadata.DeleteLabelValues(id)
}

// tsdbFigures are the TSDB metrics worth watching, summed over all open
// tenants. A closed tenant's counters leave the sum, which rate() reads as a
// counter reset.
var tsdbFigures = map[string]struct {
	name string
	typ  prometheus.ValueType
	help string
}{
	"prometheus_tsdb_head_series":                 {"isobar_ingester_tsdb_head_series", prometheus.GaugeValue, "Series in the heads."},
	"prometheus_tsdb_head_chunks":                 {"isobar_ingester_tsdb_head_chunks", prometheus.GaugeValue, "Chunks in the heads."},
	"prometheus_tsdb_head_samples_appended_total": {"isobar_ingester_tsdb_head_samples_appended_total", prometheus.CounterValue, "Samples appended to the heads."},
	"prometheus_tsdb_out_of_order_samples_total":  {"isobar_ingester_tsdb_out_of_order_samples_total", prometheus.CounterValue, "Out-of-order samples rejected."},
	"prometheus_tsdb_wal_corruptions_total":       {"isobar_ingester_tsdb_wal_corruptions_total", prometheus.CounterValue, "WAL corruptions found."},
	"prometheus_tsdb_wal_writes_failed_total":     {"isobar_ingester_tsdb_wal_writes_failed_total", prometheus.CounterValue, "Failed WAL writes."},
	"prometheus_tsdb_wal_page_flushes_total":      {"isobar_ingester_tsdb_wal_page_flushes_total", prometheus.CounterValue, "WAL page flushes."},
	"prometheus_tsdb_wal_truncations_total":       {"isobar_ingester_tsdb_wal_truncations_total", prometheus.CounterValue, "WAL truncations."},
	"prometheus_tsdb_wal_storage_size_bytes":      {"isobar_ingester_tsdb_wal_storage_size_bytes", prometheus.GaugeValue, "Bytes of WAL on disk."},
	"prometheus_tsdb_compactions_total":           {"isobar_ingester_tsdb_compactions_total", prometheus.CounterValue, "Head and block compactions."},
	"prometheus_tsdb_compactions_failed_total":    {"isobar_ingester_tsdb_compactions_failed_total", prometheus.CounterValue, "Failed compactions."},
	"prometheus_tsdb_blocks_loaded":               {"isobar_ingester_tsdb_blocks_loaded", prometheus.GaugeValue, "Blocks open on local disk."},
	"prometheus_tsdb_storage_blocks_bytes":        {"isobar_ingester_tsdb_storage_blocks_bytes", prometheus.GaugeValue, "Bytes of blocks on local disk."},
}

// tsdbCollector re-exports the figures of the tenants' TSDB registries.
type tsdbCollector struct{ i *Ingester }

// Describe sends nothing: the collector is unchecked.
func (*tsdbCollector) Describe(chan<- *prometheus.Desc) {}

func (c *tsdbCollector) Collect(ch chan<- prometheus.Metric) {
	sums := map[string]float64{}
	c.i.mu.Lock()
	regs := make([]*prometheus.Registry, 0, len(c.i.tenants))
	for _, t := range c.i.tenants {
		if t.reg != nil {
			regs = append(regs, t.reg)
		}
	}
	c.i.mu.Unlock()
	for _, reg := range regs {
		families, err := reg.Gather()
		if err != nil {
			continue
		}
		for _, f := range families {
			if _, ok := tsdbFigures[f.GetName()]; ok {
				sums[f.GetName()] += sumFamily(f)
			}
		}
	}
	for src, fig := range tsdbFigures {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(fig.name, fig.help, nil, nil), fig.typ, sums[src])
	}
}

func sumFamily(f *dto.MetricFamily) float64 {
	s := 0.0
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		case m.Untyped != nil:
			s += m.GetUntyped().GetValue()
		}
	}
	return s
}
