// Command isobar runs Isobar, a horizontally scalable time-series backend
// for Prometheus metrics. -target picks the components; the default, all,
// runs a complete system in one process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/isobar-tsdb/isobar/cmd/isobar/app"
	"github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/profiling"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "isobar:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := app.Load(args)
	if err != nil {
		return err
	}
	logger, err := log.New(cfg.Log, os.Stderr)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	stopProfiling, err := profiling.Start(cfg.Profiling, host, logger)
	if err != nil {
		return err
	}
	defer stopProfiling()

	a, err := app.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	return a.Run(ctx)
}
