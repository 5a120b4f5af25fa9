package distributor

import (
	"context"
	"fmt"
	"slices"

	"github.com/isobar-tsdb/isobar/ingest/hatracker"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/validation"
)

// haDeduped says what deduplication did to a request.
type haDeduped struct {
	samples int // samples dropped from replicas not elected
	// cluster, replica and elected name one dropped replica and the
	// elected one, for the answer when nothing else is left.
	cluster, replica, elected string
}

// haDecision is the decision for one (cluster, replica) of a request.
type haDecision struct {
	cluster, replica string
	decision         hatracker.Decision
	elected          string
	dropped          int // samples
}

// dedupe keeps, of the series that carry both the tenant's HA cluster and
// replica labels, those of each cluster's elected replica, without the
// replica label; it decides series by series, so a request that mixes
// clusters (federation, a proxy) keeps the right ones of each. The kept
// series move to the front of req, which is truncated to them. Series of a
// cluster over the tenant's limit of clusters are refused (inv).
func (d *Distributor) dedupe(ctx context.Context, tenantID string, l *limits.Limits, req *rwproto.Request, inv *invalidSeries) (haDeduped, error) {
	var (
		out       haDeduped
		decisions []haDecision // a request holds one pair, or a few
		kept      int
	)
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		keep := true
		cluster, replica, at := haLabels(l, ts)
		if at >= 0 && len(ts.Labels) == ts.NumLabels {
			j := slices.IndexFunc(decisions, func(h haDecision) bool { return h.cluster == cluster && h.replica == replica })
			if j < 0 {
				dec, elected, err := d.ha.Decide(ctx, tenantID, cluster, replica, l.HAMaxClusters)
				if err != nil {
					return out, rpc.Errorf(rpc.CauseUnavailable, "%v", err)
				}
				decisions = append(decisions, haDecision{cluster: cluster, replica: replica, decision: dec, elected: elected})
				j = len(decisions) - 1
			}
			switch h := &decisions[j]; h.decision {
			case hatracker.Accept:
				if at < len(ts.Labels)/2 {
					// The replica label sorts early (__replica__): moving
					// the few labels before it moves less than the rest.
					copy(ts.Labels[1:at+1], ts.Labels[:at])
					ts.Labels = ts.Labels[1:]
				} else {
					ts.Labels = slices.Delete(ts.Labels, at, at+1)
				}
				ts.NumLabels--
				ts.Raw = nil // encoded again when forwarded
			case hatracker.Drop:
				n := len(ts.Samples) + len(ts.Histograms)
				out.samples += n
				out.cluster, out.replica, out.elected = cluster, replica, h.elected
				decisions[j].dropped += n
				keep = false
			case hatracker.TooManyClusters:
				verr := validation.Rejected(validation.TooManyHAClusters, ts, fmt.Errorf("the tenant has %d HA clusters, its limit (-distributor.ha-tracker.max-clusters): cluster %q is not tracked", l.HAMaxClusters, cluster))
				inv.add(verr)
				d.discardedSamples.WithLabelValues(tenantID, string(verr.Reason)).Add(float64(len(ts.Samples) + len(ts.Histograms)))
				keep = false
			}
		}
		if !keep {
			continue
		}
		if kept != i {
			req.Timeseries[kept], req.Timeseries[i] = req.Timeseries[i], req.Timeseries[kept]
		}
		kept++
	}
	req.Timeseries = req.Timeseries[:kept]
	for _, h := range decisions {
		if h.dropped > 0 {
			d.dedupedSamples.WithLabelValues(tenantID, h.cluster).Add(float64(h.dropped))
		}
	}
	return out, nil
}

// haLabels finds the series' HA cluster and replica, and where its replica
// label is; at is -1 unless it carries both.
func haLabels(l *limits.Limits, ts *rwproto.TimeSeries) (cluster, replica string, at int) {
	at = -1
	haveCluster := false
	for k, lb := range ts.Labels {
		switch lb.Name {
		case l.HAClusterLabel:
			cluster, haveCluster = lb.Value, true
		case l.HAReplicaLabel:
			replica, at = lb.Value, k
		}
	}
	if !haveCluster || at < 0 {
		return "", "", -1
	}
	return cluster, replica, at
}

// err is the answer to a request all of whose samples came from
// replicas not elected.
func (h haDeduped) err() error {
	return rpc.Errorf(rpc.CauseDeduplicated, "%d samples of replica %q of HA cluster %q dropped: %q is its elected replica", h.samples, h.replica, h.cluster, h.elected)
}
