// Package log builds the process logger (log/slog) and adapts it to the
// go-kit logger interface that dskit components take.
package log

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	kitlog "github.com/go-kit/log"
)

// Config selects the log level and format.
type Config struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// RegisterFlags registers the log flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Level, "log.level", "info", "Log level: debug, info, warn or error.")
	f.StringVar(&c.Format, "log.format", "logfmt", "Log format: logfmt or json.")
}

// Validate checks the level and format names.
func (c *Config) Validate() error {
	if _, err := parseLevel(c.Level); err != nil {
		return err
	}
	if c.Format != "logfmt" && c.Format != "json" {
		return fmt.Errorf("unknown log format %q: use logfmt or json", c.Format)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing to w.
func New(c Config, w io.Writer) (*slog.Logger, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	level, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// GoKit adapts l to go-kit's Logger. A "level" key among the key-value pairs
// picks the slog level; a "msg" key becomes the message.
func GoKit(l *slog.Logger) kitlog.Logger {
	return kitAdapter{l: l}
}

type kitAdapter struct{ l *slog.Logger }

func (a kitAdapter) Log(keyvals ...any) error {
	level := slog.LevelInfo
	msg := ""
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		switch key {
		case "level":
			level = kitLevel(keyvals[i+1])
			continue
		case "msg":
			msg = fmt.Sprint(keyvals[i+1])
			continue
		}
		v := keyvals[i+1]
		if err, ok := v.(error); ok {
			// slog prints values with %+v: errors wrapped by pkg/errors
			// (dskit's) would bring their stack traces.
			v = err.Error()
		}
		attrs = append(attrs, key, v)
	}
	if len(keyvals)%2 == 1 {
		attrs = append(attrs, "extra", keyvals[len(keyvals)-1])
	}
	a.l.Log(nil, level, msg, attrs...) //nolint:sloglint // keys come from dskit
	return nil
}

func kitLevel(v any) slog.Level {
	switch strings.ToLower(fmt.Sprint(v)) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
