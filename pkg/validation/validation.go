// Package validation checks remote-write series against a tenant's limits
// before anything is stored, and says precisely what is wrong with a series.
//
// Labels and Samples are separate because they run at different places:
// samples are checked by the distributor for every request, labels only by
// the ingester when it does not know a series yet, since a series it knows
// carries exactly the labels that were checked when it was created.
package validation

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
)

// Reason names why a series was rejected; it is the "reason" label of the
// discarded-samples metric.
type Reason string

// The reasons a series is rejected.
const (
	MissingMetricName Reason = "missing_metric_name"
	InvalidMetricName Reason = "invalid_metric_name"
	InvalidLabelName  Reason = "invalid_label_name"
	InvalidLabelValue Reason = "invalid_label_value"
	EmptyLabelValue   Reason = "empty_label_value"
	DuplicateLabel    Reason = "duplicate_label_names"
	LabelsNotSorted   Reason = "labels_not_sorted"
	TooManyLabels     Reason = "max_label_names_per_series"
	LabelNameTooLong  Reason = "label_name_too_long"
	LabelValueTooLong Reason = "label_value_too_long"
	TooFarInFuture    Reason = "too_far_in_future"
	TooFarInPast      Reason = "too_far_in_past"
	InvalidHistogram  Reason = "invalid_native_histogram"
	NoSamples         Reason = "no_samples"
	TooManyHAClusters Reason = "too_many_ha_clusters"
)

// Reasons lists every reason, so metrics can be created up front.
var Reasons = []Reason{
	MissingMetricName, InvalidMetricName, InvalidLabelName, InvalidLabelValue, EmptyLabelValue,
	DuplicateLabel, LabelsNotSorted, TooManyLabels, LabelNameTooLong, LabelValueTooLong,
	TooFarInFuture, TooFarInPast, InvalidHistogram, NoSamples, TooManyHAClusters,
}

// Error says why one series was rejected.
type Error struct {
	Reason Reason
	msg    string
	series string
}

func (e *Error) Error() string { return e.msg + ": " + e.series }

// maxSeriesInMessage keeps error messages readable whatever a series holds.
const maxSeriesInMessage = 512

// Rejected reports a series refused for reason, outside the checks here
// (a distributor that could not encode what validation left of it).
func Rejected(reason Reason, ts *rwproto.TimeSeries, err error) *Error {
	return newError(reason, ts, "%v", err)
}

func newError(reason Reason, ts *rwproto.TimeSeries, format string, args ...any) *Error {
	return &Error{Reason: reason, msg: fmt.Sprintf(format, args...), series: formatSeries(ts.Labels)}
}

func formatSeries(ls []labels.Label) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", l.Name, l.Value)
		if b.Len() > maxSeriesInMessage {
			b.WriteString(", …")
			break
		}
	}
	b.WriteByte('}')
	return b.String()
}

// Character classes of legacy names, by byte.
const (
	labelStart  = 1 << iota // [a-zA-Z_]
	labelChar               // [a-zA-Z0-9_]
	metricStart             // [a-zA-Z_:]
	metricChar              // [a-zA-Z0-9_:]
)

// legacyClass is an immutable lookup table: a byte loop over it is several
// times faster than the rune-based checks of the model package.
var legacyClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			t[c] = labelStart | labelChar | metricStart | metricChar
		case c >= '0' && c <= '9':
			t[c] = labelChar | metricChar
		case c == ':':
			t[c] = metricStart | metricChar
		}
	}
	return t
}()

func validLegacyName(s string, start, char uint8) bool {
	if len(s) == 0 || legacyClass[s[0]]&start == 0 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if legacyClass[s[i]]&char == 0 {
			return false
		}
	}
	return true
}

func validLabelName(l *limits.Limits, s string) bool {
	if l.UTF8Names() {
		return model.UTF8Validation.IsValidLabelName(s)
	}
	return validLegacyName(s, labelStart, labelChar)
}

func validMetricName(l *limits.Limits, s string) bool {
	if l.UTF8Names() {
		return model.UTF8Validation.IsValidMetricName(s)
	}
	return validLegacyName(s, metricStart, metricChar)
}

// Samples checks the samples of one series against l at time nowMs, and
// drops its invalid exemplars (an exemplar never costs its series). The
// returned count is the number of exemplars dropped.
func Samples(l *limits.Limits, ts *rwproto.TimeSeries, nowMs int64) (droppedExemplars int, err *Error) {
	if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
		return 0, newError(NoSamples, ts, "series has no samples")
	}
	maxT := nowMs + int64(l.CreationGracePeriod)/1e6
	minT := int64(math.MinInt64)
	if past := int64(l.PastGracePeriod) / 1e6; past > 0 && nowMs-past < nowMs {
		minT = nowMs - past
	}
	checkTime := func(kind string, t int64) *Error {
		switch {
		case t > maxT:
			return newError(TooFarInFuture, ts, "%s timestamp %s is more than %s in the future (-validation.create-grace-period)",
				kind, formatTime(t), l.CreationGracePeriod)
		case t < minT:
			return newError(TooFarInPast, ts, "%s timestamp %s is more than %s in the past (-validation.past-grace-period)",
				kind, formatTime(t), l.PastGracePeriod)
		}
		return nil
	}
	for i := range ts.Samples {
		if err := checkTime("sample", ts.Samples[i].Timestamp); err != nil {
			return 0, err
		}
	}
	for i := range ts.Histograms {
		h := &ts.Histograms[i]
		if err := checkTime("histogram", h.Timestamp); err != nil {
			return 0, err
		}
		var verr error
		if h.IsFloatHistogram() {
			verr = h.ToFloatHistogram().Validate()
		} else {
			verr = h.ToIntHistogram().Validate()
		}
		if verr != nil {
			return 0, newError(InvalidHistogram, ts, "invalid native histogram at %d: %v", h.Timestamp, verr)
		}
	}
	return exemplars(l, ts, minT, maxT), nil
}

// formatTime writes a millisecond timestamp as UTC, whatever its size.
func formatTime(t int64) string {
	return model.Time(t).Time().UTC().Format("2006-01-02T15:04:05.000Z")
}

// Labels checks the labels of one series against l.
func Labels(l *limits.Limits, ts *rwproto.TimeSeries) *Error {
	if ts.NumLabels > l.MaxLabelNamesPerSeries {
		return newError(TooManyLabels, ts, "series has %d labels, more than the limit of %d (-validation.max-label-names-per-series)",
			ts.NumLabels, l.MaxLabelNamesPerSeries)
	}
	hasName := false
	for i := range ts.Labels {
		lb := &ts.Labels[i]
		switch {
		case len(lb.Name) > l.MaxLabelNameLength:
			return newError(LabelNameTooLong, ts, "label name %.64q… is %d bytes long, more than the limit of %d (-validation.max-length-label-name)",
				lb.Name, len(lb.Name), l.MaxLabelNameLength)
		case !validLabelName(l, lb.Name):
			return newError(InvalidLabelName, ts, "invalid label name %q", lb.Name)
		case len(lb.Value) > l.MaxLabelValueLength:
			return newError(LabelValueTooLong, ts, "value of label %q is %d bytes long, more than the limit of %d (-validation.max-length-label-value)",
				lb.Name, len(lb.Value), l.MaxLabelValueLength)
		case lb.Value == "":
			return newError(EmptyLabelValue, ts, "label %q has an empty value", lb.Name)
		case !utf8.ValidString(lb.Value):
			return newError(InvalidLabelValue, ts, "value of label %q is not valid UTF-8", lb.Name)
		}
		if i > 0 {
			prev := ts.Labels[i-1].Name
			if c := strings.Compare(lb.Name, prev); c <= 0 {
				if c == 0 {
					return newError(DuplicateLabel, ts, "duplicate label name %q", lb.Name)
				}
				return newError(LabelsNotSorted, ts, "labels are not sorted by name: %q comes after %q", lb.Name, prev)
			}
		}
		if lb.Name == labels.MetricName {
			hasName = true
			if !validMetricName(l, lb.Value) {
				return newError(InvalidMetricName, ts, "invalid metric name %q", lb.Value)
			}
		}
	}
	if !hasName {
		return newError(MissingMetricName, ts, "series has no metric name (label __name__)")
	}
	return nil
}

// exemplars drops, in place, exemplars outside [minT, maxT] or whose label
// set is longer than Prometheus allows.
func exemplars(l *limits.Limits, ts *rwproto.TimeSeries, minT, maxT int64) int {
	kept := ts.Exemplars[:0]
	for _, e := range ts.Exemplars {
		if e.Timestamp >= minT && e.Timestamp <= maxT && exemplarLabelsOK(l, e.Labels) {
			kept = append(kept, e)
		}
	}
	dropped := len(ts.Exemplars) - len(kept)
	ts.Exemplars = kept
	return dropped
}

func exemplarLabelsOK(l *limits.Limits, ls []labels.Label) bool {
	runes := 0
	for _, lb := range ls {
		if !validLabelName(l, lb.Name) || !utf8.ValidString(lb.Value) {
			return false
		}
		runes += utf8.RuneCountInString(lb.Name) + utf8.RuneCountInString(lb.Value)
	}
	return runes <= exemplar.ExemplarMaxLabelSetLength
}
