// Package shard names a part of a query's series by hash: the query
// sharding of the query-frontend asks each querier for one shard with a
// matcher on Label, and the stores that hold the series (ingester heads,
// blocks) turn that matcher into Prometheus' SelectHints.ShardIndex and
// ShardCount, which select series by labels.StableHash.
package shard

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Label is the name of the matcher that selects a shard. It never reaches
// an index as a matcher: the stores take it out and select by hints.
const Label = "__query_shard__"

// Shard is shard Index (0-based) of Count.
type Shard struct {
	Index, Count uint64
}

// String is the matcher value: "<Index+1>_of_<Count>".
func (s Shard) String() string {
	return strconv.FormatUint(s.Index+1, 10) + "_of_" + strconv.FormatUint(s.Count, 10)
}

// Matcher selects s.
func (s Shard) Matcher() *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchEqual, Label, s.String())
}

// Parse reads a matcher value written by String.
func Parse(v string) (Shard, error) {
	i, c, ok := strings.Cut(v, "_of_")
	if ok {
		idx, err1 := strconv.ParseUint(i, 10, 64)
		count, err2 := strconv.ParseUint(c, 10, 64)
		if err1 == nil && err2 == nil && idx >= 1 && idx <= count {
			return Shard{Index: idx - 1, Count: count}, nil
		}
	}
	return Shard{}, fmt.Errorf("invalid %s %q: want <index>_of_<count>, 1 <= index <= count", Label, v)
}

// FromMatchers takes the shard matcher out of ms: it returns the other
// matchers and the shard (Count 0 when there is none). A shard matcher
// other than one equality, or a second one, is an error.
func FromMatchers(ms []*labels.Matcher) ([]*labels.Matcher, Shard, error) {
	at := -1
	for i, m := range ms {
		if m.Name != Label {
			continue
		}
		if at >= 0 {
			return nil, Shard{}, fmt.Errorf("more than one %s matcher", Label)
		}
		if m.Type != labels.MatchEqual {
			return nil, Shard{}, fmt.Errorf("the %s matcher must be an equality", Label)
		}
		at = i
	}
	if at < 0 {
		return ms, Shard{}, nil
	}
	s, err := Parse(ms[at].Value)
	if err != nil {
		return nil, Shard{}, err
	}
	rest := make([]*labels.Matcher, 0, len(ms)-1)
	rest = append(rest, ms[:at]...)
	rest = append(rest, ms[at+1:]...)
	return rest, s, nil
}

// Hints returns hints selecting s: a copy of hints (nil is none) with
// ShardIndex and ShardCount set. For no shard it returns hints unchanged.
func Hints(hints *storage.SelectHints, s Shard) *storage.SelectHints {
	if s.Count == 0 {
		return hints
	}
	var h storage.SelectHints
	if hints != nil {
		h = *hints
	}
	h.ShardIndex, h.ShardCount = s.Index, s.Count
	return &h
}
