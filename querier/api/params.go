package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// maxPointsPerSeries is the resolution limit Prometheus puts on range
// queries: enough for 60s steps over a week or 1h steps over a year.
const maxPointsPerSeries = 11000

// Values of the "stats" parameter Prometheus documents. Any other non-empty
// value still enables statistics, with a deprecation warning.
const (
	statsTrue = "true"
	statsAll  = "all"
)

// useStartTimestampsHeader lets a client override whether the engine uses
// start timestamps, as in Prometheus.
const useStartTimestampsHeader = "X-Prometheus-Use-Start-Timestamps"

var (
	// minTime is the default start of optional time ranges. Like Prometheus'
	// v1.MinTime it is higher than the lowest representable time, for
	// compatibility with clients that send it back.
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	// maxTime is the default end of optional time ranges, see minTime.
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()

	// minTimeFormatted and maxTimeFormatted are accepted by parseTime even
	// though time.Parse cannot read their five-digit years.
	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

// parseTime reads a timestamp given as float Unix seconds (rounded to the
// millisecond) or as RFC 3339, and the formatted minTime and maxTime.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseTimeParam reads the optional time parameter name, returning def when
// it is absent.
func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// parseDuration reads a duration given as float seconds or in the
// Prometheus duration syntax ("1m30s").
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ns := d * float64(time.Second)
		// float64(math.MaxInt64) is 2^63, which int64 cannot hold, and NaN
		// fails every comparison.
		if math.IsNaN(ns) || ns >= float64(math.MaxInt64) || ns < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ns), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// parseLimit reads the "limit" parameter; 0 means no limit.
func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	limit, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if limit < 0 {
		return 0, errors.New("limit must be non-negative")
	}
	return limit, nil
}

// hintLimit asks storage for one result more than limit, so that
// truncation can be detected and reported.
func hintLimit(limit int) int {
	if limit > 0 && limit < math.MaxInt {
		return limit + 1
	}
	return limit
}

// parseMatchers parses match[] selectors and rejects any set whose matchers
// all match the empty string, as Prometheus does.
func parseMatchers(p parser.Parser, selectors []string) ([][]*labels.Matcher, error) {
	sets, err := p.ParseMetricSelectors(selectors)
	if err != nil {
		return nil, err
	}
	for _, set := range sets {
		if !hasNonEmptyMatcher(set) {
			return nil, errors.New("match[] must contain at least one non-empty matcher")
		}
	}
	return sets, nil
}

func hasNonEmptyMatcher(set []*labels.Matcher) bool {
	for _, m := range set {
		if m != nil && !m.Matches("") {
			return true
		}
	}
	return false
}

// parseTimeout reads the optional "timeout" parameter; 0 means none.
func parseTimeout(r *http.Request) (time.Duration, *apiError) {
	v := r.FormValue("timeout")
	if v == "" {
		return 0, nil
	}
	timeout, err := parseDuration(v)
	if err != nil {
		return 0, invalidParam(err, "timeout")
	}
	if timeout <= 0 {
		return 0, invalidParam(fmt.Errorf("timeout must be positive, got %s", timeout), "timeout")
	}
	return timeout, nil
}

// queryOpts builds the engine options of a query from the "lookback_delta"
// and "stats" parameters and the X-Prometheus-Use-Start-Timestamps header.
func queryOpts(r *http.Request) (promql.QueryOpts, error) {
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("error parsing lookback delta duration: %w", err)
		}
		lookback = d
	}
	var useStartTimestamps *bool
	if v := r.Header.Get(useStartTimestampsHeader); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("error parsing %s header: %w", useStartTimestampsHeader, err)
		}
		useStartTimestamps = &b
	}
	return promql.NewPrometheusQueryOpts(r.FormValue("stats") == statsAll, lookback, useStartTimestamps), nil
}

// statsWarning returns the deprecation warning Prometheus attaches when the
// "stats" parameter is outside its documented values.
func statsWarning(s string) error {
	switch s {
	case "", statsTrue, statsAll:
		return nil
	}
	return fmt.Errorf("value %q for parameter \"stats\" is deprecated and will be rejected in the next major release, use %q or %q", s, statsTrue, statsAll)
}

// rangeParams holds the validated start, end and step of a range query.
type rangeParams struct {
	start, end time.Time
	step       time.Duration
}

// parseRange validates "start", "end" and "step" of a range query with
// Prometheus' rules and messages.
func parseRange(r *http.Request) (rangeParams, *apiError) {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return rangeParams{}, invalidParam(err, "start")
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return rangeParams{}, invalidParam(err, "end")
	}
	if end.Before(start) {
		return rangeParams{}, invalidParam(errors.New("end timestamp must not be before start time"), "end")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return rangeParams{}, invalidParam(err, "step")
	}
	if step <= 0 {
		return rangeParams{}, invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step")
	}
	if end.Sub(start)/step > maxPointsPerSeries {
		return rangeParams{}, badData(errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"))
	}
	return rangeParams{start: start, end: end, step: step}, nil
}
