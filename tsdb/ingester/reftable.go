package ingester

import "math/bits"

// refTable is an open-addressing hash table with linear probing, keyed by a
// series' label hash. A lookup usually reads one cache line: key, check hash,
// ref and labels sit together in the entry. A Go map would read its control
// word and its slot from two lines, and at a million series both are cold.
type refTable struct {
	entries []refCacheEntry
	used    int
	shift   uint // 64 - log2(len(entries))
}

// home is the slot a key's probe starts at. Fibonacci hashing spreads keys
// that share low bits, as all keys of one refCache stripe do.
func (t *refTable) home(key uint64) uint64 {
	return (key * 0x9E3779B97F4A7C15) >> t.shift
}

// emptyKey marks a free slot; a real key of 0 is stored as 1.
const emptyKey = 0

const minTableSize = 16

func tableKey(k uint64) uint64 {
	if k == emptyKey {
		return 1
	}
	return k
}

func (t *refTable) get(key uint64) (refCacheEntry, bool) {
	if len(t.entries) == 0 {
		return refCacheEntry{}, false
	}
	key = tableKey(key)
	mask := uint64(len(t.entries) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		e := &t.entries[i]
		switch e.key {
		case key:
			return *e, true
		case emptyKey:
			return refCacheEntry{}, false
		}
	}
}

// put inserts or replaces the entry of key; keep decides whether an
// existing entry may be replaced.
func (t *refTable) put(key uint64, e refCacheEntry, keep func(old refCacheEntry) bool) {
	if (t.used+1)*4 > len(t.entries)*3 {
		t.grow()
	}
	key = tableKey(key)
	e.key = key
	mask := uint64(len(t.entries) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		slot := &t.entries[i]
		switch slot.key {
		case key:
			if !keep(*slot) {
				*slot = e
			}
			return
		case emptyKey:
			*slot = e
			t.used++
			return
		}
	}
}

// delete removes key if its entry has ref, shifting later entries of the
// probe run back so that no tombstones are needed.
func (t *refTable) delete(key uint64, match func(refCacheEntry) bool) {
	if len(t.entries) == 0 {
		return
	}
	key = tableKey(key)
	mask := uint64(len(t.entries) - 1)
	i := t.home(key)
	for {
		e := &t.entries[i]
		if e.key == emptyKey {
			return
		}
		if e.key == key {
			if !match(*e) {
				return
			}
			break
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move up each later entry whose home slot is
	// at or before the hole.
	hole := i
	for j := (hole + 1) & mask; t.entries[j].key != emptyKey; j = (j + 1) & mask {
		home := t.home(t.entries[j].key)
		if (j-home)&mask >= (j-hole)&mask {
			t.entries[hole] = t.entries[j]
			hole = j
		}
	}
	t.entries[hole] = refCacheEntry{}
	t.used--
}

func (t *refTable) grow() {
	size := max(minTableSize, 2*len(t.entries))
	old := t.entries
	t.entries = make([]refCacheEntry, size)
	t.used = 0
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	mask := uint64(size - 1)
	for _, e := range old {
		if e.key == emptyKey {
			continue
		}
		for i := t.home(e.key); ; i = (i + 1) & mask {
			if t.entries[i].key == emptyKey {
				t.entries[i] = e
				t.used++
				break
			}
		}
	}
}
