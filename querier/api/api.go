package api

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/isobar-tsdb/isobar/pkg/promapi"
)

const (
	// maxWarnings and maxInfos cap the annotations in a response, as in
	// Prometheus.
	maxWarnings = 10
	maxInfos    = 10

	// checkContextEvery is how many series the series endpoint reads
	// between checks of the request context.
	checkContextEvery = 128
)

// errTruncated is the warning added when "limit" cut a result short.
var errTruncated = errors.New("results truncated due to limit")

// MetadataQuerier returns metric metadata for the metadata endpoint.
type MetadataQuerier interface {
	// MetricMetadata returns metadata per metric family name for the tenant in ctx. metric=="" means all;
	// limit<=0 / limitPerMetric<=0 mean unlimited.
	MetricMetadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error)
}

// Config holds the options of the API.
type Config struct {
	// EnableExperimentalFunctions makes format_query and query_exemplars
	// accept experimental PromQL functions. It should match the engine's
	// parser options (set by the app).
	EnableExperimentalFunctions bool `yaml:"-"`
	// DefaultMetadataWindow is how far back from end (or now) series,
	// labels and label values look when the request has no start; 0 is
	// all time, as Prometheus does.
	DefaultMetadataWindow time.Duration `yaml:"series_and_labels_default_window"`
}

// RegisterFlags registers the API's flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.DefaultMetadataWindow, "querier.series-and-labels-default-window", 24*time.Hour, "How far back from end (or now) series, labels and label values requests without a start look: a tool that asks for every label of all time reads one day, not the whole bucket. 0 means all time.")
}

// BuildInfo is the answer of the status/buildinfo endpoint.
type BuildInfo struct {
	// Version is the release version, e.g. "1.2.3".
	Version string `json:"version"`
	// Revision is the VCS revision built.
	Revision string `json:"revision"`
	// Branch is the VCS branch built.
	Branch string `json:"branch"`
	// BuildUser is who built the binary, e.g. "user@host".
	BuildUser string `json:"buildUser"`
	// BuildDate is when the binary was built.
	BuildDate string `json:"buildDate"`
	// GoVersion is the Go version used to build.
	GoVersion string `json:"goVersion"`
}

// API serves the Prometheus HTTP query API. Create it with New.
type API struct {
	engine    promql.QueryEngine
	queryable storage.Queryable
	exemplars storage.ExemplarQueryable
	meta      MetadataQuerier
	// cardinality is nil until WithCardinality.
	cardinality CardinalityQuerier
	build       BuildInfo
	logger      *slog.Logger
	parser      parser.Parser
	now         func() time.Time
	// metadataWindow is Config.DefaultMetadataWindow.
	metadataWindow time.Duration
}

// New returns an API that evaluates queries with engine over queryable and
// reads exemplars and metadata from exemplars and meta. exemplars and meta
// may be nil, in which case their endpoints answer with empty results.
func New(engine promql.QueryEngine, queryable storage.Queryable, exemplars storage.ExemplarQueryable, meta MetadataQuerier, build BuildInfo, logger *slog.Logger) *API {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{
		engine:    engine,
		queryable: queryable,
		exemplars: exemplars,
		meta:      meta,
		build:     build,
		logger:    logger,
		parser:    parser.NewParser(parser.Options{}),
		now:       time.Now,
	}
}

// WithConfig returns a copy of a that uses cfg.
func (a *API) WithConfig(cfg Config) *API {
	c := *a
	c.parser = parser.NewParser(parser.Options{EnableExperimentalFunctions: cfg.EnableExperimentalFunctions})
	c.metadataWindow = cfg.DefaultMetadataWindow
	return &c
}

// Register mounts every endpoint under prefix (for example "/api/v1") on
// mux. It may be called several times with different prefixes.
func (a *API) Register(mux *http.ServeMux, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	for _, r := range []struct {
		e promapi.Endpoint
		f handlerFunc
	}{
		{promapi.Query, a.query},
		{promapi.QueryRange, a.queryRange},
		{promapi.QueryExemplars, a.queryExemplars},
		{promapi.FormatQuery, a.formatQuery},
		{promapi.Labels, a.labelNames},
		{promapi.LabelValues, a.labelValues},
		{promapi.Series, a.series},
		{promapi.Metadata, a.metricMetadata},
		{promapi.BuildInfo, a.buildInfo},
		{promapi.StatusTSDB, a.tsdbStatus},
	} {
		r.e.Register(mux, prefix, a.wrap(r.f))
	}
	promapi.CardinalityLabelNames.Register(mux, prefix, http.HandlerFunc(a.cardinalityLabelNames))
	promapi.CardinalityLabelValues.Register(mux, prefix, http.HandlerFunc(a.cardinalityLabelValues))
	promapi.CardinalityActiveSeries.Register(mux, prefix, a.wrap(a.activeSeries))
}

// result is what a handler produces: data or an error, annotations, and a
// finalizer to run once the response has been written.
type result struct {
	data      any
	err       *apiError
	warnings  annotations.Annotations
	finalizer func()
	// samples is the promapi.SamplesHeader of a query's answer; "": none.
	samples string
}

type handlerFunc func(r *http.Request) result

func failed(err *apiError) result {
	return result{err: err}
}

// wrap turns a handlerFunc into an http.HandlerFunc writing the response
// envelope. As in Prometheus, a result without data and without error is
// answered with 204 No Content.
func (a *API) wrap(f handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res := f(r)
		if res.finalizer != nil {
			defer res.finalizer()
		}
		if res.err != nil {
			a.respondError(w, r, res.err)
			return
		}
		if res.data == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if res.samples != "" {
			w.Header().Set(promapi.SamplesHeader, res.samples)
		}
		a.respond(w, r, res.data, res.warnings)
	}
}

func (a *API) respond(w http.ResponseWriter, r *http.Request, data any, annos annotations.Annotations) {
	warnings, infos := annos.AsStrings(r.FormValue("query"), maxWarnings, maxInfos)
	if d, ok := data.(*promapi.QueryData); ok && promapi.AcceptsSeries(r) {
		a.respondSeries(w, r, d, warnings, infos)
		return
	}
	a.send(w, r, http.StatusOK, func(s *jsoniter.Stream) {
		promapi.WriteSuccess(s, data, warnings, infos)
	})
}

// respondSeries answers a query-frontend that evaluates d further itself
// (promapi.SeriesProtobuf).
func (a *API) respondSeries(w http.ResponseWriter, r *http.Request, d *promapi.QueryData, warnings, infos []string) {
	b, err := promapi.MarshalSeries(d.Result)
	if err != nil {
		a.respondError(w, r, &apiError{typ: errorBadData, err: err})
		return
	}
	h := w.Header()
	h.Set("Content-Type", promapi.SeriesProtobuf)
	h[promapi.WarningHeader] = warnings
	h[promapi.InfoHeader] = infos
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (a *API) respondError(w http.ResponseWriter, r *http.Request, apiErr *apiError) {
	a.send(w, r, apiErr.typ.statusCode(), func(s *jsoniter.Stream) {
		promapi.WriteFailure(s, string(apiErr.typ), apiErr.err.Error())
	})
}

// send encodes a JSON response with write and sends it with code. If
// encoding fails before anything was sent, the client gets a plain 500 as
// from Prometheus; later failures (usually a client that went away) can only
// be logged.
func (a *API) send(w http.ResponseWriter, r *http.Request, code int, write func(*jsoniter.Stream)) {
	out := &responseWriter{w: w, code: code}
	if err := promapi.Encode(out, write); err != nil {
		if out.started {
			a.logger.Error("error writing response", "url", r.URL, "bytes_written", out.written, "err", err)
			return
		}
		a.logger.Error("error marshaling response", "url", r.URL, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// responseWriter sets the JSON content type and the status code right
// before the first bytes of the body go out.
type responseWriter struct {
	w       http.ResponseWriter
	code    int
	started bool
	written int
}

// Write implements io.Writer.
func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.started {
		rw.started = true
		rw.w.Header().Set("Content-Type", "application/json")
		rw.w.WriteHeader(rw.code)
	}
	n, err := rw.w.Write(p)
	rw.written += n
	return n, err
}

func (a *API) query(r *http.Request) (res result) {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return failed(invalidParam(err, "limit"))
	}
	ts, err := parseTimeParam(r, "time", a.now())
	if err != nil {
		return failed(invalidParam(err, "time"))
	}
	ctx := r.Context()
	timeout, apiErr := parseTimeout(r)
	if apiErr != nil {
		return failed(apiErr)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	opts, err := queryOpts(r)
	if err != nil {
		return failed(badData(err))
	}
	qry, err := a.engine.NewInstantQuery(ctx, a.queryable, opts, r.FormValue("query"), ts)
	if err != nil {
		return failed(constructionError(err))
	}
	// Close the query here unless a finalizer will, also on panic.
	defer func() {
		if res.finalizer == nil {
			qry.Close()
		}
	}()
	return execQuery(ctx, r, qry, limit)
}

func (a *API) queryRange(r *http.Request) (res result) {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return failed(invalidParam(err, "limit"))
	}
	rng, apiErr := parseRange(r)
	if apiErr != nil {
		return failed(apiErr)
	}
	ctx := r.Context()
	timeout, apiErr := parseTimeout(r)
	if apiErr != nil {
		return failed(apiErr)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	opts, err := queryOpts(r)
	if err != nil {
		return failed(badData(err))
	}
	qry, err := a.engine.NewRangeQuery(ctx, a.queryable, opts, r.FormValue("query"), rng.start, rng.end, rng.step)
	if err != nil {
		return failed(constructionError(err))
	}
	defer func() {
		if res.finalizer == nil {
			qry.Close()
		}
	}()
	return execQuery(ctx, r, qry, limit)
}

// execQuery runs qry and shapes its result: truncation to limit, the
// "stats" parameter and its warnings. The query is closed by the returned
// finalizer.
func execQuery(ctx context.Context, r *http.Request, qry promql.Query, limit int) result {
	res := qry.Exec(ctx)
	if res.Err != nil {
		return result{err: queryError(res.Err), warnings: res.Warnings, finalizer: qry.Close}
	}
	warnings := res.Warnings
	if limit > 0 && truncate(res, limit) {
		warnings = warnings.Add(errTruncated)
	}
	statsParam := r.FormValue("stats")
	if err := statsWarning(statsParam); err != nil {
		warnings = warnings.Add(err)
	}
	var qs stats.QueryStats
	if statsParam != "" {
		qs = stats.NewQueryStats(qry.Stats())
	}
	return result{
		data:      &promapi.QueryData{ResultType: res.Value.Type(), Result: res.Value, Stats: qs},
		warnings:  warnings,
		finalizer: qry.Close,
		samples:   strconv.FormatInt(qry.Stats().Samples.TotalSamples, 10),
	}
}

// truncate cuts a vector or matrix result to limit elements and reports
// whether it did.
func truncate(res *promql.Result, limit int) bool {
	switch v := res.Value.(type) {
	case promql.Matrix:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	case promql.Vector:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	}
	return false
}

func (a *API) formatQuery(r *http.Request) result {
	expr, err := a.parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return failed(invalidParam(err, "query"))
	}
	return result{data: expr.Pretty(0)}
}

func (a *API) queryExemplars(r *http.Request) result {
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		return failed(invalidParam(err, "start"))
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return failed(invalidParam(err, "end"))
	}
	if end.Before(start) {
		return failed(badData(errors.New("end timestamp must not be before start timestamp")))
	}
	expr, err := a.parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return failed(badData(err))
	}
	selectors := parser.ExtractSelectors(expr)
	if len(selectors) == 0 {
		return result{}
	}
	if a.exemplars == nil {
		return result{data: []exemplar.QueryResult{}}
	}
	eq, err := a.exemplars.ExemplarQuerier(r.Context())
	if err != nil {
		return failed(queryError(err))
	}
	res, err := eq.Select(timestamp.FromTime(start), timestamp.FromTime(end), selectors...)
	if err != nil {
		return failed(queryError(err))
	}
	if res == nil {
		res = []exemplar.QueryResult{}
	}
	return result{data: res}
}

func (a *API) labelNames(r *http.Request) (res result) {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return failed(invalidParam(err, "limit"))
	}
	start, end, apiErr := a.metadataRange(r)
	if apiErr != nil {
		return failed(apiErr)
	}
	matcherSets, err := parseMatchers(a.parser, r.Form["match[]"])
	if err != nil {
		return failed(badData(err))
	}
	hints := &storage.LabelHints{Limit: hintLimit(limit)}

	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		return failed(queryError(err))
	}
	// The names may point into the querier's memory: close it only after
	// the response has been written, and also on panic.
	defer func() {
		if res.finalizer == nil {
			q.Close()
		}
	}()
	closer := func() { q.Close() }

	ctx := r.Context()
	var (
		names    []string
		warnings annotations.Annotations
	)
	if len(matcherSets) > 1 {
		set := map[string]struct{}{}
		for _, matchers := range matcherSets {
			vals, callWarnings, err := q.LabelNames(ctx, hints, matchers...)
			if err != nil {
				return result{err: queryError(err), warnings: warnings, finalizer: closer}
			}
			warnings.Merge(callWarnings)
			for _, v := range vals {
				set[v] = struct{}{}
			}
		}
		names = make([]string, 0, len(set))
		for v := range set {
			names = append(names, v)
		}
	} else {
		var matchers []*labels.Matcher
		if len(matcherSets) == 1 {
			matchers = matcherSets[0]
		}
		names, warnings, err = q.LabelNames(ctx, hints, matchers...)
		if err != nil {
			return result{err: queryError(err), warnings: warnings, finalizer: closer}
		}
	}
	if names == nil {
		names = []string{}
	}
	slices.Sort(names)
	if limit > 0 && len(names) > limit {
		names = names[:limit]
		warnings = warnings.Add(errTruncated)
	}
	return result{data: names, warnings: warnings, finalizer: closer}
}

func (a *API) labelValues(r *http.Request) (res result) {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return failed(badData(fmt.Errorf("invalid label name: %q", name)))
	}
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return failed(invalidParam(err, "limit"))
	}
	start, end, apiErr := a.metadataRange(r)
	if apiErr != nil {
		return failed(apiErr)
	}
	matcherSets, err := parseMatchers(a.parser, r.Form["match[]"])
	if err != nil {
		return failed(badData(err))
	}
	hints := &storage.LabelHints{Limit: hintLimit(limit)}

	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		return failed(queryError(err))
	}
	// The values may point into the querier's memory: close it only after
	// the response has been written, and also on panic.
	defer func() {
		if res.finalizer == nil {
			q.Close()
		}
	}()
	closer := func() { q.Close() }

	ctx := r.Context()
	var (
		vals     []string
		warnings annotations.Annotations
	)
	if len(matcherSets) > 1 {
		set := map[string]struct{}{}
		for _, matchers := range matcherSets {
			callVals, callWarnings, err := q.LabelValues(ctx, name, hints, matchers...)
			if err != nil {
				return result{err: queryError(err), warnings: warnings, finalizer: closer}
			}
			warnings.Merge(callWarnings)
			for _, v := range callVals {
				set[v] = struct{}{}
			}
		}
		vals = make([]string, 0, len(set))
		for v := range set {
			vals = append(vals, v)
		}
	} else {
		var matchers []*labels.Matcher
		if len(matcherSets) == 1 {
			matchers = matcherSets[0]
		}
		vals, warnings, err = q.LabelValues(ctx, name, hints, matchers...)
		if err != nil {
			return result{err: queryError(err), warnings: warnings, finalizer: closer}
		}
		if vals == nil {
			vals = []string{}
		}
	}
	slices.Sort(vals)
	if limit > 0 && len(vals) > limit {
		vals = vals[:limit]
		warnings = warnings.Add(errTruncated)
	}
	return result{data: vals, warnings: warnings, finalizer: closer}
}

func (a *API) series(r *http.Request) (res result) {
	if err := r.ParseForm(); err != nil {
		return failed(badData(fmt.Errorf("error parsing form values: %w", err)))
	}
	if len(r.Form["match[]"]) == 0 {
		return failed(badData(errors.New("no match[] parameter provided")))
	}
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return failed(invalidParam(err, "limit"))
	}
	start, end, apiErr := a.metadataRange(r)
	if apiErr != nil {
		return failed(apiErr)
	}
	matcherSets, err := parseMatchers(a.parser, r.Form["match[]"])
	if err != nil {
		return failed(invalidParam(err, "match[]"))
	}

	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		return failed(queryError(err))
	}
	defer func() {
		if res.finalizer == nil {
			q.Close()
		}
	}()
	closer := func() { q.Close() }

	ctx := r.Context()
	hints := &storage.SelectHints{
		Start: timestamp.FromTime(start),
		End:   timestamp.FromTime(end),
		Func:  "series", // Not a function: marks lookups that need no samples.
		Limit: hintLimit(limit),
	}
	// Always ask for sorted series so the answer is in label order whatever
	// the storage; several sets are merged, which deduplicates them.
	var set storage.SeriesSet
	if len(matcherSets) > 1 {
		sets := make([]storage.SeriesSet, 0, len(matcherSets))
		for _, matchers := range matcherSets {
			sets = append(sets, q.Select(ctx, true, hints, matchers...))
		}
		set = storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
	} else {
		set = q.Select(ctx, true, hints, matcherSets[0]...)
	}

	metrics := []labels.Labels{}
	var warnings annotations.Annotations
	for i := 1; set.Next(); i++ {
		if i%checkContextEvery == 0 {
			if err := ctx.Err(); err != nil {
				return result{err: queryError(err), warnings: warnings.Merge(set.Warnings()), finalizer: closer}
			}
		}
		metrics = append(metrics, set.At().Labels())
		if limit > 0 && len(metrics) > limit {
			warnings.Merge(set.Warnings())
			warnings.Add(errTruncated)
			return result{data: metrics[:limit], warnings: warnings, finalizer: closer}
		}
	}
	warnings.Merge(set.Warnings())
	if err := set.Err(); err != nil {
		return result{err: queryError(err), warnings: warnings, finalizer: closer}
	}
	return result{data: metrics, warnings: warnings, finalizer: closer}
}

func (a *API) metricMetadata(r *http.Request) result {
	limit := -1
	if s := r.FormValue("limit"); s != "" {
		var err error
		if limit, err = strconv.Atoi(s); err != nil {
			return failed(badData(errors.New("limit must be a number")))
		}
	}
	limitPerMetric := -1
	if s := r.FormValue("limit_per_metric"); s != "" {
		var err error
		if limitPerMetric, err = strconv.Atoi(s); err != nil {
			return failed(badData(errors.New("limit_per_metric must be a number")))
		}
	}
	res := map[string][]metadata.Metadata{}
	// Prometheus answers limit=0 with no metrics; negative means no limit.
	if a.meta == nil || limit == 0 {
		return result{data: res}
	}
	found, err := a.meta.MetricMetadata(r.Context(), r.FormValue("metric"), max(limit, 0), max(limitPerMetric, 0))
	if err != nil {
		return failed(queryError(err))
	}
	names := make([]string, 0, len(found))
	for name := range found {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if limit > 0 && len(res) >= limit {
			break
		}
		// Deduplicate, as Prometheus collects metadata in a set.
		var ms []metadata.Metadata
		for _, m := range found[name] {
			if limitPerMetric > 0 && len(ms) >= limitPerMetric {
				break
			}
			if !slices.Contains(ms, m) {
				ms = append(ms, m)
			}
		}
		if len(ms) > 0 {
			res[name] = ms
		}
	}
	return result{data: res}
}

func (a *API) buildInfo(*http.Request) result {
	return result{data: &a.build}
}

// metadataRange reads the start and end of a series, labels or label
// values request: without a start, the metadata window before end, or
// before now when there is no end either.
func (a *API) metadataRange(r *http.Request) (time.Time, time.Time, *apiError) {
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return time.Time{}, time.Time{}, invalidParam(err, "end")
	}
	defaultStart := minTime
	if a.metadataWindow > 0 {
		from := end
		if r.FormValue("end") == "" {
			from = a.now()
		}
		defaultStart = from.Add(-a.metadataWindow)
	}
	start, err := parseTimeParam(r, "start", defaultStart)
	if err != nil {
		return time.Time{}, time.Time{}, invalidParam(err, "start")
	}
	return start, end, nil
}
