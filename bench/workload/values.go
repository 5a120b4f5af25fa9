package workload

import "math"

const (
	// epochSeconds is the earliest boot time of any simulated process
	// (2025-06-15T15:06:40Z); counters count from their series' boot time
	// and are 0 before it.
	epochSeconds = 1_750_000_000
	// maxBootOffsetSeconds spreads the boot times of series over 90 days so
	// that counters of different series have different magnitudes.
	maxBootOffsetSeconds = 90 * 86400
	// minGaugePeriod and gaugePeriodSpread bound the period, in seconds, of the
	// triangle wave gauges wander along.
	minGaugePeriod    = 600
	gaugePeriodSpread = 3000
)

// mix is the SplitMix64 finalizer: a cheap, well-distributed 64-bit hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps a hash to a float64 in [0, 1).
func unit(h uint64) float64 {
	return float64(h>>11) * (1.0 / (1 << 53))
}

// value computes the sample value of a series of family f, whose identity
// hash is h, at tMillis. It is a pure function of its arguments.
//
// Counters follow rate*(s + 0.5*noise(s) + 0.5*frac) where s is the whole
// number of seconds since the series' boot time, frac the fraction of the
// current second and noise(s) a hash in [0,1): the value at the end of second
// s is below rate*(s+1), the smallest value in second s+1, so counters are
// monotonic in t while their per-interval increments vary. Gauges follow a
// triangle wave of per-series period and phase plus per-second noise.
func value(f *family, h uint64, tMillis int64) float64 {
	u := unit(mix(h + 1)) // per-series magnitude
	switch f.kind {
	case kindConst:
		return f.scale
	case kindConstInt:
		return math.Floor(f.scale * (0.2 + 1.6*u))
	case kindCounter, kindCounterInt:
		boot := (epochSeconds + int64(mix(h+2)%maxBootOffsetSeconds)) * 1000
		ms := max(tMillis-boot, 0)
		sec := ms / 1000
		frac := float64(ms%1000) / 1000
		v := f.scale * (0.2 + 1.6*u) * (float64(sec) + 0.5*unit(mix(h^uint64(sec))) + 0.5*frac)
		if f.kind == kindCounterInt {
			v = math.Floor(v)
		}
		return v
	}
	sec := tMillis / 1000
	if tMillis < 0 && tMillis%1000 != 0 {
		sec--
	}
	period := minGaugePeriod + int64(mix(h+3)%gaugePeriodSpread)
	pos := (sec + int64(mix(h+4)%uint64(period))) % period
	if pos < 0 {
		pos += period
	}
	x := float64(pos) / float64(period)
	tri := 4*math.Abs(x-0.5) - 1
	noise := unit(mix(h^uint64(sec))) - 0.5
	v := f.scale * (0.5 + u) * (1 + 0.25*tri + 0.1*noise)
	switch f.kind {
	case kindGaugeInt:
		v = math.Round(v)
	case kindPercent:
		v = min(max(math.Round(v), 0), 100)
	}
	return v
}
