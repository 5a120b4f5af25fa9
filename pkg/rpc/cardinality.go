package rpc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"
	"google.golang.org/protobuf/encoding/protowire"
)

const cardinalityMethod = "/isobar.IngesterReader/Cardinality"

// CardinalityKind is what a CardinalityRequest asks about an ingester's
// head.
type CardinalityKind uint8

// Kinds of cardinality questions.
const (
	// CardinalityStatus asks for Prometheus' head statistics
	// (/api/v1/status/tsdb): four lists of the top Limit entries.
	CardinalityStatus CardinalityKind = iota + 1
	// CardinalityLabelNames asks, per label name of the series Matchers
	// select, how many distinct values it has.
	CardinalityLabelNames
	// CardinalityLabelValues asks, per value of each of LabelNames, how
	// many series Matchers select have it.
	CardinalityLabelValues
)

// Names of the lists of a CardinalityStatus answer, as Prometheus names
// them in /api/v1/status/tsdb.
const (
	SeriesCountByMetricName     = "seriesCountByMetricName"
	LabelValueCountByLabelName  = "labelValueCountByLabelName"
	MemoryInBytesByLabelName    = "memoryInBytesByLabelName"
	SeriesCountByLabelValuePair = "seriesCountByLabelValuePair"
)

// CardinalityRequest asks an ingester about the tenant's head.
type CardinalityRequest struct {
	Kind       CardinalityKind
	Matchers   []*prompb.LabelMatcher
	LabelNames []string
	Limit      int
}

// Stat is one named count.
type Stat struct {
	Name  string
	Value uint64
}

// StatList is a named list of counts, largest first, with the total of
// what it counts (a list may hold only the top entries).
type StatList struct {
	Name  string
	Total uint64
	Stats []Stat
}

// CardinalityResponse is an ingester's answer. NumSeries is the number of
// series in its head (CardinalityStatus) or of those the matchers select.
type CardinalityResponse struct {
	NumSeries, NumLabelPairs uint64
	MinTime, MaxTime         int64
	ChunkCount               uint64 // in memory, of the head (CardinalityStatus)
	Lists                    []StatList
}

// Cardinality asks the ingester about the tenant's head.
func (c *IngesterClient) Cardinality(ctx context.Context, req *CardinalityRequest) (*CardinalityResponse, error) {
	var resp *CardinalityResponse
	err := receiveFrames(ctx, c.cc, &readerServiceDesc, cardinalityMethod, req, func(f *CardinalityResponse) { resp = f })
	if err == nil && resp == nil {
		err = fmt.Errorf("ingester sent no cardinality answer")
	}
	return resp, err
}

// cardinalityFrames sends a cardinality answer as one frame: its lists
// hold at most the limit of entries each.
func cardinalityFrames(r *CardinalityResponse) []*CardinalityResponse {
	return []*CardinalityResponse{r}
}

// ServeCardinality answers req from a tenant's head; chunks is its count
// of chunks in memory.
func ServeCardinality(ctx context.Context, head *tsdb.Head, chunks uint64, req *CardinalityRequest) (*CardinalityResponse, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	if req.Kind == CardinalityStatus {
		st := head.Stats(labels.MetricName, limit)
		resp := &CardinalityResponse{NumSeries: st.NumSeries, MinTime: st.MinTime, MaxTime: st.MaxTime, ChunkCount: chunks}
		if ps := st.IndexPostingStats; ps != nil {
			resp.NumLabelPairs = uint64(ps.NumLabelPairs)
			resp.Lists = []StatList{
				statList(SeriesCountByMetricName, ps.CardinalityMetricsStats),
				statList(LabelValueCountByLabelName, ps.CardinalityLabelStats),
				statList(MemoryInBytesByLabelName, ps.LabelValueStats),
				statList(SeriesCountByLabelValuePair, ps.LabelValuePairsStats),
			}
		}
		return resp, nil
	}
	ms, err := FromLabelMatchers(req.Matchers)
	if err != nil {
		return nil, Errorf(CauseBadData, "%v", err)
	}
	ir, err := head.Index()
	if err != nil {
		return nil, fmt.Errorf("open the head index: %w", err)
	}
	defer ir.Close()
	var p index.Postings
	if len(ms) == 0 {
		name, value := index.AllPostingsKey()
		if p, err = ir.Postings(ctx, name, value); err != nil {
			return nil, fmt.Errorf("select series: %w", err)
		}
	} else {
		p, err = tsdb.PostingsForMatchers(ctx, ir, ms...)
		if err != nil {
			return nil, fmt.Errorf("select series: %w", err)
		}
	}
	resp := &CardinalityResponse{}
	values := map[string]map[string]uint64{} // label name → value → series
	wanted := req.LabelNames
	var b labels.ScratchBuilder
	for p.Next() {
		if err := ir.Series(p.At(), &b, nil); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue // deleted meanwhile
			}
			return nil, fmt.Errorf("read a series: %w", err)
		}
		resp.NumSeries++
		b.Labels().Range(func(l labels.Label) {
			if req.Kind == CardinalityLabelValues && !slices.Contains(wanted, l.Name) {
				return
			}
			vs := values[l.Name]
			if vs == nil {
				vs = map[string]uint64{}
				values[l.Name] = vs
			}
			vs[l.Value]++
		})
		if resp.NumSeries%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("select series: %w", err)
	}
	switch req.Kind {
	case CardinalityLabelNames:
		// Every label name, not only the top ones: the querier merges the
		// ingesters' counts before it cuts.
		l := StatList{Name: LabelNamesList}
		for name, vs := range values {
			l.Stats = append(l.Stats, Stat{Name: name, Value: uint64(len(vs))})
			l.Total += uint64(len(vs))
		}
		sortStats(l.Stats)
		resp.Lists = []StatList{l}
	case CardinalityLabelValues:
		for _, name := range wanted {
			l := StatList{Name: name}
			for v, n := range values[name] {
				l.Stats = append(l.Stats, Stat{Name: v, Value: n})
				l.Total += n
			}
			sortStats(l.Stats)
			resp.Lists = append(resp.Lists, l)
		}
	default:
		return nil, Errorf(CauseBadData, "unknown cardinality question %d", req.Kind)
	}
	return resp, nil
}

// statList converts one of the head's top lists, ordered as every list
// here is (ties by name).
func statList(name string, stats []index.Stat) StatList {
	l := StatList{Name: name, Stats: make([]Stat, 0, len(stats))}
	for _, s := range stats {
		l.Stats = append(l.Stats, Stat{Name: s.Name, Value: s.Count})
		l.Total += s.Count
	}
	sortStats(l.Stats)
	return l
}

// sortStats orders counts largest first, then by name.
func sortStats(s []Stat) {
	slices.SortFunc(s, func(a, b Stat) int {
		if a.Value != b.Value {
			if a.Value > b.Value {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// MergeCardinality puts together the answers of ingesters that hold, on
// average, copies of each of a tenant's series (the replication factor
// when all answered): series counts are added up and divided by copies;
// counts of distinct
// values (and their bytes, and of label pairs) are the largest one
// ingester saw, exact when every ingester holds every series and a lower
// bound otherwise. Each list keeps its top limit entries (0: all).
func MergeCardinality(answers []*CardinalityResponse, copies float64, limit int) *CardinalityResponse {
	copies = max(copies, 1)
	per := func(n uint64) uint64 { return uint64(math.Round(float64(n) / copies)) }
	out := &CardinalityResponse{}
	merged := map[string]map[string]uint64{}
	totals := map[string]uint64{}
	var order []string
	for i, a := range answers {
		out.NumSeries += a.NumSeries
		out.ChunkCount += a.ChunkCount
		out.NumLabelPairs = max(out.NumLabelPairs, a.NumLabelPairs)
		if i == 0 || a.MinTime < out.MinTime {
			out.MinTime = a.MinTime
		}
		out.MaxTime = max(out.MaxTime, a.MaxTime)
		for _, l := range a.Lists {
			m, ok := merged[l.Name]
			if !ok {
				m = map[string]uint64{}
				merged[l.Name] = m
				order = append(order, l.Name)
			}
			distinct := countsDistinct(l.Name)
			for _, st := range l.Stats {
				if distinct {
					m[st.Name] = max(m[st.Name], st.Value)
				} else {
					m[st.Name] += st.Value
				}
			}
			if distinct {
				totals[l.Name] = max(totals[l.Name], l.Total)
			} else {
				totals[l.Name] += l.Total
			}
		}
	}
	out.NumSeries = per(out.NumSeries)
	out.ChunkCount = per(out.ChunkCount)
	for _, name := range order {
		div := per
		if countsDistinct(name) {
			div = func(n uint64) uint64 { return n }
		}
		l := StatList{Name: name, Total: div(totals[name])}
		for n, v := range merged[name] {
			l.Stats = append(l.Stats, Stat{Name: n, Value: div(v)})
		}
		sortStats(l.Stats)
		if limit > 0 && len(l.Stats) > limit {
			l.Stats = l.Stats[:limit]
		}
		out.Lists = append(out.Lists, l)
	}
	return out
}

// countsDistinct reports whether a list counts distinct label values
// rather than series.
func countsDistinct(list string) bool {
	return list == LabelValueCountByLabelName || list == MemoryInBytesByLabelName || list == LabelNamesList
}

// LabelNamesList names the one list of a CardinalityLabelNames answer.
const LabelNamesList = "label_names"

// Marshal encodes the request: 1 kind, 2 matchers, 3 label names, 4 limit.
func (r *CardinalityRequest) Marshal() ([]byte, error) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(r.Kind))
	for _, m := range r.Matchers {
		mb, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	for _, n := range r.LabelNames {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(r.Limit)), nil
}

// Unmarshal decodes what Marshal encodes.
func (r *CardinalityRequest) Unmarshal(b []byte) error {
	*r = CardinalityRequest{}
	return eachField(b, func(num protowire.Number, v uint64, bytes []byte) error {
		switch num {
		case 1:
			r.Kind = CardinalityKind(v)
		case 2:
			m := &prompb.LabelMatcher{}
			if err := m.Unmarshal(bytes); err != nil {
				return err
			}
			r.Matchers = append(r.Matchers, m)
		case 3:
			r.LabelNames = append(r.LabelNames, string(bytes))
		case 4:
			r.Limit = int(int64(v))
		}
		return nil
	})
}

// Marshal encodes the answer: 1-5 the head figures, 6 the lists (each: 1
// name, 2 total, 3 stats of 1 name and 2 value).
func (r *CardinalityResponse) Marshal() ([]byte, error) {
	var b []byte
	for i, v := range []uint64{r.NumSeries, r.NumLabelPairs, uint64(r.MinTime), uint64(r.MaxTime), r.ChunkCount} {
		b = protowire.AppendTag(b, protowire.Number(i+1), protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	}
	for _, l := range r.Lists {
		var lb []byte
		lb = protowire.AppendTag(lb, 1, protowire.BytesType)
		lb = protowire.AppendString(lb, l.Name)
		lb = protowire.AppendTag(lb, 2, protowire.VarintType)
		lb = protowire.AppendVarint(lb, l.Total)
		for _, s := range l.Stats {
			var sb []byte
			sb = protowire.AppendTag(sb, 1, protowire.BytesType)
			sb = protowire.AppendString(sb, s.Name)
			sb = protowire.AppendTag(sb, 2, protowire.VarintType)
			sb = protowire.AppendVarint(sb, s.Value)
			lb = protowire.AppendTag(lb, 3, protowire.BytesType)
			lb = protowire.AppendBytes(lb, sb)
		}
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, lb)
	}
	return b, nil
}

// Unmarshal decodes what Marshal encodes.
func (r *CardinalityResponse) Unmarshal(b []byte) error {
	*r = CardinalityResponse{}
	return eachField(b, func(num protowire.Number, v uint64, bytes []byte) error {
		switch num {
		case 1:
			r.NumSeries = v
		case 2:
			r.NumLabelPairs = v
		case 3:
			r.MinTime = int64(v)
		case 4:
			r.MaxTime = int64(v)
		case 5:
			r.ChunkCount = v
		case 6:
			var l StatList
			err := eachField(bytes, func(num protowire.Number, v uint64, bytes []byte) error {
				switch num {
				case 1:
					l.Name = string(bytes)
				case 2:
					l.Total = v
				case 3:
					var s Stat
					if err := eachField(bytes, func(num protowire.Number, v uint64, bytes []byte) error {
						switch num {
						case 1:
							s.Name = string(bytes)
						case 2:
							s.Value = v
						}
						return nil
					}); err != nil {
						return err
					}
					l.Stats = append(l.Stats, s)
				}
				return nil
			})
			if err != nil {
				return err
			}
			r.Lists = append(r.Lists, l)
		}
		return nil
	})
}
