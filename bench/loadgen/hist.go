package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the log2 of the number of linear sub-buckets per power of two:
// 32 sub-buckets bound the relative error of a quantile to about 3%.
const subBits = 5

// histogram is a log-linear histogram of durations in nanoseconds. It is not
// safe for concurrent use: each worker owns one per phase and they are
// merged at the end.
type histogram struct {
	counts []uint64
	n      uint64
	sum    float64
	max    uint64
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, (65-subBits)<<subBits)}
}

// bucketOf returns the bucket of v: values below 2^subBits have their own
// bucket, larger ones keep their subBits+1 most significant bits.
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// bucketBounds returns the smallest and largest value of bucket b.
func bucketBounds(b int) (lo, hi uint64) {
	if b < 1<<subBits {
		return uint64(b), uint64(b)
	}
	shift := b>>subBits - 1
	m := uint64(b&(1<<subBits-1) + 1<<subBits)
	return m << shift, (m+1)<<shift - 1
}

// observe records one duration; negative durations count as zero.
func (h *histogram) observe(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	h.max = max(h.max, v)
}

// merge adds the observations of o to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns an estimate of the q-quantile (0 < q <= 1): the middle of
// the bucket holding the observation of that rank, capped at the maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(b)
			return time.Duration(min(lo+(hi-lo)/2, h.max))
		}
	}
	return time.Duration(h.max)
}

// summary returns the latency figures reported for a phase.
func (h *histogram) summary() Latency {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	l := Latency{
		P50Millis: ms(h.quantile(0.50)),
		P90Millis: ms(h.quantile(0.90)),
		P99Millis: ms(h.quantile(0.99)),
		MaxMillis: ms(time.Duration(h.max)),
	}
	if h.n > 0 {
		l.MeanMillis = h.sum / float64(h.n) / float64(time.Millisecond)
	}
	return l
}
