package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// CardinalityQuerier answers cardinality questions about the heads of the
// tenant in the context: the ingester of the process, or the ring's.
type CardinalityQuerier interface {
	Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error)
}

// WithCardinality returns a copy of a that answers /status/tsdb and the
// cardinality endpoints from c.
func (a *API) WithCardinality(c CardinalityQuerier) *API {
	cp := *a
	cp.cardinality = c
	return &cp
}

// Limits of the cardinality endpoints, as Mimir has them.
const (
	defaultCardinalityLimit = 20
	maxCardinalityLimit     = 500
)

// tsdbStatus answers /status/tsdb as Prometheus does, from the heads.
func (a *API) tsdbStatus(r *http.Request) result {
	limit := 10
	if s := r.FormValue("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return failed(badData(errors.New("limit must be a positive number")))
		}
		limit = n
	}
	if a.cardinality == nil {
		return failed(&apiError{typ: errorUnavailable, err: errors.New("no ingester to ask")})
	}
	resp, err := a.cardinality.Cardinality(r.Context(), &rpc.CardinalityRequest{Kind: rpc.CardinalityStatus, Limit: limit})
	if err != nil {
		return failed(queryError(err))
	}
	type stat struct {
		Name  string `json:"name"`
		Value uint64 `json:"value"`
	}
	list := func(name string) []stat {
		out := []stat{}
		for _, l := range resp.Lists {
			if l.Name == name {
				for _, s := range l.Stats {
					out = append(out, stat{s.Name, s.Value})
				}
			}
		}
		return out
	}
	type headStats struct {
		NumSeries     uint64 `json:"numSeries"`
		NumLabelPairs uint64 `json:"numLabelPairs"`
		ChunkCount    uint64 `json:"chunkCount"`
		MinTime       int64  `json:"minTime"`
		MaxTime       int64  `json:"maxTime"`
	}
	return result{data: struct {
		HeadStats                   headStats `json:"headStats"`
		SeriesCountByMetricName     []stat    `json:"seriesCountByMetricName"`
		LabelValueCountByLabelName  []stat    `json:"labelValueCountByLabelName"`
		MemoryInBytesByLabelName    []stat    `json:"memoryInBytesByLabelName"`
		SeriesCountByLabelValuePair []stat    `json:"seriesCountByLabelValuePair"`
	}{
		HeadStats:                   headStats{resp.NumSeries, resp.NumLabelPairs, resp.ChunkCount, resp.MinTime, resp.MaxTime},
		SeriesCountByMetricName:     list(rpc.SeriesCountByMetricName),
		LabelValueCountByLabelName:  list(rpc.LabelValueCountByLabelName),
		MemoryInBytesByLabelName:    list(rpc.MemoryInBytesByLabelName),
		SeriesCountByLabelValuePair: list(rpc.SeriesCountByLabelValuePair),
	}}
}

// cardinalityRequest reads the selector and limit of a cardinality
// endpoint.
func (a *API) cardinalityRequest(r *http.Request, kind rpc.CardinalityKind) (*rpc.CardinalityRequest, error) {
	req := &rpc.CardinalityRequest{Kind: kind, Limit: defaultCardinalityLimit}
	if s := r.FormValue("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxCardinalityLimit {
			return nil, fmt.Errorf("limit must be a number from 0 to %d", maxCardinalityLimit)
		}
		req.Limit = n
	}
	if s := r.FormValue("selector"); s != "" {
		sets, err := parseMatchers(a.parser, []string{s})
		if err != nil {
			return nil, fmt.Errorf("invalid selector: %w", err)
		}
		req.Matchers = rpc.ToLabelMatchers(sets[0])
	}
	return req, nil
}

// cardinalityLabelNames answers Mimir's /cardinality/label_names: the
// label names of the series the selector picks, by their count of values.
func (a *API) cardinalityLabelNames(w http.ResponseWriter, r *http.Request) {
	req, err := a.cardinalityRequest(r, rpc.CardinalityLabelNames)
	if err != nil {
		a.respondError(w, r, badData(err))
		return
	}
	resp, err := a.askCardinality(r, req)
	if err != nil {
		a.respondError(w, r, queryError(err))
		return
	}
	type item struct {
		LabelName        string `json:"label_name"`
		LabelValuesCount uint64 `json:"label_values_count"`
	}
	out := struct {
		LabelValuesCountTotal uint64 `json:"label_values_count_total"`
		LabelNamesCount       int    `json:"label_names_count"`
		Cardinality           []item `json:"cardinality"`
	}{Cardinality: []item{}}
	for _, l := range resp.Lists {
		out.LabelValuesCountTotal = l.Total
		out.LabelNamesCount = len(l.Stats)
		for i, s := range l.Stats {
			if i == req.Limit {
				break
			}
			out.Cardinality = append(out.Cardinality, item{s.Name, s.Value})
		}
	}
	writeJSON(w, out)
}

// cardinalityLabelValues answers Mimir's /cardinality/label_values: for
// each of label_names[], its values by the number of series the selector
// picks that have them.
func (a *API) cardinalityLabelValues(w http.ResponseWriter, r *http.Request) {
	req, err := a.cardinalityRequest(r, rpc.CardinalityLabelValues)
	if err == nil && len(r.Form["label_names[]"]) == 0 {
		err = errors.New("label_names[] is required")
	}
	if err != nil {
		a.respondError(w, r, badData(err))
		return
	}
	req.LabelNames = r.Form["label_names[]"]
	resp, err := a.askCardinality(r, req)
	if err != nil {
		a.respondError(w, r, queryError(err))
		return
	}
	type value struct {
		LabelValue  string `json:"label_value"`
		SeriesCount uint64 `json:"series_count"`
	}
	type label struct {
		LabelName        string  `json:"label_name"`
		LabelValuesCount int     `json:"label_values_count"`
		SeriesCount      uint64  `json:"series_count"`
		Cardinality      []value `json:"cardinality"`
	}
	out := struct {
		SeriesCountTotal uint64  `json:"series_count_total"`
		Labels           []label `json:"labels"`
	}{SeriesCountTotal: resp.NumSeries, Labels: []label{}}
	for _, l := range resp.Lists {
		lb := label{LabelName: l.Name, LabelValuesCount: len(l.Stats), SeriesCount: l.Total, Cardinality: []value{}}
		for i, s := range l.Stats {
			if i == req.Limit {
				break
			}
			lb.Cardinality = append(lb.Cardinality, value{s.Name, s.Value})
		}
		out.Labels = append(out.Labels, lb)
	}
	writeJSON(w, out)
}

// askCardinality asks for every entry: lists are cut once merged.
func (a *API) askCardinality(r *http.Request, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error) {
	if a.cardinality == nil {
		return nil, rpc.Errorf(rpc.CauseUnavailable, "no ingester to ask")
	}
	all := *req
	all.Limit = 0
	return a.cardinality.Cardinality(r.Context(), &all)
}

// activeSeriesWindow is how recent a series' last sample must be for the
// series to be active: the idle time after which an ingester stops
// counting it (Mimir's default).
const activeSeriesWindow = 20 * time.Minute

// activeSeries answers Mimir's /cardinality/active_series: the label sets
// of the series the selector picks that have samples in the last 20
// minutes, at most limit of them (0: all) with a warning when cut.
func (a *API) activeSeries(r *http.Request) (res result) {
	selector := r.FormValue("selector")
	if selector == "" {
		return failed(badData(errors.New("selector is required")))
	}
	sets, err := parseMatchers(a.parser, []string{selector})
	if err != nil {
		return failed(invalidParam(err, "selector"))
	}
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return failed(invalidParam(err, "limit"))
	}
	end := a.now()
	start := end.Add(-activeSeriesWindow)
	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		return failed(queryError(err))
	}
	defer func() {
		if res.finalizer == nil {
			q.Close()
		}
	}()
	hints := &storage.SelectHints{Start: timestamp.FromTime(start), End: timestamp.FromTime(end), Func: "series", Limit: hintLimit(limit)}
	set := q.Select(r.Context(), true, hints, sets[0]...)
	out := []labels.Labels{}
	var warnings annotations.Annotations
	for set.Next() {
		if limit > 0 && len(out) == limit {
			warnings = warnings.Add(errTruncated)
			break
		}
		out = append(out, set.At().Labels())
	}
	if err := set.Err(); err != nil {
		return result{err: queryError(err), finalizer: func() { q.Close() }}
	}
	warnings.Merge(set.Warnings())
	return result{data: out, warnings: warnings, finalizer: func() { q.Close() }}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
