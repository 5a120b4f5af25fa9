// Command querybench times dashboard queries against Prometheus HTTP APIs
// (isobar's single binary, a cluster's querier and query-frontend,
// Prometheus itself) holding the same data: each query as a range query
// over -range ending -end-ago before now, -runs times, in turn across the
// targets. It prints a table of median times (the first run, cold for a
// results cache, apart), with progress on stderr, and the figures as JSON
// with -out.
//
//	querybench -target single=http://127.0.0.1:19009 -target prometheus=http://127.0.0.1:19090
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dashboard is the default query set: the panels of a private cloud's
// fleet dashboard over the bench/workload families.
var dashboard = []string{
	`sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))`,
	`topk(10, rate(libvirt_domain_interface_stats_receive_bytes_total[5m]))`,
	`sum by (project_id) (rate(libvirt_domain_interface_stats_receive_bytes_total[5m]))`,
	`avg by (instance) (DCGM_FI_DEV_GPU_UTIL)`,
	`sum by (bridge) (rate(ovs_interface_rx_dropped_total[5m]))`,
	`count by (job) ({__name__=~".+"})`,
}

type target struct{ name, base string }

type targets []target

func (t *targets) String() string { return fmt.Sprint(*t) }

func (t *targets) Set(s string) error {
	name, base, ok := strings.Cut(s, "=")
	if !ok || name == "" || !strings.HasPrefix(base, "http") {
		return errors.New("want name=http://host:port[/prefix]")
	}
	*t = append(*t, target{name, strings.TrimSuffix(base, "/")})
	return nil
}

// result is one target's figures for one query.
type result struct {
	Target      string  `json:"target"`
	Query       string  `json:"query"`
	FirstMs     float64 `json:"first_ms"`
	MedianMs    float64 `json:"median_ms"` // of the runs after the first
	MinMs       float64 `json:"min_ms"`
	Series      int     `json:"series"`
	Points      int     `json:"points"`
	ResponseLen int     `json:"response_bytes"`
	Error       string  `json:"error,omitempty"`
}

func main() {
	var ts targets
	fs := flag.NewFlagSet("querybench", flag.ExitOnError)
	fs.Var(&ts, "target", "name=base URL of a Prometheus API (repeat); /api/v1/query_range is added")
	rng := fs.Duration("range", time.Hour, "range of each query")
	endAgo := fs.Duration("end-ago", 0, "how long before now the range ends")
	step := fs.Duration("step", time.Minute, "query resolution")
	runs := fs.Int("runs", 5, "runs of each query on each target; the first is reported apart")
	tenant := fs.String("tenant", "", "X-Scope-OrgID to send")
	timeout := fs.Duration("timeout", 5*time.Minute, "per-request timeout")
	out := fs.String("out", "", "also write the results as JSON to this file")
	var queries multi
	fs.Var(&queries, "query", "a query to time (repeat); default: the fleet dashboard")
	_ = fs.Parse(os.Args[1:])
	if len(ts) == 0 || *runs < 2 {
		fmt.Fprintln(os.Stderr, "querybench: give at least one -target and -runs of 2 or more")
		os.Exit(2)
	}
	if len(queries) == 0 {
		queries = dashboard
	}
	end := time.Now().Add(-*endAgo)
	start := end.Add(-*rng)
	client := &http.Client{Timeout: *timeout}
	var results []result
	for qi, q := range queries {
		times := make([][]time.Duration, len(ts))
		res := make([]result, len(ts))
		for i, t := range ts {
			res[i] = result{Target: t.name, Query: q}
		}
		for run := range *runs {
			for i, t := range ts {
				if res[i].Error != "" {
					continue
				}
				took, series, points, n, err := queryRange(client, t.base, *tenant, q, start, end, *step)
				if err != nil {
					res[i].Error = err.Error()
					continue
				}
				times[i] = append(times[i], took)
				if run == 0 {
					res[i].Series, res[i].Points, res[i].ResponseLen = series, points, n
				}
			}
		}
		for i := range ts {
			if len(times[i]) > 0 {
				res[i].FirstMs = ms(times[i][0])
				rest := slices.Clone(times[i][1:])
				slices.Sort(rest)
				if len(rest) > 0 {
					res[i].MedianMs, res[i].MinMs = ms(rest[len(rest)/2]), ms(rest[0])
				}
			}
			fmt.Fprintf(os.Stderr, "[%d/%d] %-12s %-80.80s first %8.1f ms  median %8.1f ms  series %d %s\n",
				qi+1, len(queries), res[i].Target, q, res[i].FirstMs, res[i].MedianMs, res[i].Series, res[i].Error)
		}
		results = append(results, res...)
	}
	printTable(os.Stdout, ts, queries, results)
	if *out != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "querybench:", err)
			os.Exit(1)
		}
	}
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ", ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// queryRange runs one range query and counts its series and points.
func queryRange(c *http.Client, base, tenant, q string, start, end time.Time, step time.Duration) (time.Duration, int, int, int, error) {
	form := url.Values{
		"query": {q}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/query_range", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	began := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, 0, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Values     []json.RawMessage `json:"values"`
				Histograms []json.RawMessage `json:"histograms"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("decode the answer: %w", err)
	}
	points := 0
	for _, s := range r.Data.Result {
		points += len(s.Values) + len(s.Histograms)
	}
	return took, len(r.Data.Result), points, len(body), nil
}

// printTable prints, per query, each target's median time and its ratio
// to the first target's.
func printTable(w io.Writer, ts targets, queries []string, results []result) {
	fmt.Fprintf(w, "| query |")
	for _, t := range ts {
		fmt.Fprintf(w, " %s: first / median |", t.name)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "| --- |")
	for range ts {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for qi, q := range queries {
		fmt.Fprintf(w, "| `%s` |", q)
		base := results[qi*len(ts)].MedianMs
		for i := range ts {
			r := results[qi*len(ts)+i]
			if r.Error != "" {
				fmt.Fprintf(w, " error |")
				continue
			}
			ratio := ""
			if i > 0 && base > 0 {
				ratio = fmt.Sprintf(" (%.2f×)", r.MedianMs/base)
			}
			fmt.Fprintf(w, " %.0f / %.0f ms%s |", r.FirstMs, r.MedianMs, ratio)
		}
		fmt.Fprintln(w)
	}
}
