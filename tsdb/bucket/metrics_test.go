package bucket

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestInstrumented(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	fs, err := NewFilesystem(filepath.Join(t.TempDir(), "bucket"))
	require.NoError(t, err)
	b := NewInstrumented(fs, "ingester", reg)

	require.NoError(t, b.Upload(ctx, "a/obj", strings.NewReader("hello")))               // known size
	require.NoError(t, b.Upload(ctx, "a/obj2", io.MultiReader(strings.NewReader("12")))) // unknown size
	rc, err := b.Get(ctx, "a/obj")
	require.NoError(t, err)
	_, err = io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	rc, err = b.GetRange(ctx, "a/obj", 1, 2)
	require.NoError(t, err)
	_, err = io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	_, err = b.Get(ctx, "missing")
	require.True(t, IsNotFound(err))
	_, err = b.Exists(ctx, "missing") // not an error: false
	require.NoError(t, err)
	_, err = b.Attributes(ctx, "../escape")
	require.Error(t, err)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, b.Upload(canceled, "c", strings.NewReader("x")))
	errStop := io.ErrShortBuffer
	require.ErrorIs(t, b.Iter(ctx, "a", false, func(string) error { return errStop }), errStop)
	require.NoError(t, b.Delete(ctx, "a/obj"))

	for _, tc := range []struct {
		op, outcome string
		want        float64
	}{
		{opUpload, outcomeSuccess, 2},
		{opUpload, outcomeCanceled, 1},
		{opGet, outcomeSuccess, 1},
		{opGet, outcomeNotFound, 1},
		{opGetRange, outcomeSuccess, 1},
		{opExists, outcomeSuccess, 1},
		{opAttributes, outcomeError, 1},
		{opIter, outcomeSuccess, 1}, // the callback's error is not the bucket's
		{opIter, outcomeError, 0},
		{opDelete, outcomeSuccess, 1},
	} {
		require.Equal(t, tc.want, testutil.ToFloat64(b.m.ops.WithLabelValues(tc.op, tc.outcome)), "%s %s", tc.op, tc.outcome)
	}
	require.Equal(t, 7.0, testutil.ToFloat64(b.m.bytesUploaded))
	require.Equal(t, 7.0, testutil.ToFloat64(b.m.bytesRead))
	// Series exist at zero for every operation and outcome.
	require.Equal(t, len(allOps)*len(allOutcomes), testutil.CollectAndCount(b.m.ops))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP isobar_bucket_bytes_uploaded_total Bytes of successfully uploaded objects.
# TYPE isobar_bucket_bytes_uploaded_total counter
isobar_bucket_bytes_uploaded_total{component="ingester"} 7
`), "isobar_bucket_bytes_uploaded_total"))
	n, err := testutil.GatherAndCount(reg, "isobar_bucket_operation_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, len(allOps), n)
}

func TestInstrumentedSharedRegistry(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	newBucket := func(component string) *Instrumented {
		fs, err := NewFilesystem(filepath.Join(t.TempDir(), "bucket"))
		require.NoError(t, err)
		return NewInstrumented(fs, component, reg)
	}
	ingester := newBucket("ingester")
	compactor := newBucket("compactor")
	ingester2 := newBucket("ingester") // same component and registry: no panic, shared metrics
	require.NoError(t, ingester.Delete(ctx, "x"))
	require.NoError(t, ingester2.Delete(ctx, "x"))
	require.NoError(t, compactor.Delete(ctx, "x"))
	require.Equal(t, 2.0, testutil.ToFloat64(ingester.m.ops.WithLabelValues(opDelete, outcomeSuccess)))
	require.Same(t, ingester.m.ops, ingester2.m.ops)
	require.Equal(t, 1.0, testutil.ToFloat64(compactor.m.ops.WithLabelValues(opDelete, outcomeSuccess)))
	n, err := testutil.GatherAndCount(reg, "isobar_bucket_operations_total")
	require.NoError(t, err)
	require.Equal(t, 2*len(allOps)*len(allOutcomes), n)

	// A nil registry is fine too.
	require.NotNil(t, NewInstrumented(ingester, "querier", nil))
}
