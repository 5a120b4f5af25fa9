// Package profiling pushes continuous profiles to a Pyroscope server when an
// address is configured; pprof endpoints are served by the HTTP server.
package profiling

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/grafana/pyroscope-go"
)

// Config configures continuous profiling.
type Config struct {
	PyroscopeAddress string `yaml:"pyroscope_address"`
	ApplicationName  string `yaml:"application_name"`
}

// RegisterFlags registers the profiling flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.PyroscopeAddress, "profiling.pyroscope-address", "", "Pyroscope server to push CPU and memory profiles to, e.g. http://127.0.0.1:4040. Empty disables pushing.")
	f.StringVar(&c.ApplicationName, "profiling.application-name", "isobar", "Application name the profiles are pushed under.")
}

// Start begins pushing profiles if an address is set. The returned stop
// function is never nil.
func Start(c Config, instance string, logger *slog.Logger) (stop func(), err error) {
	if c.PyroscopeAddress == "" {
		return func() {}, nil
	}
	p, err := pyroscope.Start(pyroscope.Config{
		ApplicationName: c.ApplicationName,
		ServerAddress:   c.PyroscopeAddress,
		Tags:            map[string]string{"instance": instance},
		Logger:          nil,
		ProfileTypes: []pyroscope.ProfileType{
			pyroscope.ProfileCPU, pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace,
			pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace, pyroscope.ProfileGoroutines,
		},
	})
	if err != nil {
		return func() {}, fmt.Errorf("start pyroscope profiling: %w", err)
	}
	logger.Info("pushing profiles", "address", c.PyroscopeAddress)
	return func() { _ = p.Stop() }, nil
}
