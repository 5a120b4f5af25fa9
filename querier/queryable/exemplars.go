package queryable

import (
	"cmp"
	"context"
	"slices"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

var _ storage.ExemplarQueryable = (*Ingesters)(nil)

// ExemplarQuerier returns a querier of the exemplars of the tenant in ctx.
// Its Select asks a read quorum of the ingesters, as Select of series
// does, and merges their answers: one entry per series, sorted by labels,
// each with the union of the replicas' exemplars sorted by timestamp.
func (q *Ingesters) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	if _, err := tenant.From(ctx); err != nil {
		return nil, err
	}
	return &exemplarQuerier{q: q, ctx: ctx}, nil
}

type exemplarQuerier struct {
	q   *Ingesters
	ctx context.Context // Select takes none: the tenant travels here
}

func (e *exemplarQuerier) Select(start, end int64, matchers ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	req := &rpc.ExemplarsRequest{Start: start, End: end, Matchers: make([][]*prompb.LabelMatcher, 0, len(matchers))}
	for _, ms := range matchers {
		req.Matchers = append(req.Matchers, rpc.ToLabelMatchers(ms))
	}
	answers, err := each(e.ctx, e.q, func(ctx context.Context, c *rpc.PooledIngester) ([]exemplar.QueryResult, error) {
		resp, err := c.QueryExemplars(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp.Results(), nil
	})
	if err != nil {
		return nil, err
	}
	return mergeExemplars(answers), nil
}

// mergeExemplars merges the answers of replicas: series with equal labels
// become one, sorted by labels as Prometheus sorts them, and their
// exemplars are sorted by timestamp (see compareExemplars), with copies
// (equal timestamp, value and labels) kept once.
func mergeExemplars(answers [][]exemplar.QueryResult) []exemplar.QueryResult {
	var all []exemplar.QueryResult
	for _, a := range answers {
		all = append(all, a...)
	}
	slices.SortStableFunc(all, func(a, b exemplar.QueryResult) int { return labels.Compare(a.SeriesLabels, b.SeriesLabels) })
	out := make([]exemplar.QueryResult, 0, len(all))
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && labels.Equal(all[i].SeriesLabels, all[j].SeriesLabels) {
			j++
		}
		merged := exemplar.QueryResult{SeriesLabels: all[i].SeriesLabels, Exemplars: all[i].Exemplars}
		if j > i+1 {
			var es []exemplar.Exemplar
			for _, r := range all[i:j] {
				es = append(es, r.Exemplars...)
			}
			slices.SortStableFunc(es, compareExemplars)
			merged.Exemplars = slices.CompactFunc(es, func(a, b exemplar.Exemplar) bool { return compareExemplars(a, b) == 0 })
		}
		out = append(out, merged)
		i = j
	}
	return out
}

// compareExemplars orders as an ingester's exemplar storage keeps the
// exemplars of one series: by timestamp, then value, then label hash
// (labels break hash ties). Unlike exemplar.Compare it orders NaN values
// (before all others), so that copies of a NaN exemplar sort next to each
// other and merge.
func compareExemplars(a, b exemplar.Exemplar) int {
	if c := cmp.Compare(a.Ts, b.Ts); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Value, b.Value); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Labels.Hash(), b.Labels.Hash()); c != 0 {
		return c
	}
	return labels.Compare(a.Labels, b.Labels)
}

// MetricMetadata returns the metric metadata of the tenant in ctx from a
// read quorum of the ingesters: per family the union of the replicas'
// descriptions, each once. It satisfies the querier API's
// MetadataQuerier and limits as an ingester does: metric=="" means all
// families, and limit and limitPerMetric (<= 0: none) bound the families
// and the descriptions per family. Which families and descriptions a
// limit keeps is unspecified in Prometheus; here it keeps the first by
// name, and by type, help and unit.
func (q *Ingesters) MetricMetadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error) {
	// The family limit is applied after the union, not by the ingesters:
	// a replica cuts at families of its choice, and a family another
	// replica kept would then miss the entries only the cutting replica
	// holds. Per-family cuts are safe to pass on: every replica answering
	// for a family sends min(limitPerMetric, what it holds) entries of it.
	req := &rpc.MetadataRequest{Metric: metric, LimitPerMetric: limitPerMetric}
	answers, err := each(ctx, q, func(ctx context.Context, c *rpc.PooledIngester) (map[string][]metadata.Metadata, error) {
		resp, err := c.QueryMetadata(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp.Families(), nil
	})
	if err != nil {
		return nil, err
	}
	return mergeMetadata(answers, limit, limitPerMetric), nil
}

// mergeMetadata unions the replicas' metadata and cuts it to the limits.
// Each replica applied limitPerMetric to what it holds, so the union holds
// at least as many descriptions per family as the limit allows (or all
// there are).
func mergeMetadata(answers []map[string][]metadata.Metadata, limit, limitPerMetric int) map[string][]metadata.Metadata {
	all := map[string][]metadata.Metadata{}
	for _, a := range answers {
		for name, ms := range a {
			for _, m := range ms {
				if !slices.Contains(all[name], m) {
					all[name] = append(all[name], m)
				}
			}
		}
	}
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make(map[string][]metadata.Metadata, len(names))
	for _, name := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		ms := all[name]
		slices.SortFunc(ms, func(a, b metadata.Metadata) int {
			return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Help, b.Help), cmp.Compare(a.Unit, b.Unit))
		})
		if limitPerMetric > 0 && len(ms) > limitPerMetric {
			ms = ms[:limitPerMetric]
		}
		out[name] = ms
	}
	return out
}
