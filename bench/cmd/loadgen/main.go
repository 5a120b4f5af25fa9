// Command loadgen remote-writes a realistic private-cloud workload of active
// series to a Prometheus remote-write 1.0 endpoint and reports the accepted
// samples per second, request latency, errors by status and, given the
// server's process id, its CPU and memory cost per sample and per series.
//
// See bench/README.md and the bench/loadgen package documentation.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/isobar-tsdb/isobar/bench/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the load and prints the summary; it returns the
// process exit code: 0 on success, 1 if the run failed or no sample was
// accepted, 2 on usage errors.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadgen.Config{Progress: stderr}
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:9009/api/v1/push", "remote-write endpoint (the only address contacted)")
	fs.IntVar(&cfg.Series, "series", 100000, "number of active series")
	fs.Int64Var(&cfg.Seed, "seed", 1, "workload seed; the same seed gives the same series")
	fs.IntVar(&cfg.Batch, "batch", loadgen.DefaultBatch, "series (samples) per request, like max_samples_per_send")
	fs.IntVar(&cfg.Concurrency, "concurrency", loadgen.DefaultConcurrency, "requests in flight")
	fs.DurationVar(&cfg.Duration, "duration", time.Minute, "length of the steady phase, after the warmup")
	fs.DurationVar(&cfg.Interval, "interval", loadgen.DefaultInterval, "scrape interval the series pretend to have: timestamp step per round")
	fs.Float64Var(&cfg.SamplesPerSecond, "samples-per-second", 0, "steady-phase send rate; 0 sends as fast as the server accepts")
	fs.DurationVar(&cfg.Lookback, "lookback", 0, "how far in the past the first round is stamped; 0 picks it (50m at full speed)")
	fs.StringVar(&cfg.Tenant, "tenant", "", "tenant sent as X-Scope-OrgID")
	fs.IntVar(&cfg.PID, "pid", 0, "server process id, to measure its CPU and RSS from /proc")
	fs.IntVar(&cfg.WarmupRounds, "warmup-rounds", 1, "rounds sent at full speed first, reported separately (the first one creates the series)")
	fs.DurationVar(&cfg.MaxWarmup, "max-warmup", loadgen.DefaultMaxWarmup, "upper bound on the warmup phase")
	fs.BoolVar(&cfg.Metadata, "metadata", true, "send one metadata (TYPE/HELP) request first, like Prometheus")
	fs.DurationVar(&cfg.Timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout")
	fs.DurationVar(&cfg.ProgressInterval, "progress", 5*time.Second, "progress line interval (on stderr)")
	out := fs.String("out", "", "also write the summary as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}

	res, runErr := loadgen.Run(ctx, cfg)
	if res.Series == 0 {
		fmt.Fprintf(stderr, "loadgen: %v\n", runErr)
		return 1
	}
	if err := res.WriteSummary(stdout); err != nil {
		fmt.Fprintf(stderr, "loadgen: write summary: %v\n", err)
		return 1
	}
	if *out != "" {
		if err := writeJSON(*out, &res); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintf(stderr, "loadgen: %v\n", runErr)
		return 1
	case res.TotalSamplesAccepted == 0:
		fmt.Fprintln(stderr, "loadgen: no sample was accepted")
		return 1
	}
	return 0
}

// writeJSON writes res, indented, to path.
func writeJSON(path string, res *loadgen.Result) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
