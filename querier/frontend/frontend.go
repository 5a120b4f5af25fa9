// Package frontend is the query-frontend: the Prometheus HTTP API in front
// of the queriers. It splits range queries by day and runs the pieces in
// parallel, answers what it can from a results cache of extents (a partial
// hit asks only for the missing pieces), shards the aggregations of range
// and instant queries by series (queriers evaluate the shards, the frontend
// the rest: shard.go), and hands every request to the queriers through a
// queue that takes tenants in turn, so one busy tenant cannot starve the
// others. It talks to queriers over HTTP only.
package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"golang.org/x/sync/errgroup"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/memcache"
	"github.com/isobar-tsdb/isobar/pkg/promapi"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// Config configures the query-frontend.
type Config struct {
	SplitInterval           time.Duration          `yaml:"split_queries_by_interval"`
	CacheResults            bool                   `yaml:"cache_results"`
	ResultsCacheBackend     string                 `yaml:"results_cache_backend"`
	ResultsCacheBytes       int                    `yaml:"results_cache_max_bytes"`
	ResultsCacheMemcached   memcache.Config        `yaml:"results_cache_memcached"`
	MaxCacheFreshness       time.Duration          `yaml:"max_cache_freshness"`
	DownstreamURLs          flagext.StringSliceCSV `yaml:"downstream_urls"`
	MaxOutstandingPerTenant int                    `yaml:"max_outstanding_requests_per_tenant"`
	Parallelism             int                    `yaml:"querier_parallelism"`
	MaxRetries              int                    `yaml:"max_retries"`
	MaxShardedQueries       int                    `yaml:"query_sharding_max_sharded_queries"`
	TargetSamplesPerShard   int64                  `yaml:"query_sharding_target_samples_per_shard"`
	// Parser is how the queriers parse PromQL (their
	// -querier.enable-experimental-functions): the frontend parses and
	// evaluates parts of queries too.
	Parser parser.Options `yaml:"-"`
	// MaxShards caps a tenant's shard count (0: no cap). A frontend whose
	// querier is in its own process sets the cores it has: shards beyond
	// them run one after another and only add their cost.
	MaxShards int `yaml:"-"`
}

// RegisterFlags registers the flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&c.MaxShardedQueries, "query-frontend.query-sharding-max-sharded-queries", 128, "Most querier requests the shards of one range query may take, over all its split pieces; a query that would need more gets fewer shards per piece (at least 2) or is not sharded.")
	f.Int64Var(&c.TargetSamplesPerShard, "query-frontend.query-sharding-target-samples-per-shard", 100_000, "Cut a query into no more shards than give each about this many samples to read, judged by what the query's last run read (the queriers tell); a query that read fewer than twice this is not sharded. A query not seen yet gets every shard. 0: every shardable query gets every shard.")
	f.DurationVar(&c.SplitInterval, "query-frontend.split-queries-by-interval", 24*time.Hour, "Split range queries at multiples of this interval (UTC) and run the pieces in parallel; 0 does not split.")
	f.BoolVar(&c.CacheResults, "query-frontend.cache-results", true, "Cache the answers of range queries, piece by piece, and ask the queriers only for what the cache lacks.")
	f.StringVar(&c.ResultsCacheBackend, "query-frontend.results-cache.backend", CacheInMemory, `Where the results cache is: "inmemory" (this process, -query-frontend.results-cache.max-size-bytes) or "memcached" (shared by the frontends and kept across restarts; -query-frontend.results-cache.memcached.*).`)
	f.IntVar(&c.ResultsCacheBytes, "query-frontend.results-cache.max-size-bytes", 256<<20, "Memory the in-memory results cache may hold.")
	c.ResultsCacheMemcached.RegisterFlagsWithPrefix(f, memcachedFlagPrefix, "cached answers", "-query-frontend.results-cache.backend", "an answer not fetched in time is asked of the queriers.")
	f.DurationVar(&c.MaxCacheFreshness, "query-frontend.max-cache-freshness", 10*time.Minute, "Never cache the answer for the last this long before now (nor for a tenant's out-of-order window, if longer): samples may still arrive for it.")
	f.Var(&c.DownstreamURLs, "query-frontend.downstream-url", "Comma-separated base URLs of the queriers (http://host:port); empty in -target=all, where the frontend asks the querier of its own process.")
	f.IntVar(&c.MaxOutstandingPerTenant, "query-frontend.max-outstanding-requests-per-tenant", 100, "Requests of one tenant that may wait for a querier; more are refused with 429.")
	f.IntVar(&c.Parallelism, "query-frontend.querier-parallelism", 8, "Requests the frontend has in flight to the queriers at once, taken from the tenants in turn.")
	f.IntVar(&c.MaxRetries, "query-frontend.max-retries", 3, "Times a request is sent again after a querier answered 5xx or could not be reached.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.SplitInterval < 0 || c.MaxCacheFreshness < 0 || c.ResultsCacheBytes < 0 || c.MaxRetries < 0 || c.MaxShardedQueries < 0 {
		return errors.New("-query-frontend.split-queries-by-interval, -query-frontend.max-cache-freshness, -query-frontend.results-cache.max-size-bytes, -query-frontend.max-retries and -query-frontend.query-sharding-max-sharded-queries must not be negative")
	}
	if c.MaxOutstandingPerTenant <= 0 || c.Parallelism <= 0 {
		return errors.New("-query-frontend.max-outstanding-requests-per-tenant and -query-frontend.querier-parallelism must be positive")
	}
	switch c.ResultsCacheBackend {
	case CacheInMemory:
	case CacheMemcached:
		if err := c.ResultsCacheMemcached.Validate(memcachedFlagPrefix, "-query-frontend.results-cache.backend"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-query-frontend.results-cache.backend must be %q or %q, is %q", CacheInMemory, CacheMemcached, c.ResultsCacheBackend)
	}
	for _, u := range c.DownstreamURLs {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" {
			return fmt.Errorf("-query-frontend.downstream-url %q is not a base URL like http://host:port", u)
		}
	}
	return nil
}

// Results cache backends (-query-frontend.results-cache.backend).
const (
	CacheInMemory  = "inmemory"
	CacheMemcached = "memcached"
)

const memcachedFlagPrefix = "query-frontend.results-cache.memcached."

// TenantLimits answers each tenant's limits (limits.Overrides).
type TenantLimits interface {
	For(tenant string) *limits.Limits
}

// Frontend is the query-frontend service.
type Frontend struct {
	services.Service

	cfg    Config
	limits TenantLimits
	queue  *queue
	cache  resultsCache // nil when off
	close  func()       // stops the queue and the cache's client
	logger *slog.Logger
	now    func() time.Time
	parser parser.Parser
	engine *promql.Engine // evaluates the outer queries of shard plans
	sizes  *querySizes

	queries     *prometheus.CounterVec
	pieces      prometheus.Counter
	sharded     *prometheus.CounterVec
	fewerShards prometheus.Counter
	cacheBytes  *prometheus.CounterVec
	queryTime   *prometheus.HistogramVec
	apiPrefixes []string
}

// New returns a frontend sending requests to downstream: a transport to
// the queriers (NewQuerierTransport) or to an in-process handler
// (HandlerTransport). It fails only on a memcached configuration that
// cannot work.
func New(cfg Config, downstream http.RoundTripper, l TenantLimits, logger *slog.Logger, reg prometheus.Registerer) (*Frontend, error) {
	f := &Frontend{
		cfg:    cfg,
		limits: l,
		queue:  newQueue(downstream, cfg.Parallelism, cfg.MaxOutstandingPerTenant, cfg.MaxRetries, reg),
		logger: logger.With("component", "query-frontend"),
		now:    time.Now,
		parser: parser.NewParser(cfg.Parser),
		sizes:  newQuerySizes(cfg.TargetSamplesPerShard),
		queries: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_query_frontend_queries_total",
			Help: "Requests the query-frontend answered, by endpoint and status code.",
		}, []string{"endpoint", "status_code"}),
		pieces: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "isobar_query_frontend_split_queries_total",
			Help: "Requests to queriers that split range queries were made of (cache misses only).",
		}),
		sharded: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_query_frontend_sharded_queries_total",
			Help: "Queries the query-frontend answered sharded, by endpoint.",
		}, []string{"endpoint"}),
		fewerShards: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "isobar_query_frontend_fewer_shards_queries_total",
			Help: "Queries cut into fewer shards than their tenant's, or none, because their last run read few samples (-query-frontend.query-sharding-target-samples-per-shard).",
		}),
		cacheBytes: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_query_frontend_results_cache_bytes_total",
			Help: "Bytes of range query answers taken from the results cache (hit) and fetched from queriers (miss).",
		}, []string{"result"}),
		queryTime: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "isobar_query_frontend_query_duration_seconds",
			Help:                            "Time to answer a request, by endpoint.",
			Buckets:                         prometheus.DefBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"endpoint"}),
	}
	f.engine = newOuterEngine(f.parser)
	stop := func() {}
	switch {
	case !cfg.CacheResults:
	case cfg.ResultsCacheBackend == CacheMemcached:
		c, err := newMemcachedCache(cfg.ResultsCacheMemcached, f.logger, reg)
		if err != nil {
			f.queue.close()
			return nil, err
		}
		f.cache, stop = c, c.stop
	case cfg.ResultsCacheBytes > 0:
		f.cache = newMemoryCache(cfg.ResultsCacheBytes)
	}
	f.close = func() { f.queue.close(); stop() }
	f.Service = services.NewIdleService(nil, func(error) error { f.close(); return nil })
	return f, nil
}

// Register mounts the Prometheus API under prefix (for example "/api/v1")
// on mux: range queries through the split and the cache, every other
// endpoint straight through the queue.
func (f *Frontend) Register(mux *http.ServeMux, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	for _, e := range promapi.Endpoints() {
		h := http.HandlerFunc(f.servePassThrough)
		switch e.Path {
		case promapi.QueryRange.Path:
			h = f.serveRange
		case promapi.Query.Path:
			h = f.serveInstant
		}
		e.Register(mux, prefix, h)
	}
}

// servePassThrough sends the request to a querier as it is.
func (f *Frontend) servePassThrough(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	endpoint := endpointOf(r.URL.Path)
	// Endpoints that need no tenant (build info) have none.
	id, _ := tenant.From(r.Context())
	if body, ok := f.readBody(w, r, endpoint); ok {
		_ = f.forward(w, r, id, body, endpoint, start)
	}
}

// maxRequestBytes bounds a request body the frontend reads (a form of
// matchers or a long query).
const maxRequestBytes = 16 << 20

// readBody reads r's body, up to maxRequestBytes, and puts it back for the
// form parser; it answers the client itself when that fails.
func (f *Frontend) readBody(w http.ResponseWriter, r *http.Request, endpoint string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		f.fail(w, endpoint, http.StatusRequestEntityTooLarge, "bad_data", fmt.Errorf("read the request body: %w", err))
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, true
}

// forward sends r, with body, to a querier and copies the answer back. It
// returns the header of a querier's 200 answer, nil otherwise.
func (f *Frontend) forward(w http.ResponseWriter, r *http.Request, id string, body []byte, endpoint string, start time.Time) http.Header {
	req, err := f.downstreamRequest(r.Context(), id, r.Method, r.URL.Path, r.URL.RawQuery, body, r.Header.Get("Content-Type"))
	if err != nil {
		f.fail(w, endpoint, http.StatusInternalServerError, "internal", err)
		return nil
	}
	if promapi.AcceptsSeries(r) { // a ruler
		req.Header.Set("Accept", promapi.SeriesProtobuf)
	}
	resp, err := f.queue.roundTrip(r.Context(), id, req)
	if err != nil {
		f.failQueue(w, endpoint, err)
		return nil
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k != promapi.SamplesHeader { // between querier and frontend
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	f.queries.WithLabelValues(endpoint, strconv.Itoa(resp.StatusCode)).Inc()
	f.queryTime.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	return resp.Header
}

// rangeQuery is a parsed query_range request; times in milliseconds.
type rangeQuery struct {
	path             string // of the request, kept for the queriers
	query            string
	start, end, step int64
	other            url.Values // every other parameter, passed on and part of the cache key
	plan             *shardPlan // nil: not sharded
}

func (f *Frontend) serveRange(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id, err := tenant.From(r.Context())
	if err != nil {
		f.fail(w, "query_range", http.StatusUnauthorized, "bad_data", err)
		return
	}
	body, ok := f.readBody(w, r, "query_range")
	if !ok {
		return
	}
	q, err := parseRangeQuery(r)
	if err != nil || !splittable(q) {
		// The querier words errors in the parameters as Prometheus does,
		// and answers what the frontend does not split.
		_ = f.forward(w, r, id, body, "query_range", start)
		return
	}
	// Split, each piece would be within the tenant's query length limit.
	if maxLength := time.Duration(f.limits.For(id).MaxQueryLength); maxLength > 0 {
		if length := time.Duration(q.end-q.start) * time.Millisecond; length > maxLength {
			f.fail(w, "query_range", http.StatusUnprocessableEntity, "execution", fmt.Errorf(
				"the query time range exceeds the limit (query length: %s, limit: %s); shorten the query or raise -querier.max-query-length",
				model.Duration(length), model.Duration(maxLength)))
			return
		}
	}
	st := &queryStats{slots: make(chan struct{}, f.cfg.Parallelism)}
	m, errResp, err := f.runRange(r.Context(), id, q, st)
	switch {
	case err != nil:
		f.failQueue(w, "query_range", err)
		return
	case errResp != nil:
		errResp.write(w)
		f.queries.WithLabelValues("query_range", strconv.Itoa(errResp.code)).Inc()
		return
	}
	f.sizes.remember(id, q.query, &st.cost)
	out := m.encode()
	if q.plan != nil {
		f.sharded.WithLabelValues("query_range").Inc()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	took := time.Since(start)
	f.queries.WithLabelValues("query_range", "200").Inc()
	f.queryTime.WithLabelValues("query_range").Observe(took.Seconds())
	f.logger.Info("range query", "tenant", id, "query", q.query, "start", q.start, "end", q.end, "step_ms", q.step,
		"split_pieces", st.pieces.Load(), "sharded", q.plan != nil, "shard_requests", st.shardRequests.Load(), "querier_requests", st.requests.Load(), "cache_hit_bytes", st.hitBytes.Load(),
		"fetched_bytes", st.fetchedBytes.Load(), "series", len(m.series), "response_bytes", len(out), "duration", took)
}

// serveInstant answers an instant query sharded when it has shardable
// parts, and passes it on otherwise.
func (f *Frontend) serveInstant(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id, err := tenant.From(r.Context())
	if err != nil {
		f.fail(w, "query", http.StatusUnauthorized, "bad_data", err)
		return
	}
	body, ok := f.readBody(w, r, "query")
	if !ok {
		return
	}
	q, err := f.parseInstantQuery(r)
	if err != nil {
		_ = f.forward(w, r, id, body, "query", start)
		return
	}
	if q.plan = f.planFor(id, q.query, 1, 1); q.plan == nil {
		if h := f.forward(w, r, id, body, "query", start); h != nil {
			var cost queryCost
			cost.steps.Store(1)
			cost.add(h)
			f.sizes.remember(id, q.query, &cost)
		}
		return
	}
	st := &queryStats{slots: make(chan struct{}, f.cfg.Parallelism)}
	contentType := "application/json"
	var (
		out             []byte
		errResp         *errorResponse
		warnings, infos []string
	)
	if promapi.AcceptsSeries(r) { // a ruler: exact series, not JSON
		contentType = promapi.SeriesProtobuf
		errResp, err = f.evalShardedValue(r.Context(), id, q, q.start, q.start, st, func(v parser.Value, w, i []string) error {
			warnings, infos = w, i
			out, err = promapi.MarshalSeries(v)
			return err
		})
	} else {
		out, errResp, err = f.evalSharded(r.Context(), id, q, q.start, q.start, st)
	}
	switch {
	case err != nil:
		f.failQueue(w, "query", err)
		return
	case errResp != nil:
		errResp.write(w)
		f.queries.WithLabelValues("query", strconv.Itoa(errResp.code)).Inc()
		return
	}
	st.cost.steps.Store(1)
	f.sizes.remember(id, q.query, &st.cost)
	w.Header().Set("Content-Type", contentType)
	if contentType == promapi.SeriesProtobuf {
		w.Header()[promapi.WarningHeader] = warnings
		w.Header()[promapi.InfoHeader] = infos
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	took := time.Since(start)
	f.queries.WithLabelValues("query", "200").Inc()
	f.sharded.WithLabelValues("query").Inc()
	f.queryTime.WithLabelValues("query").Observe(took.Seconds())
	f.logger.Info("instant query", "tenant", id, "query", q.query, "time", q.start, "sharded", true,
		"shard_requests", st.shardRequests.Load(), "fetched_bytes", st.fetchedBytes.Load(), "response_bytes", len(out), "duration", took)
}

// parseInstantQuery reads an instant query as a range query of one
// evaluation time and no step; without a time it is now.
func (f *Frontend) parseInstantQuery(r *http.Request) (*rangeQuery, error) {
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	q := &rangeQuery{path: r.URL.Path, query: r.Form.Get("query"), other: url.Values{}}
	if q.query == "" || r.Form.Has("stats") {
		return nil, errors.New("left to the querier")
	}
	q.start = f.now().UnixMilli()
	if t := r.Form.Get("time"); t != "" {
		var err error
		if q.start, err = parseTime(t); err != nil {
			return nil, err
		}
	}
	for k, v := range r.Form {
		switch k {
		case "query", "time":
		default:
			q.other[k] = v
		}
	}
	return q, nil
}

func parseRangeQuery(r *http.Request) (*rangeQuery, error) {
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	q := &rangeQuery{path: r.URL.Path, query: r.Form.Get("query"), other: url.Values{}}
	var err error
	if q.start, err = parseTime(r.Form.Get("start")); err != nil {
		return nil, err
	}
	if q.end, err = parseTime(r.Form.Get("end")); err != nil {
		return nil, err
	}
	if q.step, err = parseStep(r.Form.Get("step")); err != nil {
		return nil, err
	}
	if q.query == "" || q.end < q.start || q.step <= 0 || (q.end-q.start)/q.step > 11000 {
		return nil, errors.New("left to the querier to refuse")
	}
	for k, v := range r.Form {
		switch k {
		case "query", "start", "end", "step":
		default:
			q.other[k] = v
		}
	}
	return q, nil
}

// form asks a querier for query over the evaluation times [start, end] of
// q (one time, when q has no step), with q's other parameters.
func (q *rangeQuery) form(query string, start, end int64) url.Values {
	form := url.Values{}
	for k, v := range q.other {
		form[k] = v
	}
	form.Set("query", query)
	if q.step == 0 {
		form.Set("time", formatTime(start))
		return form
	}
	form.Set("start", formatTime(start))
	form.Set("end", formatTime(end))
	form.Set("step", formatTime(q.step))
	return form
}

// splittable reports whether the answer of q for an evaluation time does
// not depend on the rest of its range: not with @ start() or @ end(), nor
// with the range() of a duration expression, nor with statistics asked
// for.
func splittable(q *rangeQuery) bool {
	if q.other.Has("stats") {
		return false
	}
	s := strings.Join(strings.Fields(q.query), "")
	return !strings.Contains(s, "start()") && !strings.Contains(s, "end()") && !strings.Contains(s, "range()")
}

// queryStats counts what answering one range query took.
type queryStats struct {
	pieces, requests, shardRequests atomic.Int64
	hitBytes, fetchedBytes          atomic.Int64
	cost                            queryCost // of the pieces fetched
	// slots bound the shard requests of the query in flight.
	slots chan struct{}
}

// runRange answers q from its pieces, in parallel, and merges them in time
// order. A querier's error answer for any piece is the answer.
func (f *Frontend) runRange(ctx context.Context, id string, q *rangeQuery, st *queryStats) (*matrix, *errorResponse, error) {
	pieces := splitRange(q.start, q.end, q.step, f.cfg.SplitInterval.Milliseconds())
	st.pieces.Add(int64(len(pieces)))
	steps := (q.end-q.start)/q.step + 1
	q.plan = f.planFor(id, q.query, len(pieces), (steps+int64(len(pieces))-1)/int64(len(pieces)))
	results := make([]*matrix, len(pieces))
	errResps := make([]*errorResponse, len(pieces))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.cfg.Parallelism)
	for i, p := range pieces {
		g.Go(func() error {
			m, er, err := f.runPiece(gctx, id, q, p, st)
			results[i], errResps[i] = m, er
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	out := &matrix{}
	for i := range pieces {
		if errResps[i] != nil {
			return nil, errResps[i], nil
		}
		out.merge(results[i])
	}
	return out, nil, nil
}

// piece is a part of a range query's evaluation times, [start, end], both
// evaluation times, and the index of the split interval it lies in.
type piece struct {
	start, end int64
	interval   int64
}

// splitRange cuts the evaluation times start, start+step, ..., up to end
// at multiples of interval (0: not at all).
func splitRange(start, end, step, interval int64) []piece {
	if interval <= 0 {
		return []piece{{start: start, end: end}}
	}
	var out []piece
	for s := start; s <= end; {
		idx := floorDiv(s, interval)
		boundary := (idx + 1) * interval // the first time of the next interval
		e := min(end, s+(boundary-1-s)/step*step)
		out = append(out, piece{start: s, end: e, interval: idx})
		s = e + step
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// runPiece answers one piece: from the cache what it holds, from the
// queriers the rest; what is older than the freshness cut-off goes into
// the cache.
func (f *Frontend) runPiece(ctx context.Context, id string, q *rangeQuery, p piece, st *queryStats) (*matrix, *errorResponse, error) {
	out := &matrix{}
	cacheEnd := p.start - q.step // the last evaluation time that may be cached
	if f.cache != nil {
		freshness := f.cfg.MaxCacheFreshness
		if ooo := time.Duration(f.limits.For(id).OutOfOrderTimeWindow); ooo > freshness {
			freshness = ooo
		}
		cutoff := min(p.end, f.now().Add(-freshness).UnixMilli())
		if cutoff >= p.start {
			cacheEnd = p.start + (cutoff-p.start)/q.step*q.step
		}
	}
	if cacheEnd >= p.start {
		key := cacheKey(id, q, p)
		cached := f.cache.Get(ctx, key)
		var fetched []extent
		next := p.start
		fetch := func(s, e int64) (*errorResponse, error) {
			m, er, err := f.fetch(ctx, id, q, s, e, st)
			if err != nil || er != nil {
				return er, err
			}
			fetched = append(fetched, extent{start: s, end: e, m: m})
			out.merge(m)
			return nil, nil
		}
		for _, x := range cached {
			if x.end < next || x.start > cacheEnd {
				continue
			}
			if x.start > next {
				if er, err := fetch(next, x.start-q.step); err != nil || er != nil {
					return nil, er, err
				}
			}
			part := x.m.trim(max(next, x.start), min(cacheEnd, x.end))
			st.hitBytes.Add(int64(part.size()))
			f.cacheBytes.WithLabelValues("hit").Add(float64(part.size()))
			out.merge(part)
			next = min(cacheEnd, x.end) + q.step
		}
		if next <= cacheEnd {
			if er, err := fetch(next, cacheEnd); err != nil || er != nil {
				return nil, er, err
			}
		}
		if len(fetched) > 0 {
			f.cache.Put(key, mergeExtents(cached, fetched, q.step))
		}
	}
	if s := max(cacheEnd+q.step, p.start); s <= p.end {
		m, er, err := f.fetch(ctx, id, q, s, p.end, st)
		if err != nil || er != nil {
			return nil, er, err
		}
		out.merge(m)
	}
	return out, nil, nil
}

// cacheKey names the cached extents of a piece: the tenant, the query and
// every parameter but the range, the step and where the evaluation times
// fall within it, and the split interval.
func cacheKey(id string, q *rangeQuery, p piece) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d\x00%d", id, q.query, q.other.Encode(), q.step, ((q.start%q.step)+q.step)%q.step, p.interval)
}

// mergeExtents unites cached and fetched extents (all of the same
// evaluation times) into sorted extents, joining those that touch.
func mergeExtents(cached, fetched []extent, step int64) []extent {
	all := append(slices.Clone(cached), fetched...)
	slices.SortFunc(all, func(a, b extent) int { return cmpInt(a.start, b.start) })
	var out []extent
	for _, x := range all {
		if n := len(out); n > 0 && x.start <= out[n-1].end+step {
			last := &out[n-1]
			if x.end > last.end {
				joined := &matrix{}
				joined.merge(last.m)
				joined.merge(x.m.trim(last.end+step, x.end))
				last.m, last.end = joined, x.end
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// fetch asks a querier for the evaluation times [start, end] of q, a
// range query.
func (f *Frontend) fetch(ctx context.Context, id string, q *rangeQuery, start, end int64, st *queryStats) (*matrix, *errorResponse, error) {
	st.cost.steps.Add((end-start)/q.step + 1)
	if q.plan != nil {
		return f.fetchSharded(ctx, id, q, start, end, st)
	}
	form := q.form(q.query, start, end)
	req, err := f.downstreamRequest(ctx, id, http.MethodPost, q.path, "", []byte(form.Encode()), "application/x-www-form-urlencoded")
	if err != nil {
		return nil, nil, err
	}
	st.requests.Add(1)
	f.pieces.Inc()
	resp, err := f.queue.roundTrip(ctx, id, req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read a querier's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &errorResponse{code: resp.StatusCode, header: resp.Header, body: body}, nil
	}
	st.fetchedBytes.Add(int64(len(body)))
	st.cost.add(resp.Header)
	f.cacheBytes.WithLabelValues("miss").Add(float64(len(body)))
	m, err := decodeMatrix(body)
	if err != nil {
		return nil, nil, err
	}
	return m, nil, nil
}

// downstreamRequest builds a request to a querier for the tenant; the
// transport sets where it goes.
func (f *Frontend) downstreamRequest(ctx context.Context, id, method, path, rawQuery string, body []byte, contentType string) (*http.Request, error) {
	u := &url.URL{Path: path, RawQuery: rawQuery}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build the request to a querier: %w", err)
	}
	if id != "" {
		req.Header.Set(tenant.HeaderName, id)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// errorResponse is a querier's answer other than 200, passed on as is.
type errorResponse struct {
	code   int
	header http.Header
	body   []byte
}

func (e *errorResponse) write(w http.ResponseWriter) {
	for k, v := range e.header {
		w.Header()[k] = v
	}
	w.WriteHeader(e.code)
	_, _ = w.Write(e.body)
}

// failQueue answers an error of the queue or the transport.
func (f *Frontend) failQueue(w http.ResponseWriter, endpoint string, err error) {
	switch {
	case errors.Is(err, errTooManyOutstanding):
		f.fail(w, endpoint, http.StatusTooManyRequests, "unavailable", err)
	case errors.Is(err, context.Canceled):
		f.fail(w, endpoint, 499, "canceled", err)
	case errors.Is(err, context.DeadlineExceeded):
		f.fail(w, endpoint, http.StatusServiceUnavailable, "timeout", err)
	default:
		f.fail(w, endpoint, http.StatusBadGateway, "unavailable", fmt.Errorf("ask a querier: %w", err))
	}
}

// fail answers an error in the Prometheus API's shape.
func (f *Frontend) fail(w http.ResponseWriter, endpoint string, code int, errorType string, err error) {
	body, _ := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", errorType, err.Error()}) // strings always encode
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	f.queries.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

// endpointOf names the API endpoint of a path for metrics: its last part,
// or "label_values" for /label/<name>/values.
func endpointOf(path string) string {
	if strings.Contains(path, "/label/") && strings.HasSuffix(path, "/values") {
		return "label_values"
	}
	return path[strings.LastIndexByte(path, '/')+1:]
}
