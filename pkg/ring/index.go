package ring

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/grafana/dskit/kv"
	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
)

// TokenIndex answers which instances own a key without walking the ring:
// every key between two adjacent tokens has the same replicas, so the
// replicas are worked out once per token, when the ring changes, and
// looking a key up is a binary search. It is built for rings without zone
// awareness, and is immutable.
type TokenIndex struct {
	tokens []uint32   // every token of the ring, ascending
	set    []int32    // for tokens[i], the index in sets of the replicas of keys just below it
	sets   [][]string // distinct replica sets (by members) in the ring order of their first token
}

// NewTokenIndex indexes desc for replication factor rf, choosing replicas
// as dskit's ring does for an operation that does not extend the replica
// set: the first rf distinct instances clockwise from the key.
func NewTokenIndex(desc *dskitring.Desc, rf int) *TokenIndex {
	x := &TokenIndex{}
	if desc == nil || len(desc.Ingesters) == 0 {
		return x
	}
	owner := map[uint32]string{}
	for id, inst := range desc.Ingesters {
		for _, t := range inst.Tokens {
			owner[t] = id
		}
	}
	x.tokens = make([]uint32, 0, len(owner))
	for t := range owner {
		x.tokens = append(x.tokens, t)
	}
	slices.Sort(x.tokens)
	want := min(rf, len(desc.Ingesters))
	setIDs := map[string]int32{}
	x.set = make([]int32, len(x.tokens))
	ids := make([]string, 0, want)
	var sorted []string
	for start := range x.tokens {
		ids = ids[:0]
		for i := 0; i < len(x.tokens) && len(ids) < want; i++ {
			id := owner[x.tokens[(start+i)%len(x.tokens)]]
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		// The order of replicas does not matter to a write: sets with the
		// same members are one.
		sorted = append(sorted[:0], ids...)
		slices.Sort(sorted)
		key := strings.Join(sorted, "\x00")
		s, ok := setIDs[key]
		if !ok {
			s = int32(len(x.sets))
			setIDs[key] = s
			x.sets = append(x.sets, slices.Clone(ids))
		}
		x.set[start] = s
	}
	return x
}

// Set returns the index of the replica set of key, or -1 for an empty ring.
func (x *TokenIndex) Set(key uint32) int {
	if len(x.tokens) == 0 {
		return -1
	}
	// The replicas of key start at the first token above it.
	i, found := slices.BinarySearch(x.tokens, key)
	if found {
		i++
	}
	if i == len(x.tokens) {
		i = 0
	}
	return int(x.set[i])
}

// Sets is the number of distinct replica sets.
func (x *TokenIndex) Sets() int { return len(x.sets) }

// Instances returns the instance IDs of replica set s, in ring order. The
// slice must not be modified.
func (x *TokenIndex) Instances(s int) []string { return x.sets[s] }

// IndexWatcher keeps a TokenIndex of the ingester ring up to date by
// watching the ring's key in the key-value store.
type IndexWatcher struct {
	services.Service
	store  kv.Client
	rf     int
	logger *slog.Logger
	index  atomic.Pointer[TokenIndex]
	// layout fingerprints the instances and tokens indexed: the store
	// changes at every heartbeat, the layout rarely.
	layout uint64
}

// NewIndexWatcher returns a watcher of the ingesters' ring in store, for
// replication factor rf.
func NewIndexWatcher(store kv.Client, rf int, logger *slog.Logger) *IndexWatcher {
	w := &IndexWatcher{store: store, rf: rf, logger: logger}
	w.index.Store(&TokenIndex{})
	w.Service = services.NewBasicService(w.starting, w.running, nil)
	return w
}

// Index returns the latest index; never nil.
func (w *IndexWatcher) Index() *TokenIndex { return w.index.Load() }

func (w *IndexWatcher) update(v any) {
	desc, ok := v.(*dskitring.Desc)
	if !ok || desc == nil {
		w.index.Store(&TokenIndex{})
		w.layout = 0
		return
	}
	if l := layoutOf(desc); l != w.layout {
		w.index.Store(NewTokenIndex(desc, w.rf))
		w.layout = l
	}
}

// layoutOf hashes the instance IDs and their tokens.
func layoutOf(desc *dskitring.Desc) uint64 {
	ids := make([]string, 0, len(desc.Ingesters))
	for id := range desc.Ingesters {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var d xxhash.Digest
	d.Reset()
	var b [4]byte
	for _, id := range ids {
		_, _ = d.WriteString(id)
		_, _ = d.Write([]byte{0})
		for _, t := range desc.Ingesters[id].Tokens {
			b[0], b[1], b[2], b[3] = byte(t), byte(t>>8), byte(t>>16), byte(t>>24)
			_, _ = d.Write(b[:])
		}
	}
	return d.Sum64() | 1 // never 0, the empty ring's
}

func (w *IndexWatcher) starting(ctx context.Context) error {
	v, err := w.store.Get(ctx, IngesterRingKey)
	if err != nil {
		return fmt.Errorf("read the ingester ring: %w", err)
	}
	w.update(v)
	return nil
}

func (w *IndexWatcher) running(ctx context.Context) error {
	// WatchKey returns when ctx ends, or early if the store gives up: then
	// watch again after a pause.
	for ctx.Err() == nil {
		w.store.WatchKey(ctx, IngesterRingKey, func(v any) bool {
			w.update(v)
			return true
		})
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
