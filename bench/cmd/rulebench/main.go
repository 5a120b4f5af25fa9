// Command rulebench measures what a rule load costs an isobar ruler: it
// loads the rule pack of deployments/rules plus copies of its recording
// rules (renamed, summed by job, in groups of their own) until -rules
// rules, and watches
// the process for -duration while it evaluates them. Before it loads
// anything it watches the process for -baseline, so that the figures are
// what the rules add. It reports the groups' evaluation times (from
// /api/v1/rules), missed iterations, CPU-seconds per minute and memory,
// with progress on stderr and the figures as JSON with -out.
//
//	rulebench -url http://127.0.0.1:19009 -rules 5000 -duration 5m
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	url, dir, out, tenant string
	rules                 int
	baseline, duration    time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rulebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.url, "url", "http://127.0.0.1:9009", "base URL of the isobar process running the ruler (the only address contacted)")
	fs.StringVar(&c.dir, "pack", "deployments/rules", "directory of the rule pack (*.yaml)")
	fs.IntVar(&c.rules, "rules", 5000, "rules to load in all: the pack, then copies of its recording rules")
	fs.DurationVar(&c.baseline, "baseline", 2*time.Minute, "how long to watch the process before loading rules")
	fs.DurationVar(&c.duration, "duration", 5*time.Minute, "how long to watch the process evaluating the rules")
	fs.StringVar(&c.tenant, "tenant", "", "tenant sent as X-Scope-OrgID")
	fs.StringVar(&c.out, "out", "", "also write the figures as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	res, err := bench(c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "rulebench:", err)
		return 1
	}
	res.print(stdout)
	if c.out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(c.out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "rulebench:", err)
			return 1
		}
	}
	return 0
}

// result is what a run measured.
type result struct {
	Rules, Groups        int
	Interval             string
	Evaluations          float64 // group evaluations in the window
	NeverEvaluated       int     // groups not evaluated once by the end
	MissedIterations     float64
	GroupSeconds         quantiles // evaluation time of each group, last evaluation
	GroupSecondsPerMin   float64   // sum over groups of evaluation time, per minute
	CPUPerMinBaseline    float64   // process CPU-seconds per minute without rules
	CPUPerMinWithRules   float64
	RSSBaselineMiB       float64
	RSSMaxWithRulesMiB   float64
	HeapBaselineMiB      float64
	HeapMaxWithRulesMiB  float64
	WriteFailures        float64
	UnhealthyRules       int
	FirstUnhealthyReason string
}

type quantiles struct{ P50, P90, P99, Max float64 }

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "rules %d in %d groups, interval %s\n", r.Rules, r.Groups, r.Interval)
	fmt.Fprintf(w, "group evaluations %.0f (groups never evaluated: %d), missed iterations %.0f, write failures %.0f, unhealthy rules %d %s\n", r.Evaluations, r.NeverEvaluated, r.MissedIterations, r.WriteFailures, r.UnhealthyRules, r.FirstUnhealthyReason)
	fmt.Fprintf(w, "time per group: p50 %.3fs p90 %.3fs p99 %.3fs max %.3fs; all groups %.1f s per minute\n", r.GroupSeconds.P50, r.GroupSeconds.P90, r.GroupSeconds.P99, r.GroupSeconds.Max, r.GroupSecondsPerMin)
	fmt.Fprintf(w, "CPU-seconds per minute: %.1f without rules, %.1f with (+%.1f)\n", r.CPUPerMinBaseline, r.CPUPerMinWithRules, r.CPUPerMinWithRules-r.CPUPerMinBaseline)
	fmt.Fprintf(w, "RSS: %.0f MiB without rules, at most %.0f MiB with; Go heap %.0f / %.0f MiB\n", r.RSSBaselineMiB, r.RSSMaxWithRulesMiB, r.HeapBaselineMiB, r.HeapMaxWithRulesMiB)
}

func bench(c config, progress io.Writer) (*result, error) {
	cl := &client{base: strings.TrimSuffix(c.url, "/"), tenant: c.tenant, http: &http.Client{Timeout: time.Minute}}
	files, err := ruleFiles(c.dir, c.rules)
	if err != nil {
		return nil, err
	}
	res := &result{}
	for _, f := range files {
		res.Groups += len(f.groups.Groups)
		for _, g := range f.groups.Groups {
			res.Rules += len(g.Rules)
		}
	}

	fmt.Fprintf(progress, "watching the process without rules for %s\n", c.baseline)
	base, err := cl.watch(c.baseline, progress)
	if err != nil {
		return nil, err
	}
	res.CPUPerMinBaseline, res.RSSBaselineMiB, res.HeapBaselineMiB = base.cpuPerMin, base.maxRSS, base.maxHeap

	fmt.Fprintf(progress, "loading %d rules in %d groups (%d namespaces)\n", res.Rules, res.Groups, len(files))
	for _, f := range files {
		if err := cl.postRules(f.namespace, &f.groups); err != nil {
			return nil, err
		}
	}
	// Every group evaluates once within an interval when the ruler keeps
	// up; one that does not is measured as it is after two minutes.
	fmt.Fprintln(progress, "waiting until every group was evaluated (at most 2 minutes)")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		groups, err := cl.groups()
		if err != nil {
			return nil, err
		}
		done := 0
		for _, g := range groups {
			if !g.LastEvaluation.IsZero() {
				done++
			}
		}
		fmt.Fprintf(progress, "%d of %d groups evaluated\n", done, res.Groups)
		if len(groups) > 0 {
			res.Interval = time.Duration(groups[0].Interval * float64(time.Second)).String()
		}
		if done == res.Groups || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}

	fmt.Fprintf(progress, "watching the process evaluating the rules for %s\n", c.duration)
	with, err := cl.watch(c.duration, progress)
	if err != nil {
		return nil, err
	}
	res.CPUPerMinWithRules, res.RSSMaxWithRulesMiB, res.HeapMaxWithRulesMiB = with.cpuPerMin, with.maxRSS, with.maxHeap
	res.Evaluations, res.MissedIterations, res.WriteFailures = with.evaluations, with.missed, with.writeFailures

	groups, err := cl.groups()
	if err != nil {
		return nil, err
	}
	var times []float64
	total := 0.0
	for _, g := range groups {
		if g.LastEvaluation.IsZero() {
			res.NeverEvaluated++
			continue
		}
		times = append(times, g.EvaluationTime)
		if g.Interval > 0 {
			total += g.EvaluationTime * 60 / g.Interval
		}
		for _, r := range g.Rules {
			if r.Health != "ok" {
				res.UnhealthyRules++
				if res.FirstUnhealthyReason == "" {
					res.FirstUnhealthyReason = fmt.Sprintf("(%s of %s: %s)", r.Name, g.Name, r.LastError)
				}
			}
		}
	}
	if len(times) == 0 {
		return res, nil
	}
	slices.Sort(times)
	q := func(p float64) float64 { return times[min(len(times)-1, int(p*float64(len(times))))] }
	res.GroupSeconds = quantiles{P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: times[len(times)-1]}
	res.GroupSecondsPerMin = total
	return res, nil
}

// ruleFile is a namespace's rule groups.
type ruleFile struct {
	namespace string
	groups    rulefmt.RuleGroups
}

// ruleFiles reads the pack in dir and adds copies of its recording rules,
// each copy's groups in a namespace of their own, until total rules. A
// copy sums its rule's answer by job: the pack's records keep one series
// per host, disk, VM or port, and 200 renamed copies of them would write
// tens of millions of new series (at 1M workload series the single binary
// reached 16 GB before their first evaluation was done), which measures
// the head, not the ruler. The copies select and compute what the pack's
// rules do and write a few series each.
func ruleFiles(dir string, total int) ([]ruleFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no rule files in %s: %v", dir, err)
	}
	var files []ruleFile
	rules := 0
	var recording []rulefmt.RuleGroup // the pack's groups, recording rules only
	for _, p := range paths {
		groups, errs := rulefmt.ParseFile(p, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %v", p, errors.Join(errs...))
		}
		files = append(files, ruleFile{namespace: strings.TrimSuffix(filepath.Base(p), ".yaml"), groups: *groups})
		for _, g := range groups.Groups {
			rules += len(g.Rules)
			rec := g
			rec.Rules = nil
			for _, r := range g.Rules {
				if r.Record != "" {
					rec.Rules = append(rec.Rules, r)
				}
			}
			if len(rec.Rules) > 0 {
				recording = append(recording, rec)
			}
		}
	}
	for copyN := 1; rules < total; copyN++ {
		f := ruleFile{namespace: fmt.Sprintf("copy-%04d", copyN)}
		for _, g := range recording {
			if rules >= total {
				break
			}
			c := rulefmt.RuleGroup{Name: fmt.Sprintf("%s-copy-%04d", g.Name, copyN), Interval: g.Interval}
			for _, r := range g.Rules {
				if rules >= total {
					break
				}
				r.Record = fmt.Sprintf("%s_copy%d", r.Record, copyN)
				r.Expr = "sum by (job) (" + r.Expr + ")"
				c.Rules = append(c.Rules, r)
				rules++
			}
			f.groups.Groups = append(f.groups.Groups, c)
		}
		files = append(files, f)
	}
	return files, nil
}

type client struct {
	base, tenant string
	http         *http.Client
}

func (c *client) do(method, path string, body []byte, contentType string) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.tenant != "" {
		req.Header.Set("X-Scope-OrgID", c.tenant)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

func (c *client) postRules(namespace string, groups *rulefmt.RuleGroups) error {
	body, err := yaml.Marshal(groups)
	if err != nil {
		return fmt.Errorf("encode namespace %s: %w", namespace, err)
	}
	_, err = c.do(http.MethodPost, "/prometheus/config/v1/rules/"+namespace, body, "application/yaml")
	return err
}

type group struct {
	Name           string    `json:"name"`
	Interval       float64   `json:"interval"`
	EvaluationTime float64   `json:"evaluationTime"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	Rules          []struct {
		Name      string `json:"name"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	} `json:"rules"`
}

func (c *client) groups() ([]group, error) {
	b, err := c.do(http.MethodGet, "/prometheus/api/v1/rules", nil, "")
	if err != nil {
		return nil, err
	}
	var out struct {
		Data struct {
			Groups []group `json:"groups"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode /api/v1/rules: %w", err)
	}
	return out.Data.Groups, nil
}

// metrics returns the sums of the process's metrics whose names are given.
func (c *client) metrics(names ...string) (map[string]float64, error) {
	b, err := c.do(http.MethodGet, "/metrics", nil, "")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		series := name
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		if !slices.Contains(names, name) || strings.Contains(series, "le=") {
			continue
		}
		fields := strings.Fields(rest)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, nil
}

type watched struct {
	cpuPerMin, maxRSS, maxHeap         float64
	evaluations, missed, writeFailures float64
}

// watch samples the process every 5 seconds for d.
func (c *client) watch(d time.Duration, progress io.Writer) (*watched, error) {
	names := []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes",
		"isobar_ruler_group_evaluations_total", "isobar_ruler_missed_iterations_total", "isobar_ruler_write_failures_total"}
	first, err := c.metrics(names...)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	w := &watched{maxRSS: first["process_resident_memory_bytes"] / (1 << 20), maxHeap: first["go_memstats_heap_inuse_bytes"] / (1 << 20)}
	last := first
	for time.Since(start) < d {
		time.Sleep(min(5*time.Second, d-time.Since(start)))
		m, err := c.metrics(names...)
		if err != nil {
			return nil, err
		}
		w.maxRSS = max(w.maxRSS, m["process_resident_memory_bytes"]/(1<<20))
		w.maxHeap = max(w.maxHeap, m["go_memstats_heap_inuse_bytes"]/(1<<20))
		last = m
		fmt.Fprintf(progress, "%6.0fs cpu %.1fs, rss %.0f MiB, evaluations %.0f, missed %.0f\n", time.Since(start).Seconds(),
			m["process_cpu_seconds_total"]-first["process_cpu_seconds_total"], m["process_resident_memory_bytes"]/(1<<20),
			m["isobar_ruler_group_evaluations_total"]-first["isobar_ruler_group_evaluations_total"],
			m["isobar_ruler_missed_iterations_total"]-first["isobar_ruler_missed_iterations_total"])
	}
	minutes := time.Since(start).Minutes()
	w.cpuPerMin = (last["process_cpu_seconds_total"] - first["process_cpu_seconds_total"]) / minutes
	w.evaluations = last["isobar_ruler_group_evaluations_total"] - first["isobar_ruler_group_evaluations_total"]
	w.missed = last["isobar_ruler_missed_iterations_total"] - first["isobar_ruler_missed_iterations_total"]
	w.writeFailures = last["isobar_ruler_write_failures_total"] - first["isobar_ruler_write_failures_total"]
	return w, nil
}
