package remotewrite

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	otlpconv "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// otlpLookback is the PromQL lookback the translator spaces target_info
// samples by.
const otlpLookback = 5 * time.Minute

// otlpSamplesSlack and half a sample a byte of the request bound the
// samples a request may translate to. The translator writes a target_info
// sample every half lookback between a resource's earliest and latest data
// points: two points centuries apart in a tiny request would otherwise
// make billions.
const otlpSamplesSlack = 10_000

// OTLP returns the handler of POST /otlp/v1/metrics: OpenTelemetry metrics,
// protobuf or JSON, plain or gzip, translated by Prometheus' OTLP
// translator with the tenant's settings (overrides) and stored like a
// remote write, with the same limits.
func (h *Handler) OTLP(overrides *limits.Overrides) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		contentType, err := h.serveOTLP(r, overrides)
		if err != nil {
			h.fail(w, err, protocolOTLP)
			return
		}
		h.requests.WithLabelValues("2xx", "", protocolOTLP).Inc()
		// The answer is an ExportMetricsServiceResponse in the request's
		// encoding; an empty one says that everything was taken.
		resp := pmetricotlp.NewExportResponse()
		var body []byte
		if contentType == otlpJSON {
			body, err = resp.MarshalJSON()
		} else {
			body, err = resp.MarshalProto()
		}
		if err != nil {
			h.fail(w, fmt.Errorf("encode OTLP response: %w", err), protocolOTLP)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

const (
	otlpProto = "application/x-protobuf"
	otlpJSON  = "application/json"
)

func (h *Handler) serveOTLP(r *http.Request, overrides *limits.Overrides) (contentType string, err error) {
	tenantID, err := tenant.From(r.Context())
	if err != nil {
		return "", errStatus(http.StatusUnauthorized, "%v", err)
	}
	contentType, _, err = mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (contentType != otlpProto && contentType != otlpJSON) {
		return otlpProto, errStatus(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: OTLP takes %s or %s", r.Header.Get("Content-Type"), otlpProto, otlpJSON)
	}
	compressed, maxBytes, decLimits, release, err := h.admit(r, tenantID, nil)
	defer release()
	if err != nil {
		return contentType, err
	}
	body, err := gunzip(r.Header.Get("Content-Encoding"), compressed, maxBytes)
	if err != nil {
		return contentType, err
	}
	req := pmetricotlp.NewExportRequest()
	if contentType == otlpJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		return contentType, errStatus(http.StatusBadRequest, "decode OTLP request: %v", err)
	}

	l := overrides.For(tenantID)
	md := req.Metrics()
	var refused error
	if !l.OTLPAcceptDeltaTemporality {
		if names := deltaMetrics(md); len(names) > 0 {
			refused = fmt.Errorf("metrics of delta temporality are not stored (-distributor.otlp.accept-delta-temporality): %s", strings.Join(names, ", "))
		}
	}
	c := &otlpCollector{maxSeries: decLimits.MaxSeries, maxSamples: len(body)/2 + otlpSamplesSlack, index: map[uint64][]int{}, families: map[string]struct{}{}}
	conv := otlpconv.NewPrometheusConverter(c)
	annots, convErr := conv.FromMetrics(r.Context(), md, otlpSettings(l))
	if c.err != nil {
		return contentType, c.err
	}
	if len(annots) > 0 {
		ws, _ := annots.AsStrings("", 0, 0)
		h.logger.Debug("OTLP translation warnings", "tenant", tenantID, "warnings", ws)
	}
	if refused == nil && convErr != nil {
		refused = fmt.Errorf("some metrics could not be translated and are not stored: %w", convErr)
	}
	if rw := &c.req; len(rw.Timeseries) > 0 || len(rw.Metadata) > 0 {
		if err := h.dist.Push(r.Context(), rw); err != nil {
			return contentType, err
		}
	}
	if refused != nil {
		return contentType, errStatus(http.StatusBadRequest, "%v; the other metrics of the request were stored", refused)
	}
	return contentType, nil
}

// otlpSettings are the translator's settings for a tenant: Prometheus'
// defaults, changed by the tenant's OTLP limits.
func otlpSettings(l *limits.Limits) otlpconv.Settings {
	cfg := config.DefaultOTLPConfig
	cfg.PromoteResourceAttributes = l.OTLPPromoteResourceAttributes
	cfg.KeepIdentifyingResourceAttributes = l.OTLPKeepIdentifyingResourceAttributes
	cfg.ConvertHistogramsToNHCB = l.OTLPConvertHistogramsToNHCB
	cfg.TranslationStrategy = otlptranslator.TranslationStrategyOption(l.OTLPTranslationStrategy)
	return otlpconv.Settings{
		AddMetricSuffixes:                    cfg.TranslationStrategy.ShouldAddSuffixes(),
		AllowUTF8:                            !cfg.TranslationStrategy.ShouldEscape(),
		PromoteResourceAttributes:            otlpconv.NewPromoteResourceAttributes(cfg),
		KeepIdentifyingResourceAttributes:    cfg.KeepIdentifyingResourceAttributes,
		ConvertHistogramsToNHCB:              cfg.ConvertHistogramsToNHCB,
		DisableTargetInfo:                    l.OTLPDisableTargetInfo,
		AllowDeltaTemporality:                l.OTLPAcceptDeltaTemporality,
		LookbackDelta:                        otlpLookback,
		LabelNameUnderscoreSanitization:      cfg.LabelNameUnderscoreSanitization,
		LabelNamePreserveMultipleUnderscores: cfg.LabelNamePreserveMultipleUnderscores,
	}
}

// deltaMetrics names the metrics of delta temporality in md.
func deltaMetrics(md pmetric.Metrics) []string {
	var names []string
	for i := range md.ResourceMetrics().Len() {
		sms := md.ResourceMetrics().At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				m := ms.At(k)
				temporality := pmetric.AggregationTemporalityUnspecified
				switch m.Type() {
				case pmetric.MetricTypeSum:
					temporality = m.Sum().AggregationTemporality()
				case pmetric.MetricTypeHistogram:
					temporality = m.Histogram().AggregationTemporality()
				case pmetric.MetricTypeExponentialHistogram:
					temporality = m.ExponentialHistogram().AggregationTemporality()
				}
				if temporality == pmetric.AggregationTemporalityDelta {
					names = append(names, m.Name())
				}
			}
		}
	}
	return names
}

// gunzip decodes a gzip body, refusing more than max decoded bytes.
func gunzip(encoding string, src []byte, max int) ([]byte, error) {
	switch encoding {
	case "", "identity":
		return src, nil
	case "gzip":
	default:
		return nil, errStatus(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q: OTLP takes gzip or none", encoding)
	}
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, errStatus(http.StatusBadRequest, "decode gzip body: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, errStatus(http.StatusBadRequest, "decode gzip body: %v", err)
	}
	if len(out) > max {
		return nil, errStatus(http.StatusRequestEntityTooLarge, "decompressed body exceeds the limit of %d bytes (-distributor.max-recv-msg-size)", max)
	}
	return out, nil
}

// otlpCollector is the storage.AppenderV2 the translator writes into: it
// gathers the series, samples, histograms, exemplars and metadata of a
// request in remote write's shape, for the distributor.
type otlpCollector struct {
	maxSeries, maxSamples int
	samples               int
	req                   rwproto.Request
	lsets                 []labels.Labels
	index                 map[uint64][]int // label hash → series
	families              map[string]struct{}
	err                   error
}

var _ storage.AppenderV2 = (*otlpCollector)(nil)

func (c *otlpCollector) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	i := int(ref) - 1
	if i < 0 || i >= len(c.lsets) || !labels.Equal(c.lsets[i], ls) {
		var err error
		if i, err = c.series(ls); err != nil {
			return 0, err
		}
	}
	if c.samples++; c.samples > c.maxSamples {
		c.err = errStatus(http.StatusBadRequest, "request translates to more than %d samples (half a sample a byte, and %d): its data points span too long a time for its target_info samples", c.maxSamples, otlpSamplesSlack)
		return 0, c.err
	}
	ts := &c.req.Timeseries[i]
	switch {
	case h != nil:
		ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(t, h))
	case fh != nil:
		ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(t, fh))
	default:
		ts.Samples = append(ts.Samples, rwproto.Sample{Timestamp: t, Value: v, StartTimestamp: st})
	}
	for _, e := range opts.Exemplars {
		ex := rwproto.Exemplar{Value: e.Value, Timestamp: e.Ts}
		e.Labels.Range(func(l labels.Label) { ex.Labels = append(ex.Labels, l) })
		ts.Exemplars = append(ts.Exemplars, ex)
	}
	if family := opts.MetricFamilyName; family != "" && !opts.Metadata.IsEmpty() {
		if _, seen := c.families[family]; !seen {
			family = strings.Clone(family) // the translator reuses its bytes
			c.families[family] = struct{}{}
			c.req.Metadata = append(c.req.Metadata, rwproto.Metadata{
				Type: prompb.FromMetadataType(opts.Metadata.Type), MetricFamilyName: family,
				Help: opts.Metadata.Help, Unit: opts.Metadata.Unit,
			})
		}
	}
	return storage.SeriesRef(i + 1), nil
}

// series finds or adds the series of ls.
func (c *otlpCollector) series(ls labels.Labels) (int, error) {
	hash := ls.Hash()
	for _, i := range c.index[hash] {
		if labels.Equal(c.lsets[i], ls) {
			return i, nil
		}
	}
	if c.maxSeries > 0 && len(c.lsets) >= c.maxSeries {
		c.err = errStatus(http.StatusRequestEntityTooLarge, "request translates to more than %d series (-distributor.max-series-per-request)", c.maxSeries)
		return 0, c.err
	}
	ts := rwproto.TimeSeries{}
	ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, l) })
	ts.NumLabels = len(ts.Labels)
	c.req.Timeseries = append(c.req.Timeseries, ts)
	c.lsets = append(c.lsets, ls)
	i := len(c.lsets) - 1
	c.index[hash] = append(c.index[hash], i)
	return i, nil
}

// Commit and Rollback do nothing: the handler pushes what was gathered.
func (c *otlpCollector) Commit() error   { return nil }
func (c *otlpCollector) Rollback() error { return nil }
