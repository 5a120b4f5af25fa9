// Package loadgen drives a Prometheus remote-write 1.0 endpoint with the
// series of a bench/workload generator and measures how the server copes:
// accepted samples per second, request latency, errors by status and, when
// given the server's process id, its CPU time and resident memory from /proc.
//
// A run has two phases. The warmup phase sends WarmupRounds rounds at full
// speed; its first round creates every series on the server, so its cost is
// the series creation cost. The steady phase then keeps sending rounds for
// Duration, at full speed or at SamplesPerSecond. A round writes one sample
// for every series; the series are split into batches of Batch series, one
// request each, and the batches are dealt to Concurrency workers so that
// every series always goes through the same worker, in order (like the shards
// of a Prometheus remote-write queue).
//
// Timestamps: round r is stamped start-Lookback+r*Interval, that is the
// series pretend to be scraped every Interval, starting Lookback in the past,
// and simulated time runs faster than wall time when rounds take less than
// Interval. A round never gets a timestamp in the future: once simulated time
// catches up with the wall clock, rounds are stamped with the wall clock
// instead. Timestamps of a series strictly increase. The default Lookback is
// 50 minutes at full speed, which keeps all samples inside the 1h
// out-of-bounds window of Prometheus-style TSDB heads; with a rate limit it
// is just long enough for the run not to catch up. Because the same seed
// produces the same series, a second run against a server that still holds a
// previous run's samples sends out-of-order samples: use a fresh server, a
// new Seed, or wait for Lookback to pass.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/isobar-tsdb/isobar/bench/workload"
)

// Defaults applied by Run to zero Config fields.
const (
	DefaultBatch       = 2000
	DefaultConcurrency = 4
	DefaultInterval    = 15 * time.Second
	DefaultTimeout     = 30 * time.Second
	DefaultMaxWarmup   = 10 * time.Minute
	// MaxAutoLookback is the default Lookback at full speed.
	MaxAutoLookback = 50 * time.Minute
)

// Config describes a load generation run.
type Config struct {
	// URL is the remote-write endpoint, e.g. http://127.0.0.1:9009/api/v1/push.
	// No other address is contacted.
	URL string
	// Series is the number of active series.
	Series int
	// Seed selects the workload; see workload.Config.
	Seed int64
	// Batch is the number of series (samples) per request.
	Batch int
	// Concurrency is the number of requests in flight.
	Concurrency int
	// Duration is the length of the steady phase, after the warmup.
	Duration time.Duration
	// Interval is the scrape interval the series pretend to have: the
	// timestamp step between rounds.
	Interval time.Duration
	// SamplesPerSecond limits the steady phase's send rate; 0 means as fast
	// as the server accepts. The warmup always runs at full speed.
	SamplesPerSecond float64
	// Lookback is how far in the past round 0 is stamped; 0 picks it
	// automatically (see the package documentation).
	Lookback time.Duration
	// Tenant, if set, is sent as the X-Scope-OrgID header.
	Tenant string
	// PID, if positive, is the server's process id, whose CPU time and
	// resident memory are read from /proc.
	PID int
	// WarmupRounds is the number of rounds in the warmup phase.
	WarmupRounds int
	// MaxWarmup bounds the warmup phase; 0 means DefaultMaxWarmup.
	MaxWarmup time.Duration
	// Metadata sends one metadata-only request (TYPE and HELP of every
	// metric family) before the warmup, like Prometheus does.
	Metadata bool
	// Timeout bounds each request; 0 means DefaultTimeout. Ignored if Client
	// is set.
	Timeout time.Duration
	// Progress, if set, receives a progress line every ProgressInterval.
	Progress io.Writer
	// ProgressInterval defaults to 5s.
	ProgressInterval time.Duration
	// Client overrides the HTTP client; nil builds one with keep-alive and
	// Concurrency idle connections.
	Client *http.Client
}

// Result is the outcome of a run. Durations are in seconds, latencies in
// milliseconds.
type Result struct {
	URL                   string         `json:"url"`
	Series                int            `json:"series"`
	SeriesByJob           map[string]int `json:"series_by_job"`
	Seed                  int64          `json:"seed"`
	Batch                 int            `json:"batch"`
	Concurrency           int            `json:"concurrency"`
	IntervalSeconds       float64        `json:"interval_seconds"`
	LookbackSeconds       float64        `json:"lookback_seconds"`
	SamplesPerSecondLimit float64        `json:"samples_per_second_limit,omitempty"`
	GeneratorBuildSeconds float64        `json:"generator_build_seconds"`
	// FirstTimestamp and LastTimestamp bound the sample timestamps sent, in
	// milliseconds since the epoch.
	FirstTimestamp int64           `json:"first_timestamp_ms"`
	LastTimestamp  int64           `json:"last_timestamp_ms"`
	Metadata       *MetadataResult `json:"metadata,omitempty"`
	// Warmup covers the first WarmupRounds rounds, which create the series.
	Warmup PhaseResult `json:"warmup"`
	// Steady covers the rounds after the warmup.
	Steady               PhaseResult `json:"steady"`
	TotalSamplesAccepted int64       `json:"total_samples_accepted"`
	TotalSamplesFailed   int64       `json:"total_samples_failed"`
	// Server holds the /proc measurements of Config.PID.
	Server *ServerResult `json:"server,omitempty"`
	// LoadgenCPUSeconds is the CPU time this process used during the run,
	// to check that the load generator was not the bottleneck.
	LoadgenCPUSeconds float64 `json:"loadgen_cpu_seconds"`
}

// MetadataResult is the outcome of the metadata request.
type MetadataResult struct {
	Families int    `json:"families"`
	Status   string `json:"status"`
}

// PhaseResult holds the client-side figures of one phase.
type PhaseResult struct {
	Seconds float64 `json:"seconds"`
	// Completed is false if the phase was cut short (MaxWarmup, cancel).
	Completed bool `json:"completed"`
	// Rounds is the number of samples sent divided by the number of series.
	Rounds          float64 `json:"rounds"`
	Requests        int64   `json:"requests"`
	FailedRequests  int64   `json:"failed_requests"`
	SamplesAccepted int64   `json:"samples_accepted"`
	SamplesFailed   int64   `json:"samples_failed"`
	// SamplesPerSecond is SamplesAccepted / Seconds.
	SamplesPerSecond float64 `json:"samples_per_second"`
	// RequestBytes is the compressed size of all request bodies.
	RequestBytes int64   `json:"request_bytes"`
	Latency      Latency `json:"latency"`
	// Errors counts failed requests by HTTP status code, or "network",
	// "timeout" or "canceled".
	Errors map[string]int64 `json:"errors,omitempty"`
	// ErrorExamples holds the first response body (truncated) or error
	// message seen for each key of Errors.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
}

// Latency summarizes request latencies in milliseconds.
type Latency struct {
	P50Millis  float64 `json:"p50_ms"`
	P90Millis  float64 `json:"p90_ms"`
	P99Millis  float64 `json:"p99_ms"`
	MaxMillis  float64 `json:"max_ms"`
	MeanMillis float64 `json:"mean_ms"`
}

// ServerResult holds the server process' resource usage read from /proc.
type ServerResult struct {
	PID        int `json:"pid"`
	ClockTicks int `json:"clock_ticks_per_second"`
	// WarmupCPUSeconds and SteadyCPUSeconds are the server's user+system CPU
	// time during each phase.
	WarmupCPUSeconds float64 `json:"warmup_cpu_seconds"`
	SteadyCPUSeconds float64 `json:"steady_cpu_seconds"`
	// SteadyCores is SteadyCPUSeconds per second of the steady phase.
	SteadyCores float64 `json:"steady_cores"`
	// CPUSecondsPerMillionSamples is the steady-state ingestion cost.
	CPUSecondsPerMillionSamples float64 `json:"cpu_seconds_per_million_samples"`
	// CreationMicrosPerSeries is the warmup CPU time per series: the cost
	// of creating a series, including its first WarmupRounds samples.
	CreationMicrosPerSeries float64 `json:"creation_us_per_series"`
	// CreationMicrosPerSeriesNet subtracts the steady-state cost of the
	// warmup samples, leaving the cost of creating the series alone.
	CreationMicrosPerSeriesNet float64 `json:"creation_us_per_series_net"`
	RSSBytesStart              int64   `json:"rss_bytes_start"`
	RSSBytesAfterWarmup        int64   `json:"rss_bytes_after_warmup"`
	RSSBytesEnd                int64   `json:"rss_bytes_end"`
	// RSSBytesPerSeries is RSSBytesEnd divided by the number of series.
	RSSBytesPerSeries float64 `json:"rss_bytes_per_series"`
	// RSSDeltaBytesPerSeries is (RSSBytesEnd-RSSBytesStart) per series.
	RSSDeltaBytesPerSeries float64 `json:"rss_delta_bytes_per_series"`
}

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return cfg, fmt.Errorf("parse url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("url %q: want http(s)://host[:port]/path", cfg.URL)
	}
	setDefault(&cfg.Batch, DefaultBatch)
	setDefault(&cfg.Concurrency, DefaultConcurrency)
	setDefault(&cfg.Interval, DefaultInterval)
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.MaxWarmup, DefaultMaxWarmup)
	setDefault(&cfg.ProgressInterval, 5*time.Second)
	switch {
	case cfg.Series <= 0:
		return cfg, fmt.Errorf("series must be positive, got %d", cfg.Series)
	case cfg.Batch < 0, cfg.Concurrency < 0, cfg.WarmupRounds < 0:
		return cfg, errors.New("batch, concurrency and warmup rounds must not be negative")
	case cfg.Duration < 0, cfg.Interval < time.Millisecond, cfg.Lookback < 0:
		return cfg, errors.New("duration and lookback must not be negative, interval must be at least 1ms")
	case cfg.SamplesPerSecond < 0:
		return cfg, fmt.Errorf("samples per second must not be negative, got %v", cfg.SamplesPerSecond)
	}
	if cfg.Lookback == 0 {
		cfg.Lookback = autoLookback(cfg)
	}
	return cfg, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// autoLookback returns how far in the past to start so that the run, at its
// expected speed, does not catch up with the wall clock, capped at
// MaxAutoLookback.
func autoLookback(cfg Config) time.Duration {
	if cfg.SamplesPerSecond == 0 {
		return MaxAutoLookback
	}
	// Simulated seconds per wall second in the steady phase.
	speed := cfg.SamplesPerSecond / float64(cfg.Series) * cfg.Interval.Seconds()
	ahead := time.Duration(float64(cfg.Duration) * max(speed-1, 0))
	ahead += time.Duration(cfg.WarmupRounds+1) * cfg.Interval
	return min(ahead, MaxAutoLookback)
}

// newClient returns an HTTP client that keeps enough connections alive for
// concurrency requests, ignores proxy settings and does not follow
// redirects, so that it only ever talks to the configured URL.
func newClient(concurrency int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2 * concurrency,
			MaxIdleConnsPerHost: 2 * concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run generates the workload and sends it to cfg.URL until the steady phase
// has lasted cfg.Duration. Failed requests are counted, not retried, and do
// not make Run fail. If ctx is canceled, Run stops early and returns the
// partial result with ctx's error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	self := newProcReader("/proc", os.Getpid())
	selfStart, selfErr := self.cpuSeconds()

	var server *procReader
	var serverStart procStats
	if cfg.PID > 0 {
		server = newProcReader("/proc", cfg.PID)
		if serverStart, err = server.read(); err != nil {
			return Result{}, fmt.Errorf("measure server pid %d: %w", cfg.PID, err)
		}
	}

	buildStart := time.Now()
	gen := workload.New(workload.Config{Series: cfg.Series, Seed: cfg.Seed})
	res := Result{
		URL:                   cfg.URL,
		Series:                gen.Len(),
		SeriesByJob:           gen.CountByJob(),
		Seed:                  cfg.Seed,
		Batch:                 cfg.Batch,
		Concurrency:           cfg.Concurrency,
		IntervalSeconds:       cfg.Interval.Seconds(),
		LookbackSeconds:       cfg.Lookback.Seconds(),
		SamplesPerSecondLimit: cfg.SamplesPerSecond,
		GeneratorBuildSeconds: time.Since(buildStart).Seconds(),
	}

	client := cfg.Client
	if client == nil {
		client = newClient(cfg.Concurrency, cfg.Timeout)
		defer client.CloseIdleConnections()
	}
	r := newRunner(cfg, gen, client, time.Now())

	if cfg.Metadata {
		status := r.sendMetadata(ctx)
		res.Metadata = &MetadataResult{Families: gen.MetadataCount(), Status: status}
	}

	stopProgress := r.startProgress()
	defer stopProgress()

	res.Warmup = r.runPhase(ctx, phaseWarmup, time.Now().Add(cfg.MaxWarmup), cfg.WarmupRounds)
	var serverWarm procStats
	if server != nil {
		if serverWarm, err = server.read(); err != nil {
			return res, fmt.Errorf("measure server pid %d: %w", cfg.PID, err)
		}
	}
	if ctx.Err() == nil && cfg.Duration > 0 {
		res.Steady = r.runPhase(ctx, phaseSteady, time.Now().Add(cfg.Duration), -1)
	}
	stopProgress()

	res.FirstTimestamp, res.LastTimestamp = r.timestampRange()
	res.TotalSamplesAccepted = res.Warmup.SamplesAccepted + res.Steady.SamplesAccepted
	res.TotalSamplesFailed = res.Warmup.SamplesFailed + res.Steady.SamplesFailed
	if selfErr == nil {
		if selfEnd, err := self.cpuSeconds(); err == nil {
			res.LoadgenCPUSeconds = selfEnd - selfStart
		}
	}
	if server != nil {
		serverEnd, err := server.read()
		if err != nil {
			return res, fmt.Errorf("measure server pid %d: %w", cfg.PID, err)
		}
		res.Server = serverResult(server, res, serverStart, serverWarm, serverEnd)
	}
	return res, ctx.Err()
}

// serverResult derives the server figures from three /proc readings.
func serverResult(p *procReader, res Result, start, warm, end procStats) *ServerResult {
	n := float64(res.Series)
	s := &ServerResult{
		PID:                    p.pid,
		ClockTicks:             p.clockTicks,
		WarmupCPUSeconds:       warm.cpuSeconds - start.cpuSeconds,
		SteadyCPUSeconds:       end.cpuSeconds - warm.cpuSeconds,
		RSSBytesStart:          start.rssBytes,
		RSSBytesAfterWarmup:    warm.rssBytes,
		RSSBytesEnd:            end.rssBytes,
		RSSBytesPerSeries:      float64(end.rssBytes) / n,
		RSSDeltaBytesPerSeries: float64(end.rssBytes-start.rssBytes) / n,
	}
	if res.Steady.Seconds > 0 {
		s.SteadyCores = s.SteadyCPUSeconds / res.Steady.Seconds
	}
	var perSample float64
	if res.Steady.SamplesAccepted > 0 {
		perSample = s.SteadyCPUSeconds / float64(res.Steady.SamplesAccepted)
		s.CPUSecondsPerMillionSamples = perSample * 1e6
	}
	if res.Warmup.SamplesAccepted > 0 {
		s.CreationMicrosPerSeries = s.WarmupCPUSeconds / n * 1e6
		net := s.WarmupCPUSeconds - perSample*float64(res.Warmup.SamplesAccepted)
		s.CreationMicrosPerSeriesNet = net / n * 1e6
	}
	return s
}
