package frontend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"golang.org/x/sync/errgroup"

	"github.com/isobar-tsdb/isobar/pkg/promapi"
	"github.com/isobar-tsdb/isobar/pkg/shard"
)

// newOuterEngine evaluates the outer queries of shard plans. Their
// selectors read the legs' answers, one point per evaluation time and a
// stale marker after the last of a run, so the lookback does not matter;
// the queriers enforce the query limits on the legs.
func newOuterEngine(p parser.Parser) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Parser:               p,
		MaxSamples:           math.MaxInt,
		Timeout:              time.Hour, // the request's context bounds it
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
}

// planFor returns how q is answered sharded over pieces split pieces of
// steps evaluation times each, or nil: when the tenant's shard count
// (capped by MaxShards, and by what the query read last time) is under 2,
// q has nothing shardable, or even 2 shards a leg would pass
// -query-frontend.max-sharded-queries.
func (f *Frontend) planFor(id, query string, pieces int, steps int64) *shardPlan {
	most := f.limits.For(id).QueryShardingTotalShards
	if f.cfg.MaxShards > 0 {
		most = min(most, f.cfg.MaxShards)
	}
	if most < 2 || f.cfg.MaxShardedQueries < 2 {
		return nil
	}
	expr, err := f.parser.ParseExpr(query)
	if err != nil {
		return nil // the querier words the error
	}
	shards := f.sizes.shards(id, query, steps, most)
	plan := planShards(f.parser, expr, max(shards, 2))
	if plan == nil {
		return nil
	}
	if shards < most {
		f.fewerShards.Inc()
	}
	if shards < 2 {
		return nil
	}
	budget := f.cfg.MaxShardedQueries / max(pieces, 1)
	if plan.requests() <= budget {
		return plan
	}
	// r(n) = n*sharded + whole, linear in the shards n of a leg.
	sharded, whole := 0, 0
	for _, l := range plan.legs {
		if len(l.queries) > 1 {
			sharded++
		} else {
			whole++
		}
	}
	if n := (budget - whole) / sharded; n >= 2 {
		return planShards(f.parser, expr, n)
	}
	return nil
}

// fetchSharded answers the evaluation times [start, end] of q by its shard
// plan: the queriers evaluate the legs, the frontend the outer query.
func (f *Frontend) fetchSharded(ctx context.Context, id string, q *rangeQuery, start, end int64, st *queryStats) (*matrix, *errorResponse, error) {
	body, er, err := f.evalSharded(ctx, id, q, start, end, st)
	if err != nil || er != nil {
		return nil, er, err
	}
	m, err := decodeMatrix(body)
	return m, nil, err
}

// evalSharded evaluates q's plan over [start, end] (an instant query when
// q.step is 0) and encodes the answer as the querier would.
func (f *Frontend) evalSharded(ctx context.Context, id string, q *rangeQuery, start, end int64, st *queryStats) ([]byte, *errorResponse, error) {
	var buf bytes.Buffer
	er, err := f.evalShardedValue(ctx, id, q, start, end, st, func(v parser.Value, warnings, infos []string) error {
		return promapi.Encode(&buf, func(s *jsoniter.Stream) {
			promapi.WriteSuccess(s, &promapi.QueryData{ResultType: v.Type(), Result: v}, warnings, infos)
		})
	})
	if err != nil || er != nil {
		return nil, er, err
	}
	return buf.Bytes(), nil, nil
}

// evalShardedValue evaluates q's plan and hands the answer, its warnings
// and infos to use, which must not keep the answer: the engine reuses its
// memory once the query is closed. It returns a querier's error answer or
// a failure to ask (or of use).
func (f *Frontend) evalShardedValue(ctx context.Context, id string, q *rangeQuery, start, end int64, st *queryStats, use func(v parser.Value, warnings, infos []string) error) (*errorResponse, error) {
	src := &legSource{f: f, id: id, q: q, start: start, end: end, st: st}
	var (
		qry promql.Query
		err error
	)
	if q.step == 0 {
		qry, err = f.engine.NewInstantQuery(ctx, src, nil, q.plan.outer, time.UnixMilli(start))
	} else {
		qry, err = f.engine.NewRangeQuery(ctx, src, nil, q.plan.outer, time.UnixMilli(start), time.UnixMilli(end), time.Duration(q.step)*time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("prepare the outer query %q of a sharded query: %w", q.plan.outer, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if er, err := src.failure(); er != nil || err != nil {
		return er, err
	}
	if res.Err != nil {
		return executionError(res.Err), nil
	}
	warnings, infos := res.Warnings.AsStrings("", 0, 0)
	src.mu.Lock()
	warnings, infos = union(warnings, src.warnings), union(infos, src.infos)
	src.mu.Unlock()
	if err := use(res.Value, warnings, infos); err != nil {
		return nil, fmt.Errorf("encode a sharded answer: %w", err)
	}
	return nil, nil
}

// executionError answers an error of the outer query as a querier would.
func executionError(err error) *errorResponse {
	code, typ := http.StatusUnprocessableEntity, "execution"
	var timeout promql.ErrQueryTimeout
	var canceled promql.ErrQueryCanceled
	switch {
	case errors.As(err, &timeout):
		code, typ = http.StatusServiceUnavailable, "timeout"
	case errors.As(err, &canceled):
		code, typ = 499, "canceled"
	}
	var buf bytes.Buffer
	_ = promapi.Encode(&buf, func(s *jsoniter.Stream) { promapi.WriteFailure(s, typ, err.Error()) })
	return &errorResponse{code: code, header: http.Header{"Content-Type": {"application/json"}}, body: buf.Bytes()}
}

// legSource is the storage of an outer query: each embedded selector reads
// the answers of its leg, asked of the queriers when the engine selects it
// (the engine selects every selector before it reads any, so the legs run
// in parallel).
type legSource struct {
	f          *Frontend
	id         string
	q          *rangeQuery
	start, end int64
	st         *queryStats

	mu              sync.Mutex
	errResp         *errorResponse // the first querier answer other than 200
	err             error          // the first failure to ask
	warnings, infos []string
}

func (s *legSource) Querier(int64, int64) (storage.Querier, error) { return s, nil }

func (s *legSource) failure() (*errorResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errResp, s.err
}

func (s *legSource) fail(er *errorResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errResp == nil && s.err == nil {
		s.errResp, s.err = er, err
	}
}

func (s *legSource) Select(ctx context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	idx := -1
	for _, m := range ms {
		if m.Name == embeddedLabel {
			idx, _ = strconv.Atoi(m.Value)
		}
	}
	if idx < 0 || idx >= len(s.q.plan.legs) {
		return storage.ErrSeriesSet(fmt.Errorf("no leg for selector %v", ms))
	}
	set := &legSet{done: make(chan struct{})}
	go func() {
		defer close(set.done)
		set.series, set.err = s.runLeg(ctx, s.q.plan.legs[idx])
	}()
	return set
}

// runLeg asks the queriers for every query of leg, in parallel within the
// query's share of the queue, and returns the series in label order.
func (s *legSource) runLeg(ctx context.Context, leg shardLeg) ([]storage.Series, error) {
	answers := make([]promql.Matrix, len(leg.queries))
	g, gctx := errgroup.WithContext(ctx)
	for i, query := range leg.queries {
		g.Go(func() error {
			select {
			case s.st.slots <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-s.st.slots }()
			m, err := s.ask(gctx, query)
			answers[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all promql.Matrix
	for i, m := range answers {
		for _, series := range m {
			if leg.labelled {
				series.Metric = labels.NewBuilder(series.Metric).Set(shard.Label, strconv.Itoa(i)).Labels()
			}
			all = append(all, markGaps(series, s.end, s.q.step))
		}
	}
	slices.SortFunc(all, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
	out := make([]storage.Series, len(all))
	for i := range all {
		out[i] = promql.NewStorageSeries(all[i])
	}
	return out, nil
}

// errLegFailed stops a leg whose failure is kept in the source.
var errLegFailed = errors.New("a leg of a sharded query failed")

// ask sends one leg query for the source's range to a querier, for its
// series (promapi.SeriesProtobuf).
func (s *legSource) ask(ctx context.Context, query string) (promql.Matrix, error) {
	form := s.q.form(query, s.start, s.end)
	req, err := s.f.downstreamRequest(ctx, s.id, http.MethodPost, s.q.path, "", []byte(form.Encode()), "application/x-www-form-urlencoded")
	if err != nil {
		s.fail(nil, err)
		return nil, errLegFailed
	}
	req.Header.Set("Accept", promapi.SeriesProtobuf)
	s.st.requests.Add(1)
	s.st.shardRequests.Add(1)
	s.f.pieces.Inc()
	resp, err := s.f.queue.roundTrip(ctx, s.id, req)
	if err != nil {
		s.fail(nil, err)
		return nil, errLegFailed
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.fail(nil, fmt.Errorf("read a querier's answer: %w", err))
		return nil, errLegFailed
	}
	if resp.StatusCode != http.StatusOK {
		s.fail(&errorResponse{code: resp.StatusCode, header: resp.Header, body: body}, nil)
		return nil, errLegFailed
	}
	if ct := resp.Header.Get("Content-Type"); ct != promapi.SeriesProtobuf {
		s.fail(nil, fmt.Errorf("a querier answered a leg of a sharded query with %q, not %s: is it older than the frontend?", ct, promapi.SeriesProtobuf))
		return nil, errLegFailed
	}
	s.st.fetchedBytes.Add(int64(len(body)))
	s.st.cost.add(resp.Header)
	m, err := promapi.UnmarshalSeries(body)
	if err != nil {
		s.fail(nil, err)
		return nil, errLegFailed
	}
	s.mu.Lock()
	s.warnings = union(s.warnings, resp.Header.Values(promapi.WarningHeader))
	s.infos = union(s.infos, resp.Header.Values(promapi.InfoHeader))
	s.mu.Unlock()
	return m, nil
}

// markGaps adds a stale marker at the evaluation time after each run of
// points of s, up to end: the outer engine then sees no sample where the
// leg had none, whatever its lookback.
func markGaps(s promql.Series, end, step int64) promql.Series {
	if step <= 0 {
		return s // one evaluation time
	}
	times := make([]int64, 0, len(s.Floats)+len(s.Histograms))
	for _, p := range s.Floats {
		times = append(times, p.T)
	}
	for _, p := range s.Histograms {
		times = append(times, p.T)
	}
	slices.Sort(times)
	stale := math.Float64frombits(value.StaleNaN)
	added := false
	for i, t := range times {
		next := t + step
		if next <= end && (i+1 == len(times) || times[i+1] != next) {
			s.Floats = append(s.Floats, promql.FPoint{T: next, F: stale})
			added = true
		}
	}
	if added {
		slices.SortFunc(s.Floats, func(a, b promql.FPoint) int { return cmpInt(a.T, b.T) })
	}
	return s
}

func (s *legSource) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (s *legSource) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (s *legSource) Close() error { return nil }

// legSet is the answer of a leg, once its queries are back.
type legSet struct {
	done   chan struct{}
	series []storage.Series
	err    error
	next   int
}

func (s *legSet) Next() bool {
	<-s.done
	if s.err != nil || s.next >= len(s.series) {
		return false
	}
	s.next++
	return true
}

func (s *legSet) At() storage.Series { return s.series[s.next-1] }

func (s *legSet) Err() error {
	<-s.done
	return s.err
}

func (s *legSet) Warnings() annotations.Annotations { return nil }
