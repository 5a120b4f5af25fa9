package ingester

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

// seriesTracker is a tenant head's series lifecycle callback: it enforces the
// tenant's series limits before a series is created and keeps the counts and
// the ref cache in step with the head.
type seriesTracker struct {
	tenant   string
	limits   func() *limits.Limits
	instance *instanceSeries
	refs     *refCache
	active   prometheus.Gauge

	total     atomic.Int64
	mu        sync.Mutex
	perMetric map[string]int
}

func newSeriesTracker(tenant string, lim func() *limits.Limits, instance *instanceSeries, refs *refCache, active prometheus.Gauge) *seriesTracker {
	return &seriesTracker{tenant: tenant, limits: lim, instance: instance, refs: refs, active: active, perMetric: map[string]int{}}
}

// instanceSeries counts the series of all the tenants of an ingester.
type instanceSeries struct {
	n   atomic.Int64
	max int64 // 0: no limit
}

// PreCreation rejects a new series that would take the ingester or the
// tenant over a limit.
func (t *seriesTracker) PreCreation(lset labels.Labels) error {
	if max := t.instance.max; max > 0 && t.instance.n.Load() >= max {
		return rpc.Errorf(rpc.CauseUnavailable, "this ingester holds %d series, its limit (-ingester.instance-limits.max-series); new series are not created until old ones go: %s",
			max, lset.String())
	}
	l := t.limits()
	if l.MaxSeriesPerTenant > 0 && t.total.Load() >= int64(l.MaxSeriesPerTenant) {
		return rpc.Errorf(rpc.CauseBadData, "tenant %q has %d active series, the limit (-ingester.max-series-per-tenant); new series are rejected: %s",
			t.tenant, l.MaxSeriesPerTenant, lset.String())
	}
	if l.MaxSeriesPerMetric > 0 {
		name := lset.Get(labels.MetricName)
		t.mu.Lock()
		n := t.perMetric[name]
		t.mu.Unlock()
		if n >= l.MaxSeriesPerMetric {
			return rpc.Errorf(rpc.CauseBadData, "metric %q of tenant %q has %d active series, the limit (-ingester.max-series-per-metric); new series are rejected: %s",
				name, t.tenant, l.MaxSeriesPerMetric, lset.String())
		}
	}
	return nil
}

// PostCreation counts a new series.
func (t *seriesTracker) PostCreation(lset labels.Labels) {
	t.instance.n.Add(1)
	t.total.Add(1)
	t.active.Inc()
	name := lset.Get(labels.MetricName)
	t.mu.Lock()
	t.perMetric[name]++
	t.mu.Unlock()
}

// PostDeletion forgets series the head dropped.
func (t *seriesTracker) PostDeletion(series map[chunks.HeadSeriesRef]labels.Labels) {
	t.instance.n.Add(-int64(len(series)))
	t.total.Add(-int64(len(series)))
	t.active.Sub(float64(len(series)))
	t.mu.Lock()
	for _, lset := range series {
		name := lset.Get(labels.MetricName)
		if t.perMetric[name] <= 1 {
			delete(t.perMetric, name)
		} else {
			t.perMetric[name]--
		}
	}
	t.mu.Unlock()
	t.refs.deleted(series)
}
