package compactor

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Config configures the compactor.
type Config struct {
	// Dir is the local working directory, where source blocks are
	// downloaded and new blocks written; set by the caller.
	Dir string `yaml:"-"`

	Interval            time.Duration  `yaml:"interval"`
	BlockRanges         DurationList   `yaml:"block_ranges"`
	ConsistencyDelay    time.Duration  `yaml:"consistency_delay"`
	DeletionDelay       time.Duration  `yaml:"deletion_delay"`
	CleanupPartialAfter time.Duration  `yaml:"cleanup_partial_after"`
	RetentionPeriod     model.Duration `yaml:"retention_period"`
	Concurrency         int            `yaml:"concurrency"`
}

// RegisterFlags registers the compactor flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.Interval, "compactor.interval", 15*time.Minute, "How often every owned tenant is compacted and its bucket index written; queriers refuse an index older than -querier.bucket-index-max-stale-period.")
	c.BlockRanges = DurationList{2 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	f.Var(&c.BlockRanges, "compactor.block-ranges", "Comma-separated block ranges, ascending, each a multiple of the one before. Blocks of an aligned window of the first range (the ingesters' block range) are merged vertically; windows of the others are merged once complete.")
	f.DurationVar(&c.ConsistencyDelay, "compactor.consistency-delay", 30*time.Minute, "Do not compact a window while any of its ingester-shipped blocks was uploaded more recently than this, so that the blocks of all replicas have arrived.")
	f.DurationVar(&c.DeletionDelay, "compactor.deletion-delay", 12*time.Hour, "How long a block marked for deletion stays in the bucket, so queries that already planned to read it still can.")
	f.DurationVar(&c.CleanupPartialAfter, "compactor.cleanup-partial-after", 24*time.Hour, "Delete block directories without meta.json whose newest object is older than this.")
	f.Var(&c.RetentionPeriod, "compactor.retention-period", "Mark blocks whose newest sample is older than this for deletion. 0 keeps blocks forever. Can be overridden per tenant.")
	f.IntVar(&c.Concurrency, "compactor.concurrency", 1, "How many tenants are compacted at once.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("compactor working directory is not set")
	case c.Interval <= 0:
		return fmt.Errorf("-compactor.interval must be positive, is %s", c.Interval)
	case c.ConsistencyDelay < 0:
		return fmt.Errorf("-compactor.consistency-delay must not be negative, is %s", c.ConsistencyDelay)
	case c.DeletionDelay < 0:
		return fmt.Errorf("-compactor.deletion-delay must not be negative, is %s", c.DeletionDelay)
	case c.CleanupPartialAfter <= 0:
		return fmt.Errorf("-compactor.cleanup-partial-after must be positive, is %s", c.CleanupPartialAfter)
	case c.RetentionPeriod < 0:
		return fmt.Errorf("-compactor.retention-period must not be negative, is %s", c.RetentionPeriod)
	case c.Concurrency <= 0:
		return fmt.Errorf("-compactor.concurrency must be positive, is %d", c.Concurrency)
	}
	return c.BlockRanges.validate()
}

// DurationList is a flag.Value holding a comma-separated list of
// durations, such as "2h,12h,1d". In YAML it is a list or such a string.
type DurationList []time.Duration

// String implements flag.Value.
func (d *DurationList) String() string {
	if d == nil {
		return ""
	}
	s := make([]string, len(*d))
	for i, v := range *d {
		s[i] = model.Duration(v).String()
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value.
func (d *DurationList) Set(s string) error {
	var out DurationList
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		v, err := model.ParseDuration(p)
		if err != nil {
			return fmt.Errorf("parse duration %q: %w", p, err)
		}
		out = append(out, time.Duration(v))
	}
	*d = out
	return nil
}

// UnmarshalYAML accepts a list of durations or a comma-separated string.
func (d *DurationList) UnmarshalYAML(unmarshal func(any) error) error {
	var list []string
	if err := unmarshal(&list); err == nil {
		return d.Set(strings.Join(list, ","))
	}
	var s string
	if err := unmarshal(&s); err != nil {
		return fmt.Errorf("block ranges: want a list of durations or a comma-separated string: %w", err)
	}
	return d.Set(s)
}

// MarshalYAML writes the list of durations.
func (d DurationList) MarshalYAML() (any, error) {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = model.Duration(v).String()
	}
	return s, nil
}

func (d DurationList) validate() error {
	if len(d) == 0 {
		return errors.New("-compactor.block-ranges must list at least one range")
	}
	for i, r := range d {
		switch {
		case r < time.Millisecond || r%time.Millisecond != 0:
			return fmt.Errorf("-compactor.block-ranges: range %s is not a positive whole number of milliseconds", r)
		case i > 0 && (r <= d[i-1] || r%d[i-1] != 0):
			return fmt.Errorf("-compactor.block-ranges: range %s is not a larger multiple of %s", r, d[i-1])
		}
	}
	return nil
}

// millis returns the ranges in milliseconds.
func (d DurationList) millis() []int64 {
	out := make([]int64, len(d))
	for i, r := range d {
		out[i] = r.Milliseconds()
	}
	return out
}
