// Package engine configures the PromQL engine the querier and the ruler use.
package engine

import (
	"flag"
	"fmt"
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
}

// RegisterFlags registers the engine flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.Timeout, "querier.timeout", 2*time.Minute, "Maximum time a query may take.")
	f.IntVar(&c.MaxSamples, "querier.max-samples", 50_000_000, "Maximum number of samples a query may hold in memory at once.")
	f.DurationVar(&c.LookbackDelta, "querier.lookback-delta", 5*time.Minute, "How far back an instant vector selector looks for a sample.")
	f.BoolVar(&c.EnableExperimentalFunctions, "querier.enable-experimental-functions", false, "Allow experimental PromQL functions.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Timeout <= 0 || c.MaxSamples <= 0 || c.LookbackDelta <= 0 {
		return fmt.Errorf("-querier.timeout, -querier.max-samples and -querier.lookback-delta must be positive")
	}
	return nil
}

// New returns an engine with the configured limits.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Logger:                   logger.With("component", "promql"),
		Reg:                      prometheus.WrapRegistererWithPrefix("isobar_", reg),
		MaxSamples:               cfg.MaxSamples,
		Timeout:                  cfg.Timeout,
		LookbackDelta:            cfg.LookbackDelta,
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		EnablePerStepStats:       true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		Parser:                   parser.NewParser(parser.Options{EnableExperimentalFunctions: cfg.EnableExperimentalFunctions}),
	})
}
