package frontend

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/isobar-tsdb/isobar/pkg/promapi"
)

// querySizesKept bounds the queries whose size the frontend remembers
// (about 100 bytes each): a fleet's dashboards and rules, many times over.
const querySizesKept = 100_000

// querySizes remembers how many samples an evaluation time of each
// tenant's queries read when it last ran, so that a query is cut into no
// more shards than give each a share worth its fixed cost (a request to a
// querier, its encoding, the merge): a dashboard panel over a few hundred
// series answers faster whole. A query not seen yet gets every shard.
type querySizes struct {
	perShard int64                       // samples a shard should read; 0: every query gets every shard
	last     *lru.Cache[uint64, float64] // samples per evaluation time, by tenant and query
}

func newQuerySizes(perShard int64) *querySizes {
	last, _ := lru.New[uint64, float64](querySizesKept) // fails only for a size under 1
	return &querySizes{perShard: perShard, last: last}
}

func querySizeKey(id, query string) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(id)
	_, _ = d.Write([]byte{0xff}) // in no tenant ID
	_, _ = d.WriteString(query)
	return d.Sum64()
}

// shards is how many shards, at most most, the query should be cut into
// for a piece of steps evaluation times.
func (s *querySizes) shards(id, query string, steps int64, most int) int {
	if s.perShard <= 0 || most < 2 {
		return most
	}
	perStep, ok := s.last.Get(querySizeKey(id, query))
	if !ok {
		return most
	}
	n := perStep * float64(steps) / float64(s.perShard)
	if n >= float64(most) {
		return most
	}
	return max(int(n), 1)
}

// remember keeps what a run of the query read over steps evaluation times.
func (s *querySizes) remember(id, query string, cost *queryCost) {
	if s.perShard <= 0 || !cost.known() {
		return
	}
	s.last.Add(querySizeKey(id, query), float64(cost.samples.Load())/float64(cost.steps.Load()))
}

// queryCost adds up what the queriers read for one query: the samples of
// their answers' promapi.SamplesHeader, over the evaluation times asked.
type queryCost struct {
	samples, steps atomic.Int64
	unknown        atomic.Bool // an answer without the header (an older querier)
}

// add counts the samples of a querier's answer, with header h.
func (c *queryCost) add(h http.Header) {
	v := h.Get(promapi.SamplesHeader)
	n, err := strconv.ParseInt(v, 10, 64)
	if v == "" || err != nil || n < 0 {
		c.unknown.Store(true)
		return
	}
	c.samples.Add(n)
}

func (c *queryCost) known() bool { return !c.unknown.Load() && c.steps.Load() > 0 }
