package ring

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/stretchr/testify/require"
)

// TestTokenIndexAgreesWithTheRing checks the index against dskit's own
// ring walk for random keys, for rings of several sizes.
func TestTokenIndexAgreesWithTheRing(t *testing.T) {
	for _, n := range []int{2, 3, 5, 8} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			store := newStore(t)
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("ingester-%d", i)
			}
			joinRing(t, store, ids...)
			r, err := NewClient(testConfig(t, "reader"), Ingesters, 3, store, slog.New(slog.DiscardHandler), nil)
			require.NoError(t, err)
			startService(t, r)
			require.Eventually(t, func() bool { return r.InstancesWithTokensCount() == n }, 10*time.Second, 10*time.Millisecond)

			w := NewIndexWatcher(store, 3, slog.New(slog.DiscardHandler))
			startService(t, w)
			x := w.Index()
			require.Positive(t, x.Sets())
			if n <= 3 {
				require.Equal(t, 1, x.Sets(), "with RF 3 and %d instances every key has all of them", n)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			keys := []uint32{0, 1, ^uint32(0)}
			for range 20000 {
				keys = append(keys, rng.Uint32())
			}
			for _, key := range keys {
				rs, err := r.Get(key, dskitring.WriteNoExtend, nil, nil, nil)
				require.NoError(t, err)
				var want []string
				for _, inst := range rs.Instances {
					want = append(want, inst.Id)
				}
				require.ElementsMatch(t, want, x.Instances(x.Set(key)), "key %d", key)
			}
		})
	}
}

func TestIndexWatcherFollowsTheRing(t *testing.T) {
	store := newStore(t)
	w := NewIndexWatcher(store, 3, slog.New(slog.DiscardHandler))
	startService(t, w)
	require.Equal(t, -1, w.Index().Set(42), "an empty ring has no replicas")
	joinRing(t, store, "a", "b")
	require.Eventually(t, func() bool { return w.Index().Sets() > 0 && len(w.Index().Instances(w.Index().Set(42))) == 2 }, 10*time.Second, 10*time.Millisecond)
	before := w.Index()
	// Heartbeats change the stored ring but not its layout: no rebuild.
	time.Sleep(300 * time.Millisecond)
	require.Same(t, before, w.Index())
	lc, err := NewLifecycler(testConfig(t, "c"), Ingesters, store, filepath.Join(t.TempDir(), "c.tokens"), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	startService(t, lc)
	require.Eventually(t, func() bool { return len(w.Index().Instances(w.Index().Set(42))) == 3 }, 10*time.Second, 10*time.Millisecond)
}
