//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

func postAction(t *testing.T, url string) {
	t.Helper()
	code, body, err := postRaw(actionClient, url, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code, "POST %s: %s", url, body)
}

// liveBlocks reads the tenant's bucket index from the bucket and returns
// its blocks not marked for deletion.
func liveBlocks(t *testing.T, bkt bucket.Reader, tenantID string) []bucketindex.Block {
	t.Helper()
	x, err := bucketindex.ReadIndex(context.Background(), bkt, tenantID)
	require.NoError(t, err)
	return x.Queryable(math.MinInt64, math.MaxInt64)
}

// TestLongTermStorage runs a cluster on a real S3 server: ingesters ship
// their blocks, the compactor merges the 3 replicas of each range into one,
// and after every ingester is wiped the querier answers exactly what was
// written, from the store-gateway. A query the store-gateway cannot serve
// fails instead of answering with a hole, and retention deletes old blocks.
func TestLongTermStorage(t *testing.T) {
	s3 := startS3(t)
	common := append(s3.flags(), "-querier.query-store-after=0", "-querier.bucket-index-max-age=1s", "-ingester.ship-interval=1h")
	c := startCluster(t, common...)
	sg := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "store-gateway-0", "store-gateway", freeAddr(t), common...)...) // the default sync interval: blocks newer than its last sync load on demand
	t.Cleanup(func() {
		if t.Failed() && sg.running() {
			_, page, _ := httpGet(sg.URL+"/metrics", nil)
			for _, l := range strings.Split(page, "\n") {
				if strings.HasPrefix(l, "isobar_store_gateway") || strings.HasPrefix(l, "isobar_bucket_operations_total") && !strings.HasSuffix(l, " 0") {
					t.Log("store-gateway: " + l)
				}
			}
		}
	})
	compactor := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "compactor-0", "compactor", freeAddr(t), append(common, "-compactor.consistency-delay=0s")...)...)

	// 10 series, one sample a minute, from the start of the 2h block range
	// 8 to 10 hours ago until 10 minutes ago: at least 4 block ranges.
	const (
		nSeries    = 10
		step       = int64(time.Minute / time.Millisecond)
		blockRange = int64(2 * time.Hour / time.Millisecond)
	)
	now := time.Now().UnixMilli()
	start := (now - 8*blockRange/2) / blockRange * blockRange
	end := now - 10*step
	steps := 0
	for ts := start; ts <= end; ts += step {
		req := &prompb.WriteRequest{}
		for i := range nSeries {
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_lts", "series", fmt.Sprintf("s%02d", i)}, sample(ts, float64(ts/step+int64(i)))))
		}
		mustPush(t, c.distributor.URL, "", req)
		steps++
	}
	t.Logf("wrote %d samples of %d series over %s", steps*nSeries, nSeries, time.Duration(end-start)*time.Millisecond)

	for _, ing := range c.ingesters {
		postAction(t, ing.URL+"/ingester/flush")
	}
	bkt, err := bucket.NewS3(bucket.S3Config{Endpoint: s3.Endpoint, BucketName: s3.Bucket, AccessKeyID: s3.AccessKey, SecretAccessKey: flagext.SecretWithValue(s3.SecretKey), Insecure: true, PathStyle: true}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	scan, err := bucketindex.Update(context.Background(), bkt, "anonymous", nil, time.Now())
	require.NoError(t, err)
	ranges := map[int64]int{}
	for _, b := range scan.Index.Blocks {
		require.Equal(t, "ingester", b.Source)
		ranges[b.MinTime/blockRange]++
	}
	require.GreaterOrEqual(t, len(ranges), 4, "block ranges shipped")
	for r, n := range ranges {
		require.Equal(t, 3, n, "replicas of block range %d", r)
	}

	// The compactor merges the replicas: blocks that do not overlap, each
	// sample once.
	postAction(t, compactor.URL+"/compactor/run")
	live := liveBlocks(t, bkt, "anonymous")
	var samples uint64
	for i, b := range live {
		require.Equal(t, "compactor", b.Source, "block %s", b.ID)
		if i > 0 {
			require.LessOrEqual(t, live[i-1].MaxTime, b.MinTime, "blocks %s and %s overlap", live[i-1].ID, b.ID)
		}
		samples += b.NumSamples
	}
	require.Equal(t, uint64(steps*nSeries), samples, "samples in the compacted blocks")
	t.Logf("%d ingester blocks compacted into %d", len(scan.Index.Blocks), len(live))

	// Every ingester loses its disk: the data must come from the bucket.
	for _, ing := range c.ingesters {
		require.Equal(t, 0, ing.Stop())
		require.NoError(t, os.RemoveAll(ing.DataDir))
		require.NoError(t, os.MkdirAll(ing.DataDir, 0o755))
		ing.Restart()
	}
	waitActive(t, c.querier, 3)
	q := apiClient{base: c.querier.URL}
	checkAll := func(from int64) {
		t.Helper()
		waitFor(t, 30*time.Second, "the store-gateway to serve every block", func() error {
			_, err := q.queryE("count(e2e_lts)", end)
			return err
		})
		res := q.query(t, fmt.Sprintf("e2e_lts[%dms]", end-start+step), end)
		require.Len(t, res.Series, nSeries)
		for _, s := range res.Series {
			var i int64
			_, err := fmt.Sscanf(s.Metric["series"], "s%02d", &i)
			require.NoError(t, err)
			first := start + (from-start+step-1)/step*step
			require.Len(t, s.Points, int((end-first)/step+1), "series %s", s.Metric["series"])
			for k, p := range s.Points {
				ts := first + int64(k)*step
				require.Equal(t, ts, p.T)
				require.InDelta(t, float64(ts/step+i), p.F, 0)
			}
		}
	}
	checkAll(start)

	// Without the store-gateway the old blocks cannot be read: an error, not a partial answer.
	sg.Kill9()
	_, err = q.queryE(fmt.Sprintf("count_over_time(e2e_lts[%dms])", end-start+step), end)
	require.Error(t, err)
	require.Contains(t, err.Error(), "status 503")
	require.Contains(t, err.Error(), "could not be queried")
	sg.Restart()
	checkAll(start)

	// Retention: a compactor whose retention ends just after the oldest
	// block deletes that block, and the query answers from the newer ones.
	require.GreaterOrEqual(t, len(live), 2)
	keep := time.Duration(time.Now().UnixMilli()-live[0].MaxTime) * time.Millisecond
	keep = keep.Truncate(time.Minute)
	require.Equal(t, 0, compactor.Stop())
	retention := startIsobar(t, t.TempDir(), clusterMember(t, c.join, "compactor-1", "compactor", freeAddr(t),
		append(common, "-compactor.consistency-delay=0s", "-compactor.retention-period="+model.Duration(keep).String(), "-compactor.deletion-delay=0s")...)...)
	waitFor(t, 30*time.Second, "retention to delete the oldest block", func() error {
		postAction(t, retention.URL+"/compactor/run")
		exists, err := bkt.Exists(context.Background(), bucketindex.BlockFile("anonymous", live[0].ID, bucketindex.MetaFilename))
		if err != nil || exists {
			return fmt.Errorf("block %s still in the bucket (err %v)", live[0].ID, err)
		}
		return nil
	})
	kept := liveBlocks(t, bkt, "anonymous")
	require.Equal(t, live[1:], kept, "only the oldest block is gone")
	time.Sleep(2 * time.Second) // the querier's copy of the bucket index is at most 1s old
	checkAll(kept[0].MinTime)
}

// localBlocks lists the blocks an ingester cut for the tenant.
func localBlocks(t *testing.T, dataDir, tenantID string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "tsdb", tenantID))
	require.NoError(t, err)
	var ids []string
	for _, e := range entries {
		if _, err := ulid.ParseStrict(e.Name()); err == nil && e.IsDir() {
			if _, err := os.Stat(filepath.Join(dataDir, "tsdb", tenantID, e.Name(), "meta.json")); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	return ids
}

// bucketBlocks lists the complete blocks of the tenant in the bucket.
func bucketBlocks(t *testing.T, bkt bucket.Reader, tenantID string) []string {
	t.Helper()
	scan, err := bucketindex.Update(context.Background(), bkt, tenantID, nil, time.Now())
	require.NoError(t, err)
	var ids []string
	for _, b := range scan.Index.Blocks {
		ids = append(ids, b.ID.String())
	}
	return ids
}

// TestIngesterKilledBeforeShippingShipsOnce kills an ingester with SIGKILL
// after its TSDB cut blocks and before it shipped them: after the restart
// each of those blocks is shipped, once.
func TestIngesterKilledBeforeShippingShipsOnce(t *testing.T) {
	s3 := startS3(t)
	gossip := freeAddr(t)
	// 1-minute blocks, so the TSDB cuts some within a minute; shipping
	// only at start and then hourly, so the cut blocks wait.
	ing := startIsobar(t, t.TempDir(), clusterMember(t, gossip, "ingester-0", "distributor,ingester", gossip,
		append(s3.flags(), "-ingester.block-range=1m", "-ingester.ship-interval=1h")...)...)
	now := time.Now().UnixMilli()
	for ts := now - 10*60_000; ts <= now; ts += 5_000 {
		req := &prompb.WriteRequest{}
		for i := range 5 {
			req.Timeseries = append(req.Timeseries, series([]string{"__name__", "e2e_ship", "series", fmt.Sprint(i)}, sample(ts, float64(ts))))
		}
		mustPush(t, ing.URL, "", req)
	}
	var cut []string
	waitFor(t, 2*time.Minute, "the TSDB to cut blocks", func() error {
		if cut = localBlocks(t, ing.DataDir, "anonymous"); len(cut) == 0 {
			return errors.New("no block yet")
		}
		return nil
	})
	ing.Kill9()
	bkt, err := bucket.NewS3(bucket.S3Config{Endpoint: s3.Endpoint, BucketName: s3.Bucket, AccessKeyID: s3.AccessKey, SecretAccessKey: flagext.SecretWithValue(s3.SecretKey), Insecure: true, PathStyle: true}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Empty(t, bucketBlocks(t, bkt, "anonymous"), "nothing was shipped before the kill")
	t.Logf("%d blocks cut, none shipped, ingester killed", len(cut))

	ing.Restart()
	waitFor(t, 30*time.Second, "the cut blocks to be shipped", func() error {
		shipped := bucketBlocks(t, bkt, "anonymous")
		for _, id := range cut {
			if !slices.Contains(shipped, id) {
				return fmt.Errorf("block %s not in the bucket; it has %v", id, shipped)
			}
		}
		return nil
	})
	// Each block in the bucket was uploaded once: as many uploads as blocks.
	require.Equal(t, len(bucketBlocks(t, bkt, "anonymous")), shipperUploads(t, ing))

	// Another restart uploads only blocks cut since, none again.
	require.Equal(t, 0, ing.Stop())
	before := bucketBlocks(t, bkt, "anonymous")
	ing.Restart()
	local := localBlocks(t, ing.DataDir, "anonymous")
	var after []string
	waitFor(t, 30*time.Second, "the blocks cut before the restart to be shipped", func() error {
		after = bucketBlocks(t, bkt, "anonymous")
		for _, id := range local {
			if !slices.Contains(after, id) {
				return fmt.Errorf("block %s not in the bucket", id)
			}
		}
		return nil
	})
	require.Subset(t, after, before)
	require.Equal(t, len(after)-len(before), shipperUploads(t, ing), "uploads after the second restart")
}

// shipperUploads reads how many blocks the ingester's shipper uploaded.
func shipperUploads(t *testing.T, ing *isobar) int {
	t.Helper()
	_, page, err := httpGet(ing.URL+"/metrics", nil)
	require.NoError(t, err)
	const prefix = `isobar_ingester_shipper_uploads_total{outcome="success"} `
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			var n int
			_, err := fmt.Sscanf(strings.TrimPrefix(l, prefix), "%d", &n)
			require.NoError(t, err)
			return n
		}
	}
	return 0 // the counter has no series before the first upload
}
