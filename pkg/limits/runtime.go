package limits

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/grafana/dskit/runtimeconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
)

// RuntimeConfig names the runtime configuration file: per-tenant limits
// that change without a restart.
type RuntimeConfig struct {
	File         string        `yaml:"file"`
	ReloadPeriod time.Duration `yaml:"period"`
}

// RegisterFlags registers the runtime configuration's flags.
func (c *RuntimeConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.File, "runtime-config.file", "", "YAML file of per-tenant limits (overrides: {TENANT: {LIMIT: VALUE}}), read at start and again whenever it changes: a tenant's entry there overrides its tenant_limits entry of the configuration file field by field, and takes effect for tenants already open. A file that fails to parse or validate is refused whole, and the last good one stays in force. /runtime_config shows the limits in force.")
	f.DurationVar(&c.ReloadPeriod, "runtime-config.reload-period", 10*time.Second, "How often the runtime configuration file is checked for changes.")
}

// runtimeFile is the runtime configuration file.
type runtimeFile struct {
	Overrides map[string]yaml.Node `yaml:"overrides"`
}

// NewRuntimeConfig returns a service that reads the runtime configuration
// file when it starts (a bad file fails the start) and then every reload
// period, putting its overrides in force in o. A bad file later is logged
// and counted (isobar_runtime_config_last_reload_successful is 0), and the
// last good one stays in force.
func NewRuntimeConfig(c RuntimeConfig, o *Overrides, logger *slog.Logger, reg prometheus.Registerer) (*runtimeconfig.Manager, error) {
	if c.ReloadPeriod <= 0 {
		return nil, fmt.Errorf("-runtime-config.reload-period must be positive, is %s", c.ReloadPeriod)
	}
	logger = logger.With("component", "runtime-config", "file", c.File)
	load := func(r io.Reader) (any, error) {
		var f runtimeFile
		dec := yaml.NewDecoder(r)
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("parse: %w", err)
		}
		tenants, err := o.parse(f.Overrides)
		if err != nil {
			return nil, err
		}
		o.set(tenants)
		logger.Info("runtime configuration in force", "tenants", len(f.Overrides))
		return &f, nil
	}
	cfg := runtimeconfig.Config{ReloadPeriod: c.ReloadPeriod, LoadPath: []string{c.File}, Loader: load}
	return runtimeconfig.New(cfg, "runtime-config", prometheus.WrapRegistererWithPrefix("isobar_", reg), isolog.GoKit(logger))
}

// ServeHTTP shows the limits in force as YAML: the defaults and every
// overridden tenant's limits, or with ?mode=diff only what differs from
// the defaults.
func (o *Overrides) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defaults := o.Defaults()
	type page struct {
		Defaults  *Limits        `yaml:"defaults,omitempty"`
		Overrides map[string]any `yaml:"overrides"`
	}
	out := page{Overrides: map[string]any{}}
	switch mode := r.URL.Query().Get("mode"); mode {
	case "", "all":
		out.Defaults = &defaults
		for id, l := range o.Overridden() {
			out.Overrides[id] = l
		}
	case "diff":
		base, err := fieldsOf(&defaults)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for id, l := range o.Overridden() {
			fields, err := fieldsOf(l)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			for k, v := range fields {
				if reflect.DeepEqual(v, base[k]) {
					delete(fields, k)
				}
			}
			out.Overrides[id] = fields
		}
	default:
		http.Error(w, fmt.Sprintf("unknown mode %q: use all or diff", mode), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/yaml; charset=utf-8")
	enc := yaml.NewEncoder(w)
	_ = enc.Encode(out)
	_ = enc.Close()
}

// fieldsOf gives the YAML fields of l by name.
func fieldsOf(l *Limits) (map[string]any, error) {
	raw, err := yaml.Marshal(l)
	if err != nil {
		return nil, err
	}
	fields := map[string]any{}
	return fields, yaml.Unmarshal(raw, &fields)
}

// Collector exports the numeric limits: isobar_limits_defaults for the
// defaults and isobar_limits_overrides for each tenant with overrides,
// durations in seconds.
func (o *Overrides) Collector() prometheus.Collector { return limitsCollector{o} }

var (
	defaultsDesc  = prometheus.NewDesc("isobar_limits_defaults", "The default of each numeric per-tenant limit (durations in seconds).", []string{"limit"}, nil)
	overridesDesc = prometheus.NewDesc("isobar_limits_overrides", "Each numeric limit in force for a tenant with overrides (durations in seconds).", []string{"limit", "tenant"}, nil)
)

type limitsCollector struct{ o *Overrides }

func (c limitsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- defaultsDesc
	ch <- overridesDesc
}

func (c limitsCollector) Collect(ch chan<- prometheus.Metric) {
	defaults := c.o.Defaults()
	eachNumber(&defaults, func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(defaultsDesc, prometheus.GaugeValue, v, name)
	})
	for id, l := range c.o.Overridden() {
		eachNumber(l, func(name string, v float64) {
			ch <- prometheus.MustNewConstMetric(overridesDesc, prometheus.GaugeValue, v, name, id)
		})
	}
}

// eachNumber calls f with the YAML name and value of every numeric limit.
func eachNumber(l *Limits, f func(name string, v float64)) {
	v := reflect.ValueOf(l).Elem()
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		switch x := v.Field(i).Interface().(type) {
		case int:
			f(name, float64(x))
		case float64:
			f(name, x)
		case model.Duration:
			f(name, time.Duration(x).Seconds())
		}
	}
}
