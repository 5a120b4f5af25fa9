package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedAddresses bounds the addresses whose failures are counted; a
// flood of addresses forgets the ones that have stopped failing.
const maxTrackedAddresses = 65_536

// failureLimiter counts failed authentications per source address and
// blocks an address that fails faster than it is allowed.
type failureLimiter struct {
	perSecond rate.Limit
	burst     int

	mu    sync.Mutex
	addrs map[string]*rate.Limiter
}

func newFailureLimiter(perSecond float64, burst int) *failureLimiter {
	return &failureLimiter{perSecond: rate.Limit(perSecond), burst: burst, addrs: map[string]*rate.Limiter{}}
}

// blocked reports whether addr has no failure left to spend.
func (l *failureLimiter) blocked(addr string) bool {
	if l.perSecond == 0 {
		return false // the limit is off
	}
	l.mu.Lock()
	lim := l.addrs[addr]
	l.mu.Unlock()
	return lim != nil && lim.Tokens() < 1
}

// fail spends one of addr's failures.
func (l *failureLimiter) fail(addr string) {
	if l.perSecond == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.addrs[addr]
	if lim == nil {
		if len(l.addrs) >= maxTrackedAddresses {
			l.forgetRecovered()
		}
		lim = rate.NewLimiter(l.perSecond, l.burst)
		l.addrs[addr] = lim
	}
	lim.Allow()
}

// forgetRecovered drops the addresses whose allowance is whole again, or,
// if none is, every address: memory stays bounded whatever arrives.
func (l *failureLimiter) forgetRecovered() {
	now := time.Now()
	for a, lim := range l.addrs {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.addrs, a)
		}
	}
	if len(l.addrs) >= maxTrackedAddresses {
		clear(l.addrs)
	}
}
