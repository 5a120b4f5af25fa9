package queryable

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/testutil/ringtest"
)

// TestPromQLBuiltinSuiteOverTheRing runs Prometheus' own PromQL test files
// against the querier's read path: every sample goes to three ingesters
// (TSDBs behind gRPC servers in a ring), and the engine reads them back
// through the streaming, replica-merging queryable.
func TestPromQLBuiltinSuiteOverTheRing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short (the race run) leaves out the whole suite; make unit runs it")
	}
	readers := make([]*dbReader, 3)
	register := make([]func(*grpc.Server), 3)
	for i := range readers {
		readers[i] = &dbReader{}
		register[i] = func(s *grpc.Server) { rpc.RegisterIngesterReaderServer(s, readers[i]) }
	}
	r := ringtest.Start(t, 3, register...)
	ingesters := NewIngesters(r.Client, r.Pool)

	// The engine Prometheus runs its own suite with.
	eng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTestsWithStorage(t, eng, func(t testing.TB) storage.Storage {
		return newReplicatedStorage(t, readers, ingesters)
	})
}

// replicatedStorage writes every sample to each reader's fresh TSDB and
// reads through the ring, as tenant team-a.
type replicatedStorage struct {
	*tsdb.DB // StartTime, Close, ChunkQuerier; Querier and appends below
	dbs      []*tsdb.DB
	read     storage.Queryable
}

func newReplicatedStorage(t testing.TB, readers []*dbReader, read storage.Queryable) *replicatedStorage {
	s := &replicatedStorage{read: read}
	for _, r := range readers {
		// The options of promqltest's own storage (NewBuiltinTestStorage).
		opts := tsdb.DefaultOptions()
		opts.MinBlockDuration = int64(24 * time.Hour / time.Millisecond)
		opts.MaxBlockDuration = opts.MinBlockDuration
		opts.RetentionDuration = 0
		opts.OutOfOrderTimeWindow = 0
		opts.EnableSTStorage = true
		opts.FloatChunkEncoding = chunkenc.EncXOR2
		opts.EnableHistogramSTEncoding = true
		db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
		require.NoError(t, err)
		r.db = db
		s.dbs = append(s.dbs, db)
	}
	s.DB = s.dbs[0]
	return s
}

func (s *replicatedStorage) Close() error {
	var err error
	for _, db := range s.dbs {
		if cerr := db.Close(); cerr != nil {
			err = cerr
		}
	}
	return err
}

func (s *replicatedStorage) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := s.read.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return tenantQuerier{q}, nil
}

func (s *replicatedStorage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	apps := make(fanoutAppender, 0, len(s.dbs))
	for _, db := range s.dbs {
		apps = append(apps, db.AppenderV2(ctx))
	}
	return apps
}

// tenantQuerier reads as tenant team-a: the engine's contexts have none.
type tenantQuerier struct{ storage.Querier }

func (q tenantQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.Querier.Select(withTenant(ctx), sortSeries, hints, ms...)
}

func (q tenantQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelValues(withTenant(ctx), name, hints, ms...)
}

func (q tenantQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelNames(withTenant(ctx), hints, ms...)
}

func withTenant(ctx context.Context) context.Context { return tenant.With(ctx, "team-a") }

// fanoutAppender appends to every replica.
type fanoutAppender []storage.AppenderV2

func (f fanoutAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	for _, a := range f {
		if _, err := a.Append(0, ls, st, t, v, h, fh, opts); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

func (f fanoutAppender) Commit() error {
	for _, a := range f {
		if err := a.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func (f fanoutAppender) Rollback() error {
	for _, a := range f {
		if err := a.Rollback(); err != nil {
			return err
		}
	}
	return nil
}
