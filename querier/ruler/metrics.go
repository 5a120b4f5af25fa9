package ruler

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	tenants       prometheus.Gauge
	groups        prometheus.Gauge
	syncs         *prometheus.CounterVec
	syncDuration  prometheus.Histogram
	evaluations   *prometheus.CounterVec
	missed        *prometheus.CounterVec
	groupDuration prometheus.Histogram
	writeFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	native := func(o prometheus.HistogramOpts) prometheus.HistogramOpts {
		o.NativeHistogramBucketFactor = 1.1
		o.NativeHistogramMaxBucketNumber = 100
		return o
	}
	return &metrics{
		tenants: f.NewGauge(prometheus.GaugeOpts{
			Name: "isobar_ruler_tenants",
			Help: "Tenants with rule groups this ruler evaluates.",
		}),
		groups: f.NewGauge(prometheus.GaugeOpts{
			Name: "isobar_ruler_groups",
			Help: "Rule groups this ruler evaluates: the ones the ruler ring gives it.",
		}),
		syncs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ruler_syncs_total",
			Help: "Reads of the rule groups from storage, by result.",
		}, []string{"result"}),
		syncDuration: f.NewHistogram(native(prometheus.HistogramOpts{
			Name:    "isobar_ruler_sync_duration_seconds",
			Help:    "Time to read the rule groups and hand them to the rule managers.",
			Buckets: prometheus.DefBuckets,
		})),
		evaluations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ruler_group_evaluations_total",
			Help: "Evaluations of rule groups, by tenant.",
		}, []string{"tenant"}),
		missed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ruler_missed_iterations_total",
			Help: "Evaluations of rule groups that did not happen because the previous one was late by a whole interval or more, by tenant.",
		}, []string{"tenant"}),
		groupDuration: f.NewHistogram(native(prometheus.HistogramOpts{
			Name:    "isobar_ruler_group_evaluation_duration_seconds",
			Help:    "Time to evaluate a rule group once.",
			Buckets: prometheus.DefBuckets,
		})),
		writeFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_ruler_write_failures_total",
			Help: "Rule evaluations whose results the distributor refused, by tenant.",
		}, []string{"tenant"}),
	}
}
