// Package workload generates a deterministic set of series that look like the
// metrics of a large private cloud, and encodes Prometheus remote-write 1.0
// requests for them without allocating.
//
// The series come from a simulated OpenStack-style fleet: compute
// hypervisors (node exporter, libvirt and Open vSwitch metrics for every VM
// and port), GPU hosts (DCGM exporter metrics, some attached to Kubernetes
// pods, some passed through to VMs) and load balancers (HAProxy metrics).
// The fleet grows host by host until it holds exactly the requested number of
// series; the series are then shuffled, so that any contiguous range of
// series indexes mixes many targets, like a Prometheus remote-write shard.
//
// Label sets are encoded to protobuf once, at construction, as references
// into an arena of interned label pairs. AppendRequest then only copies those
// bytes and appends one sample per series, whose value is a cheap pure
// function of the series and the timestamp: counters increase monotonically,
// gauges wander.
package workload

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/prometheus/prometheus/prompb"
)

// Protobuf tags (field number << 3 | wire type) of the remote-write messages.
const (
	tagTimeseries  = 1<<3 | 2 // WriteRequest.timeseries
	tagMetadata    = 3<<3 | 2 // WriteRequest.metadata
	tagLabels      = 1<<3 | 2 // TimeSeries.labels
	tagSamples     = 2<<3 | 2 // TimeSeries.samples
	tagLabelName   = 1<<3 | 2 // Label.name
	tagLabelValue  = 2<<3 | 2 // Label.value
	tagSampleValue = 1<<3 | 1 // Sample.value (fixed64)
	tagSampleTime  = 2<<3 | 0 // Sample.timestamp (varint)
	tagMetaType    = 1<<3 | 0 // MetricMetadata.type
	tagMetaName    = 2<<3 | 2 // MetricMetadata.metric_family_name
	tagMetaHelp    = 4<<3 | 2 // MetricMetadata.help
	tagMetaUnit    = 5<<3 | 2 // MetricMetadata.unit
)

// Config selects the workload.
type Config struct {
	// Series is the exact number of series to generate; negative means 0.
	Series int
	// Seed makes the workload reproducible: the same Series and Seed always
	// produce the same series in the same order with the same values.
	Seed int64
}

// Generator holds the pre-encoded series of a workload. It is immutable after
// New and safe for concurrent use.
type Generator struct {
	seed     uint64
	pairs    []byte   // arena of encoded TimeSeries.labels fields
	pairOff  []uint32 // pair id -> offset in pairs; len = pairs + 1
	refs     []uint32 // pair ids of all series, series after series
	start    []uint32 // series index -> offset in refs; len = Len() + 1
	labelLen []uint32 // series index -> encoded length of its labels
	family   []uint16 // series index -> family id
	used     [numFamilies]bool
}

// New builds the workload described by cfg. It takes about a second per
// million series and keeps roughly 60 bytes per series plus the distinct
// label pairs in memory.
func New(cfg Config) *Generator {
	n := max(cfg.Series, 0)
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6973_6f62_6172)) // "isobar"
	b := newBuilder(n, rng)
	b.run()

	g := &Generator{
		seed:     mix(uint64(cfg.Seed) ^ 0x5bd1e995),
		pairs:    b.pairs,
		pairOff:  b.pairOff,
		refs:     make([]uint32, 0, len(b.refs)),
		start:    make([]uint32, 1, n+1),
		labelLen: make([]uint32, n),
		family:   make([]uint16, n),
	}
	for i, src := range rng.Perm(n) {
		g.refs = append(g.refs, b.refs[b.start[src]:b.start[src+1]]...)
		g.start = append(g.start, uint32(len(g.refs)))
		g.labelLen[i] = b.labelLen[src]
		g.family[i] = b.family[src]
		g.used[b.family[src]] = true
	}
	return g
}

// Len returns the number of series.
func (g *Generator) Len() int { return len(g.family) }

// Series returns the labels of series i, sorted by name and including
// __name__. It allocates; use it for inspection, not on the hot path.
func (g *Generator) Series(i int) []prompb.Label {
	refs := g.refs[g.start[i]:g.start[i+1]]
	ls := make([]prompb.Label, 0, len(refs))
	for _, r := range refs {
		p := g.pairs[g.pairOff[r]:g.pairOff[r+1]]
		_, n := binary.Uvarint(p[1:]) // skip tag and length of the Label message
		p = p[1+n:]
		name, p := readString(p)
		value, _ := readString(p)
		ls = append(ls, prompb.Label{Name: name, Value: value})
	}
	return ls
}

// readString decodes a tagged length-delimited string and returns the rest.
func readString(p []byte) (string, []byte) {
	l, n := binary.Uvarint(p[1:])
	p = p[1+n:]
	return string(p[:l]), p[l:]
}

// MetricName returns the metric name (__name__) of series i.
func (g *Generator) MetricName(i int) string { return families[g.family[i]].name }

// Job returns the job label value of series i.
func (g *Generator) Job(i int) string { return families[g.family[i]].job }

// CountByJob returns the number of series per job label value.
func (g *Generator) CountByJob() map[string]int {
	counts := make(map[string]int)
	for _, f := range g.family {
		counts[families[f].job]++
	}
	return counts
}

// Value returns the sample value of series i at tMillis (milliseconds since
// the Unix epoch). Counter series never decrease as tMillis grows.
func (g *Generator) Value(i int, tMillis int64) float64 {
	return value(&families[g.family[i]], g.seriesHash(i), tMillis)
}

func (g *Generator) seriesHash(i int) uint64 {
	return mix(g.seed ^ (uint64(i)+1)*0x9e3779b97f4a7c15)
}

// AppendRequest appends to dst the protobuf encoding of a prompb.WriteRequest
// holding series [from, to), each with one float sample at tMillis, and
// returns the extended buffer. It does not allocate when dst has enough
// capacity, so reuse the returned buffer (as dst[:0]) across calls. It
// panics if the range is out of bounds, like slicing does.
func (g *Generator) AppendRequest(dst []byte, from, to int, tMillis int64) []byte {
	if from < 0 || to > g.Len() || from > to {
		panic(fmt.Sprintf("workload: series range [%d,%d) out of bounds [0,%d)", from, to, g.Len()))
	}
	ts := uint64(tMillis)
	sampleLen := 1 + 8 + 1 + uvarintLen(ts) // always < 128: a 1-byte length
	for i := from; i < to; i++ {
		seriesLen := int(g.labelLen[i]) + 2 + sampleLen
		dst = append(dst, tagTimeseries)
		dst = binary.AppendUvarint(dst, uint64(seriesLen))
		for _, r := range g.refs[g.start[i]:g.start[i+1]] {
			dst = append(dst, g.pairs[g.pairOff[r]:g.pairOff[r+1]]...)
		}
		dst = append(dst, tagSamples, byte(sampleLen), tagSampleValue)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(g.Value(i, tMillis)))
		dst = append(dst, tagSampleTime)
		dst = binary.AppendUvarint(dst, ts)
	}
	return dst
}

// AppendMetadataRequest appends to dst the protobuf encoding of a
// prompb.WriteRequest without series that holds the TYPE, HELP and UNIT
// metadata of every metric family present in the workload, like the
// metadata-only requests Prometheus sends.
func (g *Generator) AppendMetadataRequest(dst []byte) []byte {
	for id := range families {
		if !g.used[id] {
			continue
		}
		f := &families[id]
		typ := uint64(f.metricType())
		l := 1 + uvarintLen(typ) + fieldLen(f.name) + fieldLen(f.help) + fieldLen(f.unit)
		dst = append(dst, tagMetadata)
		dst = binary.AppendUvarint(dst, uint64(l))
		dst = append(dst, tagMetaType)
		dst = binary.AppendUvarint(dst, typ)
		dst = appendField(dst, tagMetaName, f.name)
		dst = appendField(dst, tagMetaHelp, f.help)
		dst = appendField(dst, tagMetaUnit, f.unit)
	}
	return dst
}

// MetadataCount returns the number of metric families present, that is the
// number of entries AppendMetadataRequest writes.
func (g *Generator) MetadataCount() int {
	n := 0
	for _, u := range g.used {
		if u {
			n++
		}
	}
	return n
}

// fieldLen is the encoded size of a string field, 0 if s is empty (omitted).
func fieldLen(s string) int {
	if s == "" {
		return 0
	}
	return 1 + uvarintLen(uint64(len(s))) + len(s)
}

// appendField appends a string field, omitting it if s is empty.
func appendField(dst []byte, tag byte, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// uvarintLen is the size of x encoded as a protobuf varint.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}
