package frontend

import (
	"slices"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/isobar-tsdb/isobar/pkg/shard"
)

// embeddedLabel names the matcher of the selectors in a sharded plan's
// outer query: its value is the index of the leg whose answers the
// selector reads.
const embeddedLabel = "__isobar_embedded__"

// shardPlan is how a query is answered sharded: queriers answer the legs,
// and the frontend evaluates the outer query over their answers.
type shardPlan struct {
	outer string
	legs  []shardLeg
}

// shardLeg is an instant-vector part of a query that queriers evaluate:
// one query per shard, or the part whole.
type shardLeg struct {
	queries []string
	// labelled legs get a shard label on their series, which the outer
	// aggregation drops: every shard answers the same groups.
	labelled bool
}

// requests is the number of querier requests the plan takes per range.
func (p *shardPlan) requests() int {
	n := 0
	for _, l := range p.legs {
		n += len(l.queries)
	}
	return n
}

// planShards rewrites expr so that its shardable aggregations (sum, count,
// min, max, group, avg, topk, bottomk over series-local expressions) run
// as shards queries each, merged by the same aggregation in the frontend.
// It returns nil when nothing in expr can be sharded.
func planShards(pr parser.Parser, expr parser.Expr, shards int) *shardPlan {
	if shards < 2 {
		return nil
	}
	p := &planner{parser: pr, shards: shards}
	outer, sharded := p.rewrite(expr)
	if !sharded || p.failed {
		return nil
	}
	return &shardPlan{outer: outer.String(), legs: p.legs}
}

type planner struct {
	parser parser.Parser // that parsed the query
	shards int
	legs   []shardLeg
	failed bool // a sharded part sits where the outer query cannot read it
}

// rewrite returns e with its shardable aggregations replaced, and whether
// there were any.
func (p *planner) rewrite(e parser.Expr) (parser.Expr, bool) {
	switch e := e.(type) {
	case *parser.AggregateExpr:
		if shardable(e) {
			return p.shardAggregation(e), true
		}
		// Not the aggregation, maybe what it aggregates (count_values,
		// quantile, stddev, or an aggregation of an aggregation).
		inner, ok := p.rewrite(e.Expr)
		if !ok {
			return e, false
		}
		out := *e
		out.Expr = inner
		if out.Param != nil {
			out.Param = p.embedAll(out.Param)
		}
		return &out, true
	case *parser.BinaryExpr:
		lhs, lok := p.rewrite(e.LHS)
		rhs, rok := p.rewrite(e.RHS)
		if !lok && !rok {
			return e, false
		}
		if !lok {
			lhs = p.embedAll(lhs)
		}
		if !rok {
			rhs = p.embedAll(rhs)
		}
		out := *e
		out.LHS, out.RHS = lhs, rhs
		return &out, true
	case *parser.ParenExpr:
		inner, ok := p.rewrite(e.Expr)
		if !ok {
			return e, false
		}
		return &parser.ParenExpr{Expr: inner}, true
	case *parser.UnaryExpr:
		inner, ok := p.rewrite(e.Expr)
		if !ok {
			return e, false
		}
		return &parser.UnaryExpr{Op: e.Op, Expr: inner}, true
	case *parser.Call:
		args := make(parser.Expressions, len(e.Args))
		sharded := false
		for i, a := range e.Args {
			args[i] = a
			if a.Type() == parser.ValueTypeMatrix {
				continue // a range or a subquery: not looked into
			}
			var ok bool
			if args[i], ok = p.rewrite(a); ok {
				sharded = true
			}
		}
		if !sharded {
			return e, false
		}
		for i, a := range args {
			if a == e.Args[i] {
				args[i] = p.embedAll(a)
			}
		}
		return &parser.Call{Func: e.Func, Args: args}, true
	}
	// Selectors, literals and subqueries: nothing sharded below.
	return e, false
}

// embedAll turns the instant-vector parts of e that read series into legs
// evaluated whole; e's constants stay in the outer query.
func (p *planner) embedAll(e parser.Expr) parser.Expr {
	if !readsSeries(e) {
		return e
	}
	switch e.Type() {
	case parser.ValueTypeVector:
		return p.embed(e, 1, false)
	case parser.ValueTypeMatrix:
		p.failed = true
		return e
	}
	switch e := e.(type) {
	case *parser.ParenExpr:
		return &parser.ParenExpr{Expr: p.embedAll(e.Expr)}
	case *parser.UnaryExpr:
		return &parser.UnaryExpr{Op: e.Op, Expr: p.embedAll(e.Expr)}
	case *parser.BinaryExpr:
		out := *e
		out.LHS, out.RHS = p.embedAll(e.LHS), p.embedAll(e.RHS)
		return &out
	case *parser.Call:
		args := make(parser.Expressions, len(e.Args))
		for i, a := range e.Args {
			args[i] = p.embedAll(a)
		}
		return &parser.Call{Func: e.Func, Args: args}
	}
	p.failed = true
	return e
}

// embed adds e as a leg of shards queries (1: e whole) and returns the
// selector that reads its answers; labelled tells the shards' series apart
// by a shard label.
func (p *planner) embed(e parser.Expr, shards int, labelled bool) parser.Expr {
	leg := shardLeg{labelled: labelled, queries: []string{e.String()}}
	if shards > 1 {
		leg.queries = leg.queries[:0]
		for i := range shards {
			q, err := p.withShard(e, shard.Shard{Index: uint64(i), Count: uint64(shards)})
			if err != nil {
				p.failed = true
				return e
			}
			leg.queries = append(leg.queries, q)
		}
	}
	p.legs = append(p.legs, leg)
	return &parser.VectorSelector{LabelMatchers: []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, embeddedLabel, strconv.Itoa(len(p.legs)-1)),
	}}
}

// shardAggregation answers a shardable aggregation from its shards.
func (p *planner) shardAggregation(a *parser.AggregateExpr) parser.Expr {
	// Over the shards' answers: sum for counts, the aggregation itself for
	// the others; the shard label is dropped with the grouping.
	outer := func(inner *parser.AggregateExpr, op parser.ItemType) *parser.AggregateExpr {
		out := &parser.AggregateExpr{Op: op, Param: a.Param, Grouping: a.Grouping, Without: a.Without}
		if op == parser.TOPK || op == parser.BOTTOMK {
			// The shards answer original series, each from one shard
			// only: there is no shard label to drop.
			out.Expr = p.embed(inner, p.shards, false)
			return out
		}
		if a.Without {
			out.Grouping = append(append([]string(nil), a.Grouping...), shard.Label)
		}
		out.Expr = p.embed(inner, p.shards, true)
		return out
	}
	with := func(op parser.ItemType) *parser.AggregateExpr {
		out := *a
		out.Op = op
		return &out
	}
	switch a.Op {
	case parser.COUNT:
		return outer(a, parser.SUM)
	case parser.AVG:
		return &parser.BinaryExpr{
			Op:             parser.DIV,
			LHS:            outer(with(parser.SUM), parser.SUM),
			RHS:            outer(with(parser.COUNT), parser.SUM),
			VectorMatching: &parser.VectorMatching{Card: parser.CardOneToOne},
		}
	}
	return outer(a, a.Op)
}

// shardable reports whether a's answer can be put together from the same
// aggregation over disjoint sets of series.
func shardable(a *parser.AggregateExpr) bool {
	switch a.Op {
	case parser.SUM, parser.MIN, parser.MAX, parser.COUNT, parser.GROUP, parser.AVG:
	case parser.TOPK, parser.BOTTOMK:
		if readsSeries(a.Param) {
			return false
		}
	default:
		return false
	}
	if !a.Without && slices.Contains(a.Grouping, labels.MetricName) {
		// With delayed name removal the shards' answers lose the name
		// they were grouped by.
		return false
	}
	return seriesLocal(a.Expr)
}

// nonLocalFunctions look at more than one series at a time, or make series
// out of none.
var nonLocalFunctions = map[string]bool{
	"absent": true, "absent_over_time": true, "scalar": true, "vector": true,
	"histogram_quantile": true, "histogram_fraction": true, "info": true,
}

// seriesLocal reports whether e's answer for a series depends on that
// series alone (and on constants), so that it can be evaluated on any
// partition of the series.
func seriesLocal(e parser.Expr) bool {
	switch e := e.(type) {
	case *parser.VectorSelector, *parser.MatrixSelector, *parser.NumberLiteral, *parser.StringLiteral:
		return true
	case *parser.ParenExpr:
		return seriesLocal(e.Expr)
	case *parser.UnaryExpr:
		return seriesLocal(e.Expr)
	case *parser.SubqueryExpr:
		return seriesLocal(e.Expr)
	case *parser.BinaryExpr:
		lScalar := e.LHS.Type() == parser.ValueTypeScalar
		rScalar := e.RHS.Type() == parser.ValueTypeScalar
		switch {
		case lScalar && !readsSeries(e.LHS):
			return seriesLocal(e.RHS)
		case rScalar && !readsSeries(e.RHS):
			return seriesLocal(e.LHS)
		}
		return false // two vectors match across series
	case *parser.Call:
		if nonLocalFunctions[e.Func.Name] {
			return false
		}
		for _, a := range e.Args {
			if t := a.Type(); t == parser.ValueTypeScalar || t == parser.ValueTypeString {
				if readsSeries(a) {
					return false
				}
				continue
			}
			if !seriesLocal(a) {
				return false
			}
		}
		return true
	}
	return false
}

// readsSeries reports whether e selects series anywhere.
func readsSeries(e parser.Expr) bool {
	if e == nil {
		return false
	}
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n.(type) {
		case *parser.VectorSelector, *parser.MatrixSelector:
			found = true
		}
		return nil
	})
	return found
}

// withShard prints e with every selector limited to shard s.
func (p *planner) withShard(e parser.Expr, s shard.Shard) (string, error) {
	c, err := p.parser.ParseExpr(e.String()) // a copy to change
	if err != nil {
		return "", err
	}
	m := s.Matcher()
	parser.Inspect(c, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
	return c.String(), nil
}
