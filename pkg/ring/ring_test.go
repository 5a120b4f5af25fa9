package ring

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/grafana/dskit/kv"
	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func testConfig(t *testing.T, id string) Config {
	var c Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c.RegisterFlags(fs, id)
	require.NoError(t, fs.Parse(nil))
	c.InstanceAddr, c.InstancePort = "127.0.0.1", 9095
	c.HeartbeatPeriod = 100 * time.Millisecond
	c.HeartbeatTimeout = time.Minute
	require.NoError(t, c.Validate())
	return c
}

func startService(t *testing.T, s services.Service) {
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), s))
	t.Cleanup(func() { _ = services.StopAndAwaitTerminated(context.Background(), s) })
}

// joinRing starts n ingesters' lifecyclers and a ring client on one store.
func joinRing(t *testing.T, store kv.Client, ids ...string) (*dskitring.Ring, map[string]*dskitring.BasicLifecycler) {
	lcs := map[string]*dskitring.BasicLifecycler{}
	dir := t.TempDir()
	for _, id := range ids {
		lc, err := NewLifecycler(testConfig(t, id), Ingesters, store, filepath.Join(dir, id+".tokens"), slog.New(slog.DiscardHandler), nil)
		require.NoError(t, err)
		startService(t, lc)
		lcs[id] = lc
	}
	r, err := NewClient(testConfig(t, "reader"), Ingesters, 1, store, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	startService(t, r)
	require.Eventually(t, func() bool { return r.InstancesWithTokensCount() == len(ids) }, 10*time.Second, 10*time.Millisecond)
	return r, lcs
}

func newStore(t *testing.T) kv.Client {
	store, err := NewKV(testConfig(t, "x"), nil, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	return store
}

// privateCloudSeries returns n label sets shaped like a cloud's: per-VM
// libvirt and per-port Open vSwitch series on many hypervisors.
func privateCloudSeries(n int) []labels.Labels {
	out := make([]labels.Labels, 0, n)
	for i := 0; len(out) < n; i++ {
		hv := fmt.Sprintf("cmp-r1a-%04d.dc1.example", i/40)
		uuid := fmt.Sprintf("%08x-6a4d-4e8f-9b7a-%012x", i*2654435761%(1<<32), i)
		out = append(out,
			labels.FromStrings("__name__", "libvirt_domain_block_stats_read_bytes_total", "hypervisor", hv, "instance_uuid", uuid, "project_id", fmt.Sprintf("%032x", i%977), "target_device", "vda"),
			labels.FromStrings("__name__", "ovs_interface_rx_bytes_total", "bridge", "br-int", "hypervisor", hv, "interface", "tap"+uuid[:11]))
	}
	return out[:n]
}

func TestSeriesSpreadEvenly(t *testing.T) {
	store := newStore(t)
	ids := []string{"ingester-1", "ingester-2", "ingester-3"}
	r, _ := joinRing(t, store, ids...)

	const n = 100_000
	owned := map[string]int{}
	var bufDescs []dskitring.InstanceDesc
	var bufHosts, bufZones []string
	for _, ls := range privateCloudSeries(n) {
		rs, err := r.Get(Token("team-a", ls.Bytes(nil)), dskitring.Write, bufDescs, bufHosts, bufZones)
		require.NoError(t, err)
		require.Len(t, rs.Instances, 1)
		owned[rs.Instances[0].Id]++
	}
	worst := 0.0
	for _, id := range ids {
		dev := float64(owned[id])/(n/3.0) - 1
		t.Logf("%s holds %d series (%+.1f%% of an even share)", id, owned[id], 100*dev)
		worst = math.Max(worst, math.Abs(dev))
	}
	require.Less(t, worst, 0.10, "every ingester holds its share within ±10%%")
}

func TestTokensSurviveRestart(t *testing.T) {
	store := newStore(t)
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	cfg := testConfig(t, "ingester-1")

	lc, err := NewLifecycler(cfg, Ingesters, store, tokensFile, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), lc))
	first := lc.GetTokens()
	require.Len(t, first, cfg.NumTokens)
	require.Equal(t, dskitring.ACTIVE, lc.GetState())
	require.NoError(t, services.StopAndAwaitTerminated(context.Background(), lc))

	// Stopping left the ring; the store forgets the instance.
	desc, err := store.Get(context.Background(), IngesterRingKey)
	require.NoError(t, err)
	if desc != nil {
		require.NotContains(t, desc.(*dskitring.Desc).Ingesters, "ingester-1")
	}

	// A fresh store, as after every other member restarted: the same tokens.
	lc, err = NewLifecycler(cfg, Ingesters, newStore(t), tokensFile, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	startService(t, lc)
	require.Equal(t, first, lc.GetTokens())
}

func TestTokenDependsOnTenant(t *testing.T) {
	enc := labels.FromStrings("__name__", "up", "job", "a").Bytes(nil)
	require.NotEqual(t, Token("team-a", enc), Token("team-b", enc))
	require.Equal(t, Token("team-a", enc), Token("team-a", enc))
}

func TestValidate(t *testing.T) {
	c := testConfig(t, "x")
	c.HeartbeatTimeout = c.HeartbeatPeriod
	require.ErrorContains(t, c.Validate(), "must be longer")
}

func TestZoneAwarePlacement(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	for _, zone := range []string{"az-a", "az-b", "az-c"} {
		for i := range 2 {
			c := testConfig(t, fmt.Sprintf("ingester-%s-%d", zone, i))
			c.Zone = zone
			lc, err := NewLifecycler(c, Ingesters, store, filepath.Join(dir, c.InstanceID), slog.New(slog.DiscardHandler), nil)
			require.NoError(t, err)
			startService(t, lc)
		}
	}
	c := testConfig(t, "reader")
	c.ZoneAwareness = true
	r, err := NewClient(c, Ingesters, 3, store, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	startService(t, r)
	require.Eventually(t, func() bool { return r.InstancesWithTokensCount() == 6 }, 10*time.Second, 10*time.Millisecond)

	for _, ls := range privateCloudSeries(1000) {
		rs, err := r.Get(Token("team-a", ls.Bytes(nil)), dskitring.Write, nil, nil, nil)
		require.NoError(t, err)
		zones := map[string]bool{}
		for _, inst := range rs.Instances {
			zones[inst.Zone] = true
		}
		require.Len(t, zones, 3, "the 3 replicas of a series sit in 3 zones")
	}
}
