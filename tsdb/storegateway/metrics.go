package storegateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	blocksLoaded   prometheus.Gauge
	blocksOpen     prometheus.Gauge
	indexBytes     prometheus.Gauge
	indexDownloads prometheus.Counter
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	cacheBytes     prometheus.Gauge
	cacheErrors    *prometheus.CounterVec // by reason
	rangeReads     prometheus.Counter
	rangeReadBytes prometheus.Counter
	queryDuration  *prometheus.HistogramVec
	syncs          prometheus.Counter
	syncFailures   prometheus.Counter
	// blocksLoadedOnDemand counts blocks a query asked for before a sync
	// had loaded them.
	blocksLoadedOnDemand prometheus.Counter
	lastSyncDuration     prometheus.Gauge
}

// Reasons of isobar_store_gateway_chunk_cache_errors_total.
const (
	// cacheErrorUnavailable: a request to the cache backend failed.
	cacheErrorUnavailable = "unavailable"
	// cacheErrorCorrupt: a cached value failed verification.
	cacheErrorCorrupt = "corrupt"
)

// newMetrics registers the store-gateway's metrics; the chunk cache's carry
// the label backend=cacheBackend.
func newMetrics(reg prometheus.Registerer, cacheBackend string) *metrics {
	f := promauto.With(reg)
	const ns = "isobar_store_gateway_"
	backend := prometheus.Labels{"backend": cacheBackend}
	m := &metrics{
		blocksLoaded: f.NewGauge(prometheus.GaugeOpts{
			Name: ns + "blocks_loaded",
			Help: "Blocks owned by this store-gateway whose index is on local disk.",
		}),
		blocksOpen: f.NewGauge(prometheus.GaugeOpts{
			Name: ns + "blocks_open",
			Help: "Blocks whose index reader is open (mmapped).",
		}),
		indexBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: ns + "index_bytes",
			Help: "Bytes of the index files of loaded blocks on local disk.",
		}),
		indexDownloads: f.NewCounter(prometheus.CounterOpts{
			Name: ns + "index_downloads_total",
			Help: "Index files downloaded from the bucket.",
		}),
		cacheHits: f.NewCounter(prometheus.CounterOpts{
			Name:        ns + "chunk_cache_hits_total",
			Help:        "Chunks found in the chunk cache, and valid.",
			ConstLabels: backend,
		}),
		cacheMisses: f.NewCounter(prometheus.CounterOpts{
			Name:        ns + "chunk_cache_misses_total",
			Help:        "Chunks not found in the chunk cache (or invalid there, or the cache failed), read from the bucket.",
			ConstLabels: backend,
		}),
		cacheBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: ns + "chunk_cache_bytes",
			Help: "Bytes held by the in-memory chunk cache.",
		}),
		cacheErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name:        ns + "chunk_cache_errors_total",
			Help:        "Chunk cache failures, each served from the bucket: requests to the backend that failed (reason unavailable) and cached chunks that failed verification (reason corrupt).",
			ConstLabels: backend,
		}, []string{"reason"}),
		rangeReads: f.NewCounter(prometheus.CounterOpts{
			Name: ns + "bucket_range_reads_total",
			Help: "Byte-range reads of chunk segments from the bucket.",
		}),
		rangeReadBytes: f.NewCounter(prometheus.CounterOpts{
			Name: ns + "bucket_range_read_bytes_total",
			Help: "Bytes read from chunk segments in the bucket.",
		}),
		queryDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        ns + "query_duration_seconds",
			Help:                        "Time to answer a store-gateway request.",
			Buckets:                     prometheus.DefBuckets,
			NativeHistogramBucketFactor: 1.1,
		}, []string{"method"}),
		syncs: f.NewCounter(prometheus.CounterOpts{
			Name: ns + "syncs_total",
			Help: "Syncs of the blocks with the bucket indexes.",
		}),
		syncFailures: f.NewCounter(prometheus.CounterOpts{
			Name: ns + "sync_failures_total",
			Help: "Syncs that failed, in part or in whole.",
		}),
		blocksLoadedOnDemand: f.NewCounter(prometheus.CounterOpts{
			Name: ns + "blocks_loaded_on_demand_total",
			Help: "Blocks loaded because a query asked for them before a sync had.",
		}),
		lastSyncDuration: f.NewGauge(prometheus.GaugeOpts{
			Name: ns + "last_sync_duration_seconds",
			Help: "How long the last sync took.",
		}),
	}
	m.cacheErrors.WithLabelValues(cacheErrorUnavailable)
	m.cacheErrors.WithLabelValues(cacheErrorCorrupt)
	return m
}
