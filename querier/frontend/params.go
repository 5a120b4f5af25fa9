package frontend

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// parseTime reads a time parameter as Prometheus does: float Unix seconds
// or RFC 3339. It returns milliseconds.
func parseTime(s string) (int64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/1e3 {
			return 0, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		return int64(math.Round(f * 1000)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid timestamp", s)
	}
	return t.UnixMilli(), nil
}

// parseStep reads a duration parameter as Prometheus does: float seconds
// or a Prometheus duration. It returns milliseconds.
func parseStep(s string) (int64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		ms := f * 1000
		if math.IsNaN(ms) || math.IsInf(ms, 0) || ms >= math.MaxInt64 || ms != math.Trunc(ms) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
		}
		return int64(ms), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
	}
	return time.Duration(d).Milliseconds(), nil
}

// formatTime writes milliseconds as float Unix seconds, exactly.
func formatTime(ms int64) string {
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	return fmt.Sprintf("%s%d.%03d", sign, ms/1000, ms%1000)
}
