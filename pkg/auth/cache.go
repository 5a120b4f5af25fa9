package auth

import (
	"crypto/sha256"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// expiring is what the cache holds of a credential.
type expiring struct {
	identity *Identity
	expires  time.Time
	// checked is when the identity service last said it was valid.
	checked time.Time
}

// credentialCache keeps validated credentials, by the SHA-256 of the
// credential (never the credential itself), until they expire or must be
// checked again; the least recently used go first when it is full.
type credentialCache struct {
	entries      *lru.Cache[[sha256.Size]byte, expiring]
	recheck      time.Duration
	hits, misses prometheus.Counter
}

func newCredentialCache(kind string, size int, recheck time.Duration, reg prometheus.Registerer) *credentialCache {
	entries, _ := lru.New[[sha256.Size]byte, expiring](size) // size is validated positive
	lookups := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name:        "isobar_auth_cache_lookups_total",
		Help:        "Lookups of validated credentials in memory, by result: a miss asks the identity service.",
		ConstLabels: prometheus.Labels{"type": kind},
	}, []string{"result"})
	return &credentialCache{entries: entries, recheck: recheck, hits: lookups.WithLabelValues("hit"), misses: lookups.WithLabelValues("miss")}
}

// get returns the identity of key if it is cached, unexpired and checked
// recently enough; expired reports a cached credential past its expiry.
func (c *credentialCache) get(key [sha256.Size]byte, now time.Time) (id *Identity, expired bool) {
	e, ok := c.entries.Get(key)
	switch {
	case !ok:
	case !now.Before(e.expires):
		c.entries.Remove(key)
		return nil, true
	case c.recheck > 0 && now.Sub(e.checked) >= c.recheck:
	default:
		c.hits.Inc()
		return e.identity, false
	}
	c.misses.Inc()
	return nil, false
}

func (c *credentialCache) put(key [sha256.Size]byte, id *Identity, expires, now time.Time) {
	c.entries.Add(key, expiring{identity: id, expires: expires, checked: now})
}

func (c *credentialCache) remove(key [sha256.Size]byte) { c.entries.Remove(key) }

// hashSecret is the SHA-256 of a credential, read in place: a token of a
// kilobyte is not copied on every request to be hashed.
func hashSecret(s string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
}
