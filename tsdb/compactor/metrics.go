package compactor

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a block is marked for deletion, the values of label "reason".
const (
	reasonCompacted = "compacted"
	reasonRetention = "retention"
)

type metrics struct {
	runs                 prometheus.Counter
	runsFailed           prometheus.Counter
	tenantsFailed        prometheus.Counter
	lastSuccessfulRun    prometheus.Gauge
	compactions          prometheus.Counter
	compactionsFailed    prometheus.Counter
	compactionDuration   prometheus.Histogram
	blocksCompacted      prometheus.Counter
	blocksWritten        prometheus.Counter
	samplesCompacted     prometheus.Counter
	blocksMarked         *prometheus.CounterVec
	blocksDeleted        prometheus.Counter
	partialBlocksDeleted prometheus.Counter
	blockDeletionsFailed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		runs: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_runs_total",
			Help: "Compaction runs over all owned tenants started.",
		}),
		runsFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_runs_failed_total",
			Help: "Compaction runs in which at least one tenant failed.",
		}),
		tenantsFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_tenant_cycles_failed_total",
			Help: "Tenant cycles (index update, compaction, retention, deletion) that failed.",
		}),
		lastSuccessfulRun: f.NewGauge(prometheus.GaugeOpts{
			Name: "isobar_compactor_last_successful_run_timestamp_seconds",
			Help: "Unix time at which the last run in which no tenant failed ended.",
		}),
		compactions: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_compactions_total",
			Help: "Compactions (a group of blocks merged into one) completed.",
		}),
		compactionsFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_compactions_failed_total",
			Help: "Compactions that failed.",
		}),
		compactionDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:                           "isobar_compactor_compaction_duration_seconds",
			Help:                           "Time to download, merge and upload one group of blocks.",
			Buckets:                        prometheus.ExponentialBuckets(0.5, 2, 14),
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 100,
		}),
		blocksCompacted: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_blocks_compacted_total",
			Help: "Source blocks merged into new blocks.",
		}),
		blocksWritten: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_blocks_written_total",
			Help: "New blocks uploaded.",
		}),
		samplesCompacted: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_samples_compacted_total",
			Help: "Samples in the new blocks uploaded, after deduplication.",
		}),
		blocksMarked: f.NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_compactor_blocks_marked_for_deletion_total",
			Help: "Blocks marked for deletion, by reason.",
		}, []string{"reason"}),
		blocksDeleted: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_blocks_deleted_total",
			Help: "Blocks deleted after their deletion delay.",
		}),
		partialBlocksDeleted: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_partial_blocks_deleted_total",
			Help: "Block directories without meta.json deleted.",
		}),
		blockDeletionsFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "isobar_compactor_block_deletions_failed_total",
			Help: "Block deletions that failed; they are retried next cycle.",
		}),
	}
	for _, r := range []string{reasonCompacted, reasonRetention} {
		m.blocksMarked.WithLabelValues(r)
	}
	return m
}
