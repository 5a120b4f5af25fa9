package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/grafana/dskit/kv"
	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/ring"
)

// startRing puts ids in a fresh in-memory ring of kind and returns a
// client of it with replication factor rf.
func startRing(t *testing.T, kind ring.Kind, rf int, ids ...string) *dskitring.Ring {
	r, _ := startRingWithStore(t, kind, rf, ids...)
	return r
}

// startRingWithStore is startRing that also returns the ring's store.
func startRingWithStore(t *testing.T, kind ring.Kind, rf int, ids ...string) (*dskitring.Ring, kv.Client) {
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
	return r, store
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
			if ringOwner(r, ring.BlockToken(tenantID, "")) == id {
				owners++
				perCompactor[id]++
			}
		}
		require.Equal(t, 1, owners, "tenant %s", tenantID)
	}
	require.Len(t, perCompactor, len(ids), "every compactor owns tenants: %v", perCompactor)
}

// TestADeadCompactorsTenantsMoveOn: a compactor that stopped heartbeating
// (killed: it never left the ring) owns nothing once it is past the
// heartbeat timeout; its tenants go to the live ones, each to one of them.
func TestADeadCompactorsTenantsMoveOn(t *testing.T) {
	ids := []string{"compactor-0", "compactor-1"}
	r, store := startRingWithStore(t, ring.Compactors, 1, ids...)
	require.NoError(t, store.CAS(context.Background(), ring.Compactors.Key, func(in any) (any, bool, error) {
		desc, _ := in.(*dskitring.Desc)
		if desc == nil {
			desc = dskitring.NewDesc()
		}
		tokens := dskitring.NewRandomTokenGeneratorWithSeed(7).GenerateTokens(512, nil)
		dead := desc.AddIngester("compactor-dead", "127.0.0.1:1", "", tokens, dskitring.ACTIVE, time.Now().Add(-time.Hour), false, time.Time{}, nil)
		dead.Timestamp = time.Now().Add(-time.Hour).Unix()
		desc.Ingesters["compactor-dead"] = dead
		return desc, true, nil
	}))
	require.Eventually(t, func() bool { return r.InstancesCount() == 3 }, 10*time.Second, 10*time.Millisecond)
	deadOwned := 0
	for i := range 300 {
		tenantID := fmt.Sprintf("tenant-%d", i)
		token := ring.BlockToken(tenantID, "")
		if rs, err := r.GetWithOptions(token, activeOnly, dskitring.WithReplicationFactor(1)); err != nil || len(rs.Instances) == 0 {
			deadOwned++ // a one-replica lookup names the dead compactor
		}
		owner := ringOwner(r, token)
		require.Contains(t, ids, owner, "tenant %s", tenantID)
	}
	require.Positive(t, deadOwned, "the dead compactor held tenants")
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
