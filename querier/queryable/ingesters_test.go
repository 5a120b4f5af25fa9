package queryable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/tenant"
	"github.com/isobar-tsdb/isobar/pkg/testutil/ringtest"
)

// dbReader serves the read contract from a Prometheus TSDB, standing in
// for an ingester (which this package may not import).
type dbReader struct {
	db   *tsdb.DB
	srv  *grpc.Server
	meta map[string][]metadata.Metadata // what an ingester's metadata store holds
}

func (r *dbReader) QueryStream(ctx context.Context, req *prompb.Query, send func(*prompb.ChunkedReadResponse) error) error {
	q, err := r.db.ChunkQuerier(req.StartTimestampMs, req.EndTimestampMs)
	if err != nil {
		return err
	}
	defer q.Close()
	return rpc.ServeChunkQuery(ctx, q, req, overTheWire(send))
}

func (r *dbReader) labels(ctx context.Context, req *rpc.LabelsRequest, name bool) ([]string, error) {
	q, err := r.db.Querier(req.Start, req.End)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	ms, err := rpc.FromLabelMatchers(req.Matchers)
	if err != nil {
		return nil, err
	}
	if name {
		v, _, err := q.LabelValues(ctx, req.Name, nil, ms...)
		return v, err
	}
	v, _, err := q.LabelNames(ctx, nil, ms...)
	return v, err
}

func (r *dbReader) LabelNames(ctx context.Context, req *rpc.LabelsRequest) ([]string, error) {
	return r.labels(ctx, req, false)
}

func (r *dbReader) LabelValues(ctx context.Context, req *rpc.LabelsRequest) ([]string, error) {
	return r.labels(ctx, req, true)
}

func (r *dbReader) Cardinality(ctx context.Context, req *rpc.CardinalityRequest) (*rpc.CardinalityResponse, error) {
	return rpc.ServeCardinality(ctx, r.db.Head(), 0, req)
}

func (r *dbReader) add(t testing.TB, ls labels.Labels, from, to int64) {
	app := r.db.Appender(context.Background())
	for ts := from; ts <= to; ts += 15_000 {
		_, err := app.Append(0, ls, ts, float64(ts/15_000))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

// replicas starts n readers in one in-memory ring and a queryable over them
// that reads with replication factor 3.
func replicas(t testing.TB, n int) ([]*dbReader, *Ingesters) {
	readers := make([]*dbReader, n)
	register := make([]func(*grpc.Server), n)
	for i := range readers {
		opts := tsdb.DefaultOptions()
		opts.EnableExemplarStorage, opts.MaxExemplars = true, 1000
		db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		r := &dbReader{db: db, meta: map[string][]metadata.Metadata{}}
		readers[i] = r
		register[i] = func(s *grpc.Server) { rpc.RegisterIngesterReaderServer(s, r) }
	}
	r := ringtest.Start(t, 3, register...)
	for i, srv := range r.Servers {
		readers[i].srv = srv
	}
	return readers, NewIngesters(r.Client, r.Pool)
}

const t0 = int64(1_700_000_000_000)

var ctxA = tenant.With(context.Background(), "team-a")

func samplesOf(t *testing.T, ss storage.SeriesSet) map[string][]int64 {
	out := map[string][]int64{}
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		it = s.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			ts, _ := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], ts)
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return out
}

func TestReplicasMergeIntoOneSeries(t *testing.T) {
	readers, q := replicas(t, 3)
	up := labels.FromStrings("__name__", "up", "job", "node")
	// Every replica has most samples; each missed a different stretch, as
	// after a restart: the merge must hold every sample exactly once.
	readers[0].add(t, up, t0, t0+100*15_000)
	readers[1].add(t, up, t0, t0+40*15_000)
	readers[1].add(t, up, t0+60*15_000, t0+100*15_000)
	readers[2].add(t, up, t0+20*15_000, t0+100*15_000)
	load := labels.FromStrings("__name__", "node_load1", "job", "node")
	readers[1].add(t, load, t0, t0+100*15_000)
	readers[2].add(t, load, t0, t0+100*15_000)

	qr, err := q.Querier(t0, t0+100*15_000)
	require.NoError(t, err)
	got := samplesOf(t, qr.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "node")))
	require.Len(t, got, 2)
	for _, name := range []string{`{__name__="up", job="node"}`, `{__name__="node_load1", job="node"}`} {
		require.Len(t, got[name], 101, name)
		for i, ts := range got[name] {
			require.Equal(t, t0+int64(i)*15_000, ts)
		}
	}

	names, _, err := qr.LabelNames(ctxA, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "job"}, names)
	values, _, err := qr.LabelValues(ctxA, "__name__", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"node_load1", "up"}, values)

	// PromQL over the ring.
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qry, err := eng.NewInstantQuery(ctxA, q, nil, "sum(count_over_time(up[1h]))", time.UnixMilli(t0+100*15_000))
	require.NoError(t, err)
	res := qry.Exec(ctxA)
	require.NoError(t, res.Err)
	vec, err := res.Vector()
	require.NoError(t, err)
	require.Len(t, vec, 1)
	require.InDelta(t, 101.0, vec[0].F, 0, "no sample counted twice")
	qry.Close()
}

func TestReadToleratesOneIngesterDown(t *testing.T) {
	readers, q := replicas(t, 3)
	up := labels.FromStrings("__name__", "up")
	for _, r := range readers {
		r.add(t, up, t0, t0+10*15_000)
	}
	readers[0].srv.Stop()
	qr, err := q.Querier(t0, t0+10*15_000)
	require.NoError(t, err)
	got := samplesOf(t, qr.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")))
	require.Len(t, got[`{__name__="up"}`], 11)

	readers[1].srv.Stop()
	ss := qr.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	require.False(t, ss.Next())
	require.Error(t, ss.Err(), "two of three down: no quorum, and no silent hole")
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(ss.Err()))
}

// failingReader sends the first frames of its answer, then fails.
type failingReader struct {
	*dbReader
	framesBeforeFailing int
}

func (r *failingReader) QueryStream(ctx context.Context, req *prompb.Query, send func(*prompb.ChunkedReadResponse) error) error {
	sent := 0
	err := r.dbReader.QueryStream(ctx, req, func(f *prompb.ChunkedReadResponse) error {
		if sent == r.framesBeforeFailing {
			return errors.New("disk on fire")
		}
		sent++
		return send(f)
	})
	return err
}

// midStreamFailures starts three ingesters holding the same 3000 series
// with 1 KB labels (several frames each), of which the last failing fail
// after their first frame, and returns a querier over them.
func midStreamFailures(t *testing.T, failing int) storage.Querier {
	readers := make([]*dbReader, 3)
	register := make([]func(*grpc.Server), 3)
	for i := range readers {
		db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		readers[i] = &dbReader{db: db}
		var srv rpc.IngesterReaderServer = readers[i]
		if i >= 3-failing {
			srv = &failingReader{dbReader: readers[i], framesBeforeFailing: 1}
		}
		register[i] = func(s *grpc.Server) { rpc.RegisterIngesterReaderServer(s, srv) }
	}
	r := ringtest.Start(t, 3, register...)
	for i := range 3000 {
		ls := labels.FromStrings("__name__", "up", "instance", fmt.Sprintf("%05d-%s", i, strings.Repeat("x", 1000)))
		for _, rd := range readers {
			rd.add(t, ls, t0, t0+15_000)
		}
	}
	qr, err := NewIngesters(r.Client, r.Pool).Querier(t0, t0+15_000)
	require.NoError(t, err)
	t.Cleanup(func() { _ = qr.Close() })
	return qr
}

// An ingester that fails in the middle of its stream is replaced by the
// spare replica, which continues after the last series the failed one
// gave: the answer is whole, no series twice. Each read asks a different
// quorum, so some of the reads meet the failing ingester.
func TestReadToleratesAnIngesterFailingMidStream(t *testing.T) {
	qr := midStreamFailures(t, 1)
	for range 6 {
		ss := qr.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
		seen := map[string]bool{}
		var it chunkenc.Iterator
		for ss.Next() {
			name := ss.At().Labels().String()
			require.False(t, seen[name], "%s given twice", name)
			seen[name] = true
			it = ss.At().Iterator(it)
			var ts []int64
			for it.Next() == chunkenc.ValFloat {
				t, _ := it.At()
				ts = append(ts, t)
			}
			require.Equal(t, []int64{t0, t0 + 15_000}, ts, name)
		}
		require.NoError(t, ss.Err())
		// Every series whole: the frames' memory is reused as they are read.
		want := map[string]bool{}
		for i := range 3000 {
			want[labels.FromStrings("__name__", "up", "instance", fmt.Sprintf("%05d-%s", i, strings.Repeat("x", 1000))).String()] = true
		}
		require.Equal(t, want, seen)
	}
}

// Two of three ingesters failing mid-stream fail the query: no silent hole.
func TestReadFailsWhenTwoIngestersFailMidStream(t *testing.T) {
	qr := midStreamFailures(t, 2)
	ss := qr.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	for ss.Next() {
	}
	require.Error(t, ss.Err())
	require.Equal(t, rpc.CauseUnavailable, rpc.CauseOf(ss.Err()))
	require.Contains(t, ss.Err().Error(), "disk on fire")
}

func TestReadNeedsTenant(t *testing.T) {
	_, q := replicas(t, 1)
	qr, err := q.Querier(0, math.MaxInt64)
	require.NoError(t, err)
	ss := qr.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	require.False(t, ss.Next())
	require.Error(t, ss.Err())
}

// BenchmarkSelectMergesReplicas reads 1000 series of 120 samples from three
// replicas over loopback gRPC and merges them, as a querier does for a
// dashboard panel.
//
//	go test ./querier/queryable -run '^$' -bench SelectMerges -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkSelectMergesReplicas(b *testing.B) {
	readers, q := replicas(b, 3)
	t := b
	const n = 1000
	for i := range n {
		ls := labels.FromStrings("__name__", "node_cpu_seconds_total", "cpu", fmt.Sprint(i%64), "instance", fmt.Sprintf("cmp-%04d", i/64), "mode", "idle")
		for _, r := range readers {
			r.add(t, ls, t0, t0+119*15_000)
		}
	}
	qr, err := q.Querier(t0, t0+119*15_000)
	require.NoError(b, err)
	b.ReportAllocs()
	var it chunkenc.Iterator
	for b.Loop() {
		ss := qr.Select(ctxA, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "node_cpu_seconds_total"))
		series := 0
		for ss.Next() {
			it = ss.At().Iterator(it)
			for it.Next() != chunkenc.ValNone {
			}
			series++
		}
		if ss.Err() != nil || series != n {
			b.Fatalf("got %d series: %v", series, ss.Err())
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "series/s")
	b.ReportMetric(float64(n*120*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// Cardinality over three ingesters that each hold every series (RF 3)
// counts each series once.
func TestCardinalityCountsEachSeriesOnce(t *testing.T) {
	readers, q := replicas(t, 3)
	for i := range 30 {
		ls := labels.FromStrings("__name__", "node_cpu_seconds_total", "az", fmt.Sprintf("az-%d", i%3), "instance", fmt.Sprintf("cmp-%02d", i))
		for _, r := range readers {
			r.add(t, ls, t0, t0+15_000)
		}
	}
	for _, r := range readers {
		r.add(t, labels.FromStrings("__name__", "up", "az", "az-0"), t0, t0)
	}

	status, err := q.Cardinality(ctxA, &rpc.CardinalityRequest{Kind: rpc.CardinalityStatus, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, uint64(31), status.NumSeries)
	require.Equal(t, rpc.StatList{Name: rpc.SeriesCountByMetricName, Total: 31, Stats: []rpc.Stat{{Name: "node_cpu_seconds_total", Value: 30}, {Name: "up", Value: 1}}}, status.Lists[0])

	values, err := q.Cardinality(ctxA, &rpc.CardinalityRequest{Kind: rpc.CardinalityLabelValues, LabelNames: []string{"az"},
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "node_cpu_seconds_total"}}})
	require.NoError(t, err)
	require.Equal(t, uint64(30), values.NumSeries)
	require.Equal(t, []rpc.StatList{{Name: "az", Total: 30, Stats: []rpc.Stat{{Name: "az-0", Value: 10}, {Name: "az-1", Value: 10}, {Name: "az-2", Value: 10}}}}, values.Lists)

	names, err := q.Cardinality(ctxA, &rpc.CardinalityRequest{Kind: rpc.CardinalityLabelNames})
	require.NoError(t, err)
	require.Equal(t, []rpc.StatList{{Name: rpc.LabelNamesList, Total: 35, Stats: []rpc.Stat{{Name: "instance", Value: 30}, {Name: "az", Value: 3}, {Name: "__name__", Value: 2}}}}, names.Lists)
}
