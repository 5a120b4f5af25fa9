package compactor

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestConfigDefaults(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.Equal(t, 15*time.Minute, cfg.Interval)
	require.Equal(t, DurationList{2 * time.Hour, 12 * time.Hour, 24 * time.Hour}, cfg.BlockRanges)
	require.Equal(t, 30*time.Minute, cfg.ConsistencyDelay)
	require.Equal(t, 12*time.Hour, cfg.DeletionDelay)
	require.Equal(t, 24*time.Hour, cfg.CleanupPartialAfter)
	require.Zero(t, cfg.RetentionPeriod)
	require.Equal(t, 1, cfg.Concurrency)
	require.Equal(t, "2h,12h,1d", fs.Lookup("compactor.block-ranges").DefValue)
	require.ErrorContains(t, cfg.Validate(), "working directory")
	cfg.Dir = t.TempDir()
	require.NoError(t, cfg.Validate())

	require.NoError(t, fs.Parse([]string{"-compactor.block-ranges=1h, 4h,1d", "-compactor.retention-period=30d"}))
	require.Equal(t, DurationList{time.Hour, 4 * time.Hour, 24 * time.Hour}, cfg.BlockRanges)
	require.Equal(t, 30*24*time.Hour, time.Duration(cfg.RetentionPeriod))
	require.Error(t, fs.Parse([]string{"-compactor.block-ranges=2h,x"}))
}

func TestConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		err    string
	}{
		"ok":                   {mutate: func(*Config) {}},
		"no ranges":            {mutate: func(c *Config) { c.BlockRanges = nil }, err: "at least one"},
		"ranges not ascending": {mutate: func(c *Config) { c.BlockRanges = DurationList{12 * time.Hour, 2 * time.Hour} }, err: "larger multiple"},
		"ranges not multiples": {mutate: func(c *Config) { c.BlockRanges = DurationList{2 * time.Hour, 3 * time.Hour} }, err: "larger multiple"},
		"sub-ms range":         {mutate: func(c *Config) { c.BlockRanges = DurationList{time.Microsecond} }, err: "milliseconds"},
		"zero interval":        {mutate: func(c *Config) { c.Interval = 0 }, err: "interval"},
		"negative delay":       {mutate: func(c *Config) { c.ConsistencyDelay = -time.Second }, err: "consistency-delay"},
		"zero concurrency":     {mutate: func(c *Config) { c.Concurrency = 0 }, err: "concurrency"},
		"zero partial cleanup": {mutate: func(c *Config) { c.CleanupPartialAfter = 0 }, err: "cleanup-partial-after"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := defaultConfig(t)
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestConfigYAML(t *testing.T) {
	for name, doc := range map[string]string{
		"list":   "block_ranges: [2h, 12h]\nretention_period: 1w\n",
		"string": "block_ranges: 2h,12h\nretention_period: 1w\n",
	} {
		t.Run(name, func(t *testing.T) {
			var cfg Config
			require.NoError(t, yaml.Unmarshal([]byte(doc), &cfg))
			require.Equal(t, DurationList{2 * time.Hour, 12 * time.Hour}, cfg.BlockRanges)
			require.Equal(t, 7*24*time.Hour, time.Duration(cfg.RetentionPeriod))
			out, err := yaml.Marshal(cfg)
			require.NoError(t, err)
			require.Contains(t, string(out), "block_ranges:\n    - 2h\n    - 12h\n")
		})
	}
}
