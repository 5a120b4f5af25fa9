package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/ring"
)

// startRing puts ids in a fresh in-memory ring of kind and returns a
// client of it with replication factor rf.
func startRing(t *testing.T, kind ring.Kind, rf int, ids ...string) *dskitring.Ring {
	var rc ring.Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	rc.RegisterFlags(fs, "test")
	require.NoError(t, fs.Parse(nil))
	rc.InstanceAddr, rc.InstancePort = "127.0.0.1", 9095
	logger := slog.New(slog.DiscardHandler)
	store, err := ring.NewKV(rc, nil, logger, nil)
	require.NoError(t, err)
	run := func(s services.Service) {
		require.NoError(t, services.StartAndAwaitRunning(context.Background(), s))
		t.Cleanup(func() { _ = services.StopAndAwaitTerminated(context.Background(), s) })
	}
	for _, id := range ids {
		c := rc
		c.InstanceID = id
		lc, err := ring.NewLifecycler(c, kind, store, filepath.Join(t.TempDir(), "tokens"), logger, nil)
		require.NoError(t, err)
		run(lc)
	}
	r, err := ring.NewClient(rc, kind, rf, store, logger, nil)
	require.NoError(t, err)
	run(r)
	require.Eventually(t, func() bool { return r.InstancesWithTokensCount() == len(ids) }, 10*time.Second, 10*time.Millisecond)
	return r
}

// TestCompactorsShareTenants: each tenant belongs to exactly one compactor,
// and every compactor gets some.
func TestCompactorsShareTenants(t *testing.T) {
	ids := []string{"compactor-0", "compactor-1", "compactor-2"}
	r := startRing(t, ring.Compactors, 1, ids...)
	perCompactor := map[string]int{}
	for i := range 300 {
		tenantID := fmt.Sprintf("tenant-%d", i)
		owners := 0
		for _, id := range ids {
			owns, err := memberOf(r, ring.BlockToken(tenantID, ""), compactorOwn, id)
			require.NoError(t, err)
			if owns {
				owners++
				perCompactor[id]++
			}
		}
		require.Equal(t, 1, owners, "tenant %s", tenantID)
	}
	require.Len(t, perCompactor, len(ids), "every compactor owns tenants: %v", perCompactor)
}

// TestStoreGatewaysHoldEachBlockRFTimes: with 4 store-gateways and
// replication factor 3, each block is held by 3 of them.
func TestStoreGatewaysHoldEachBlockRFTimes(t *testing.T) {
	ids := []string{"sg-0", "sg-1", "sg-2", "sg-3"}
	r := startRing(t, ring.StoreGateways, 3, ids...)
	for i := range 200 {
		block := ulid.MustNew(uint64(i), nil).String()
		var holders []string
		for _, id := range ids {
			owns, err := memberOf(r, ring.BlockToken("team-a", block), blocksSync, id)
			require.NoError(t, err)
			if owns {
				holders = append(holders, id)
			}
		}
		require.Len(t, holders, 3, "block %s", block)
	}
}
