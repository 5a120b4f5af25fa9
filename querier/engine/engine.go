// Package engine configures the PromQL engine the querier and the ruler use.
package engine

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Config holds the engine's limits.
type Config struct {
	Timeout                     time.Duration `yaml:"timeout"`
	MaxSamples                  int           `yaml:"max_samples"`
	LookbackDelta               time.Duration `yaml:"lookback_delta"`
	EnableExperimentalFunctions bool          `yaml:"enable_experimental_functions"`
	// MaxConcurrent queries run at once; the rest wait for a slot.
	MaxConcurrent int `yaml:"max_concurrent"`
	// ActiveQueryLogDir holds the log of running queries, which names the
	// queries that were running when the process died (set by the app).
	ActiveQueryLogDir string `yaml:"-"`
}

// RegisterFlags registers the engine flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.Timeout, "querier.timeout", 2*time.Minute, "Maximum time a query may take.")
	f.IntVar(&c.MaxSamples, "querier.max-samples", 50_000_000, "Maximum number of samples a query may hold in memory at once.")
	f.DurationVar(&c.LookbackDelta, "querier.lookback-delta", 5*time.Minute, "How far back an instant vector selector looks for a sample.")
	f.BoolVar(&c.EnableExperimentalFunctions, "querier.enable-experimental-functions", false, "Allow experimental PromQL functions.")
	f.IntVar(&c.MaxConcurrent, "querier.max-concurrent", 20, "Maximum number of queries a querier runs at once; the others wait for a slot, within -querier.timeout.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Timeout <= 0 || c.MaxSamples <= 0 || c.LookbackDelta <= 0 || c.MaxConcurrent <= 0 {
		return fmt.Errorf("-querier.timeout, -querier.max-samples, -querier.lookback-delta and -querier.max-concurrent must be positive")
	}
	return nil
}

// New returns an engine with the configured limits. With an active query
// log directory the engine runs at most MaxConcurrent queries at once
// (Prometheus' active query tracker); close the tracker returned, if any,
// when the engine is done.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*promql.Engine, io.Closer, error) {
	var tracker *promql.ActiveQueryTracker
	if cfg.ActiveQueryLogDir != "" {
		var err error
		tracker, err = promql.NewActiveQueryTracker(cfg.ActiveQueryLogDir, cfg.MaxConcurrent, logger.With("component", "active-query-tracker"))
		if err != nil {
			return nil, nil, fmt.Errorf("active query tracker: %w", err)
		}
	}
	opts := promql.EngineOpts{
		Logger:                   logger.With("component", "promql"),
		Reg:                      prometheus.WrapRegistererWithPrefix("isobar_", reg),
		MaxSamples:               cfg.MaxSamples,
		Timeout:                  cfg.Timeout,
		LookbackDelta:            cfg.LookbackDelta,
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		EnablePerStepStats:       true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		Parser:                   parser.NewParser(ParserOptions(cfg)),
	}
	if tracker == nil {
		return promql.NewEngine(opts), io.NopCloser(nil), nil
	}
	opts.ActiveQueryTracker = tracker
	return promql.NewEngine(opts), tracker, nil
}

// ParserOptions is how the engine parses PromQL.
func ParserOptions(cfg Config) parser.Options {
	return parser.Options{EnableExperimentalFunctions: cfg.EnableExperimentalFunctions}
}
