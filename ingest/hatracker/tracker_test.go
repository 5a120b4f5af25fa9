package hatracker

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grafana/dskit/kv"
	"github.com/grafana/dskit/kv/consul"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	isolog "github.com/isobar-tsdb/isobar/pkg/log"
)

var cfg = Config{Enabled: true, UpdateTimeout: 10 * time.Second, FailoverTimeout: 30 * time.Second, ForgetAfter: time.Hour}

// clock is a settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func startTracker(t *testing.T, store kv.Client, c *clock) *Tracker {
	tr, err := New(cfg, kv.PrefixClient(store, KVPrefix), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	tr.now = c.now
	require.NoError(t, services.StartAndAwaitRunning(context.Background(), tr))
	t.Cleanup(func() { require.NoError(t, services.StopAndAwaitTerminated(context.Background(), tr)) })
	return tr
}

func memStore(t *testing.T) kv.Client {
	store, closer := consul.NewInMemoryClient(Codec{}, isolog.GoKit(slog.New(slog.DiscardHandler)), nil)
	t.Cleanup(func() { _ = closer.Close() })
	return store
}

func TestTwoDistributorsKeepOneReplicaAndFailOver(t *testing.T) {
	ctx := context.Background()
	store := memStore(t)
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	a, b := startTracker(t, store, c), startTracker(t, store, c)
	decide := func(tr *Tracker, replica string) (Decision, string) {
		d, elected, err := tr.Decide(ctx, "team-a", "c1", replica, 0)
		require.NoError(t, err)
		return d, elected
	}

	// The first replica heard is elected, by whichever distributor.
	d, _ := decide(a, "r1")
	require.Equal(t, Accept, d)
	d, elected := decide(b, "r2")
	require.Equal(t, Drop, d, "b reads the election a made")
	require.Equal(t, "r1", elected)
	d, _ = decide(b, "r1")
	require.Equal(t, Accept, d)

	// r1 keeps sending through b: its record is refreshed, so r2 stays out
	// past the failover timeout counted from the election.
	for range 5 {
		c.t = c.t.Add(cfg.UpdateTimeout + 2*time.Second)
		d, _ = decide(b, "r1")
		require.Equal(t, Accept, d)
		d, _ = decide(a, "r2")
		require.Equal(t, Drop, d, "at %s", c.t)
	}

	// r1 stops: after the failover timeout r2 is elected, everywhere.
	c.t = c.t.Add(cfg.FailoverTimeout - time.Second)
	d, _ = decide(a, "r2")
	require.Equal(t, Drop, d, "not yet")
	c.t = c.t.Add(2 * time.Second)
	d, _ = decide(a, "r2")
	require.Equal(t, Accept, d)
	require.Eventually(t, func() bool {
		d, _ := decide(b, "r1")
		return d == Drop
	}, 5*time.Second, 10*time.Millisecond, "b learns of the new election")

	// Other tenants and clusters are elections of their own.
	d2, _, err := a.Decide(ctx, "team-b", "c1", "r1", 0)
	require.NoError(t, err)
	require.Equal(t, Accept, d2)
	d2, _, err = a.Decide(ctx, "team-a", "c2/eu", "r9", 0)
	require.NoError(t, err)
	require.Equal(t, Accept, d2)

	// A new distributor reads every election when it starts.
	late := startTracker(t, store, c)
	require.Len(t, late.Elections(), 3)
	d, _ = decide(late, "r1")
	require.Equal(t, Drop, d)

	w := httptest.NewRecorder()
	late.ServeHTTP(w, httptest.NewRequest("GET", "/distributor/ha_tracker", nil))
	require.Contains(t, w.Body.String(), "<td>team-a</td><td>c2/eu</td><td>r9</td>")
}

func TestMaxClustersPerTenant(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	tr := startTracker(t, memStore(t), c)
	for i, cluster := range []string{"c1", "c2"} {
		d, _, err := tr.Decide(ctx, "team-a", cluster, "r1", 2)
		require.NoError(t, err)
		require.Equal(t, Accept, d, i)
	}
	d, _, err := tr.Decide(ctx, "team-a", "c3", "r1", 2)
	require.NoError(t, err)
	require.Equal(t, TooManyClusters, d)
	d, _, err = tr.Decide(ctx, "team-a", "c2", "r1", 2)
	require.NoError(t, err)
	require.Equal(t, Accept, d, "known clusters go on")

	// c1 stops; once forgotten it no longer counts, and c3 fits.
	for range 6 {
		c.t = c.t.Add(15 * time.Minute)
		_, _, err = tr.Decide(ctx, "team-a", "c2", "r1", 2)
		require.NoError(t, err)
	}
	d, _, err = tr.Decide(ctx, "team-a", "c3", "r1", 2)
	require.NoError(t, err)
	require.Equal(t, Accept, d)
	require.Len(t, tr.Elections(), 2, "c1 is no longer listed")
}

// Gossip converges whatever order the records arrive in.
func TestElectionMergeKeepsTheLaterRecord(t *testing.T) {
	older := &Election{Replica: "r1", ReceivedAt: 100, ElectedAt: 50}
	newer := &Election{Replica: "r2", ReceivedAt: 200, ElectedAt: 200}
	tie := &Election{Replica: "r0", ReceivedAt: 200, ElectedAt: 200}

	x := older.Clone().(*Election)
	change, err := x.Merge(newer.Clone(), false)
	require.NoError(t, err)
	require.Equal(t, newer, change)
	require.Equal(t, newer, x)
	change, err = x.Merge(newer.Clone(), false)
	require.NoError(t, err)
	require.Nil(t, change, "idempotent")

	y := newer.Clone().(*Election)
	change, err = y.Merge(older.Clone(), false)
	require.NoError(t, err)
	require.Nil(t, change)
	require.Equal(t, newer, y, "commutative")

	for _, order := range [][]*Election{{newer, tie}, {tie, newer}} {
		z := older.Clone().(*Election)
		for _, e := range order {
			_, err := z.Merge(e.Clone(), false)
			require.NoError(t, err)
		}
		require.Equal(t, tie, z, "a tie goes to the replica named first")
	}

	raw, err := Codec{}.Encode(newer)
	require.NoError(t, err)
	back, err := Codec{}.Decode(raw)
	require.NoError(t, err)
	require.Equal(t, newer, back)
	_, err = Codec{}.Decode([]byte("{"))
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{}.Validate())
	require.NoError(t, cfg.Validate())
	require.ErrorContains(t, Config{Enabled: true, UpdateTimeout: 15 * time.Second, FailoverTimeout: 16 * time.Second, ForgetAfter: time.Hour}.Validate(), "failover-timeout")
	require.ErrorContains(t, Config{Enabled: true, UpdateTimeout: 15 * time.Second, FailoverTimeout: 30 * time.Second, ForgetAfter: time.Second}.Validate(), "forget-after")
}
