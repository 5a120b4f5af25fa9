package ingester

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/validation"
)

// pushScratch is per-push memory, pooled so that a push of known series
// allocates nothing.
type pushScratch struct {
	enc       []byte
	digest    *xxhash.Digest
	builder   labels.ScratchBuilder
	exemplars []exemplar.Exemplar
}

var _ rpc.Pusher = (*Ingester)(nil)

// Push appends the series of req to the tenant's head. Samples the TSDB
// rejects (out of order, too old, over a series limit) are reported in the
// error; every other sample of the request is stored.
func (i *Ingester) Push(ctx context.Context, req *rwproto.Request) error {
	if err := i.errNotRunning(); err != nil {
		return err
	}
	tenantID, err := tenant.From(ctx)
	if err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	if err := i.admitTenant(tenantID); err != nil {
		return err
	}
	t, err := i.tenant(ctx, tenantID, true)
	if err != nil {
		return fmt.Errorf("push to tenant %q: %w", tenantID, err)
	}
	defer t.inUse.RUnlock()
	now := i.now()
	t.lastPush.Store(now.UnixNano())

	sc := i.scratch.Get().(*pushScratch)
	defer i.scratch.Put(sc)

	var fails pushFailures
	appended := 0
	l := i.overrides.For(tenantID)
	t.appending.RLock()
	app := t.db.AppenderV2(ctx)
	for si := range req.Timeseries {
		appended += i.appendSeries(t, l, app, sc, &req.Timeseries[si], &fails)
	}
	err = app.Commit()
	t.appending.RUnlock()
	if err != nil {
		return fmt.Errorf("commit samples of tenant %q: %w", tenantID, err)
	}
	if n := t.meta.add(req.Metadata, now, l.MaxMetadataFamilies); n > 0 {
		i.metrics.droppedMetadata.WithLabelValues(tenantID).Add(float64(n))
	}
	i.metrics.ingestedSamples.WithLabelValues(tenantID).Add(float64(appended))
	for reason, n := range fails.byReason {
		i.metrics.rejectedSamples.WithLabelValues(tenantID, reason).Add(float64(n))
	}
	return fails.err()
}

func (i *Ingester) appendSeries(t *tenantDB, l *limits.Limits, app storage.AppenderV2, sc *pushScratch, ts *rwproto.TimeSeries, fails *pushFailures) (appended int) {
	if ts.NumLabels != len(ts.Labels) {
		// The decoder kept only a prefix of an over-long label set: never
		// look that prefix up, it may name another series.
		fails.addInvalid(validation.Labels(l, ts), len(ts.Samples)+len(ts.Histograms))
		return 0
	}
	sc.enc = rwproto.AppendStringLabels(sc.enc[:0], ts.Labels)
	key, check := t.refs.hashes(sc.enc, sc.digest)
	var (
		e      refCacheEntry
		cached bool
	)
	e, cached = t.refs.get(key, check)
	if !cached {
		// Labels are checked once, when the ingester first meets a series:
		// a cached series has exactly the labels that passed then.
		if verr := validation.Labels(l, ts); verr != nil {
			fails.addInvalid(verr, len(ts.Samples)+len(ts.Histograms))
			return 0
		}
		sc.builder.Reset()
		for _, l := range ts.Labels {
			sc.builder.Add(l.Name, l.Value)
		}
		e.lset = sc.builder.Labels()
	}

	ref := e.ref
	for _, s := range ts.Samples {
		r, err := app.Append(ref, e.lset, s.StartTimestamp, s.Timestamp, s.Value, nil, nil, storage.AOptions{})
		if err != nil {
			fails.add(err, e.lset, s.Timestamp)
			continue
		}
		ref = r
		appended++
	}
	for hi := range ts.Histograms {
		h := &ts.Histograms[hi]
		var (
			ih *histogram.Histogram
			fh *histogram.FloatHistogram
		)
		if h.IsFloatHistogram() {
			fh = h.ToFloatHistogram()
		} else {
			ih = h.ToIntHistogram()
		}
		r, err := app.Append(ref, e.lset, 0, h.Timestamp, 0, ih, fh, storage.AOptions{})
		if err != nil {
			fails.add(err, e.lset, h.Timestamp)
			continue
		}
		ref = r
		appended++
	}
	if ref == 0 {
		return appended
	}
	if len(ts.Exemplars) > 0 && l.MaxExemplars > 0 {
		i.appendExemplars(app, sc, ref, e.lset, ts.Exemplars)
	}
	if !cached || ref != e.ref {
		// Cache the head's own copy of the labels, so the cache holds no
		// second copy of them.
		lset := e.lset
		if ir, err := t.db.Head().Index(); err == nil {
			if ir.Series(ref, &sc.builder, nil) == nil {
				lset = sc.builder.Labels()
			}
			_ = ir.Close()
		}
		t.refs.put(key, refCacheEntry{ref: ref, lset: lset, check: check})
	}
	return appended
}

// appendExemplars stores what it can; an exemplar never fails its series.
func (i *Ingester) appendExemplars(app storage.AppenderV2, sc *pushScratch, ref storage.SeriesRef, lset labels.Labels, exs []rwproto.Exemplar) {
	ea, ok := app.(storage.ExemplarAppenderV2)
	if !ok {
		return
	}
	sc.exemplars = sc.exemplars[:0]
	for _, ex := range exs {
		sc.builder.Reset()
		for _, l := range ex.Labels {
			sc.builder.Add(l.Name, l.Value)
		}
		sc.exemplars = append(sc.exemplars, exemplar.Exemplar{Labels: sc.builder.Labels(), Value: ex.Value, Ts: ex.Timestamp, HasTs: true})
	}
	slices.SortFunc(sc.exemplars, func(a, b exemplar.Exemplar) int { return int(a.Ts - b.Ts) })
	_, _ = ea.AppendExemplars(ref, lset, sc.exemplars)
	clear(sc.exemplars) // drop label references held by the pool
}

// PushBody decodes a WriteRequest forwarded by a distributor and stores it
// like Push does.
func (i *Ingester) PushBody(ctx context.Context, body []byte) error {
	tenantID, err := tenant.From(ctx)
	if err != nil {
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	if err := tenant.Validate(tenantID); err != nil { // it names a directory
		return rpc.Errorf(rpc.CauseBadData, "%v", err)
	}
	req := i.requests.Get().(*rwproto.Request)
	defer i.requests.Put(req)
	lim := rwproto.Limits{MaxLabelsPerSeries: i.overrides.For(tenantID).MaxLabelNamesPerSeries}
	if err := req.Unmarshal(body, lim); err != nil {
		return rpc.Errorf(rpc.CauseBadData, "decode pushed request: %v", err)
	}
	return i.Push(ctx, req)
}

var _ rpc.IngesterServer = (*Ingester)(nil)

// pushFailures summarises the samples the TSDB rejected in one push.
type pushFailures struct {
	byReason map[string]int
	badData  int
	first    string
	internal error
	// unavailable: samples refused for now (an instance limit), first
	// error and count; the sender retries them.
	unavailable     error
	unavailableSeen int
}

// addInvalid records a series rejected for its labels.
func (f *pushFailures) addInvalid(err *validation.Error, samples int) {
	if f.byReason == nil {
		f.byReason = map[string]int{}
	}
	f.byReason[string(err.Reason)] += samples
	f.badData += samples
	if f.first == "" {
		f.first = err.Error()
	}
}

func (f *pushFailures) add(err error, lset labels.Labels, ts int64) {
	reason, msg, cause := classify(err)
	if cause == rpc.CauseInternal {
		if f.internal == nil {
			f.internal = fmt.Errorf("append sample to %s: %w", lset.String(), err)
		}
		return
	}
	if f.byReason == nil {
		f.byReason = map[string]int{}
	}
	f.byReason[reason]++
	if cause == rpc.CauseUnavailable {
		f.unavailableSeen++
		if f.unavailable == nil {
			f.unavailable = err
		}
		return
	}
	f.badData++
	if f.first == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "%s at %s", msg, model.Time(ts).Time().UTC().Format("2006-01-02T15:04:05.000Z"))
		if !strings.Contains(msg, "{") {
			fmt.Fprintf(&b, " for series %s", lset.String())
		}
		f.first = b.String()
	}
}

func (f *pushFailures) err() error {
	switch {
	case f.internal != nil:
		return f.internal
	case f.unavailable != nil: // retried: what was stored is stored again, harmlessly
		return rpc.Errorf(rpc.CauseUnavailable, "%d samples were not stored for now (the others were): %v", f.unavailableSeen, f.unavailable)
	case f.badData > 0:
		return rpc.Errorf(rpc.CauseBadData, "%d samples were rejected (the others were stored); the first: %s", f.badData, f.first)
	}
	return nil
}

// classify maps a TSDB append error to a reason, a message and a cause.
func classify(err error) (reason, msg string, cause rpc.Cause) {
	var rerr *rpc.Error
	switch {
	case errors.As(err, &rerr) && rerr.Cause == rpc.CauseUnavailable:
		return "instance_series_limit", rerr.Msg, rerr.Cause
	case errors.As(err, &rerr):
		return "series_limit", rerr.Msg, rerr.Cause
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return "sample_out_of_order", "out-of-order sample: the series has a newer sample and it is outside the out-of-order window (-ingester.out-of-order-time-window)", rpc.CauseBadData
	case errors.Is(err, storage.ErrTooOldSample):
		return "sample_too_old", "sample is older than the out-of-order window allows (-ingester.out-of-order-time-window)", rpc.CauseBadData
	case errors.Is(err, storage.ErrOutOfBounds):
		return "sample_out_of_bounds", "sample is older than the oldest time the head still takes", rpc.CauseBadData
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "new_value_for_timestamp", "sample has a different value than the one already stored for this timestamp", rpc.CauseBadData
	case isHistogramError(err):
		return "invalid_native_histogram", "invalid native histogram: " + err.Error(), rpc.CauseBadData
	}
	return "", err.Error(), rpc.CauseInternal
}

func isHistogramError(err error) bool {
	var herr histogram.Error
	return errors.As(err, &herr)
}

// pool of push scratch space, per ingester.
func newScratchPool() sync.Pool {
	return sync.Pool{New: func() any {
		return &pushScratch{builder: labels.NewScratchBuilder(16), digest: xxhash.New()}
	}}
}
