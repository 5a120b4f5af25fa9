package ruler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// maxRuleGroupBytes bounds the body of a POST of rule groups.
const maxRuleGroupBytes = 1 << 20

// Register mounts the configuration API (Cortex and Mimir's, under
// /prometheus/config/v1/rules) and Prometheus' rules and alerts endpoints
// (under /prometheus/api/v1 and /api/v1) on mux.
func (r *Ruler) Register(mux *http.ServeMux) {
	const cfg = "/prometheus/config/v1/rules"
	mux.HandleFunc("GET "+cfg, r.listRules)
	mux.HandleFunc("GET "+cfg+"/{namespace}", r.listRules)
	mux.HandleFunc("GET "+cfg+"/{namespace}/{group}", r.getGroup)
	// A page of another site must not change rules from an operator's
	// browser; Grafana and mimirtool send no browser headers.
	crossOrigin := http.NewCrossOriginProtection()
	mux.Handle("POST "+cfg+"/{namespace}", crossOrigin.Handler(http.HandlerFunc(r.setGroups)))
	mux.Handle("DELETE "+cfg+"/{namespace}", crossOrigin.Handler(http.HandlerFunc(r.deleteNamespace)))
	mux.Handle("DELETE "+cfg+"/{namespace}/{group}", crossOrigin.Handler(http.HandlerFunc(r.deleteGroup)))
	for _, prefix := range []string{"/prometheus/api/v1", "/api/v1"} {
		mux.HandleFunc("GET "+prefix+"/rules", r.prometheusRules)
		mux.HandleFunc("GET "+prefix+"/alerts", r.prometheusAlerts)
	}
}

// httpError answers code with a Prometheus-style error body.
func httpError(w http.ResponseWriter, code int, errorType string, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": errorType, "error": err.Error()})
}

func writeYAML(w http.ResponseWriter, v any) {
	b, err := yaml.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(b)
}

// tenantOf answers 401 itself when the request has no tenant.
func tenantOf(w http.ResponseWriter, req *http.Request) (string, bool) {
	id, err := tenant.From(req.Context())
	if err != nil {
		httpError(w, http.StatusUnauthorized, "bad_data", err)
		return "", false
	}
	return id, true
}

// tenantAndNamespace reads the tenant and the namespace of the path, and
// answers the error itself when either is missing or invalid.
func tenantAndNamespace(w http.ResponseWriter, req *http.Request) (string, string, bool) {
	id, ok := tenantOf(w, req)
	if !ok {
		return "", "", false
	}
	ns := req.PathValue("namespace")
	if err := checkNamespace(ns); err != nil {
		httpError(w, http.StatusBadRequest, "bad_data", err)
		return "", "", false
	}
	return id, ns, true
}

// accepted answers a change, as Cortex does, and applies it on this ruler.
func (r *Ruler) accepted(w http.ResponseWriter) {
	r.resyncSoon()
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"success","data":null,"errorType":"","error":""}`))
}

// listRules answers the tenant's groups by namespace, or one namespace's.
func (r *Ruler) listRules(w http.ResponseWriter, req *http.Request) {
	id, ok := tenantOf(w, req)
	if !ok {
		return
	}
	groups, err := r.deps.Store.Groups(req.Context(), id)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", fmt.Errorf("read rule groups: %w", err))
		return
	}
	if ns := req.PathValue("namespace"); ns != "" {
		groups = map[string][]rulefmt.RuleGroup{ns: groups[ns]}
		if len(groups[ns]) == 0 {
			httpError(w, http.StatusNotFound, "not_found", errors.New("no rule groups found"))
			return
		}
	}
	if len(groups) == 0 {
		httpError(w, http.StatusNotFound, "not_found", errors.New("no rule groups found"))
		return
	}
	writeYAML(w, groups)
}

func (r *Ruler) getGroup(w http.ResponseWriter, req *http.Request) {
	id, ok := tenantOf(w, req)
	if !ok {
		return
	}
	groups, err := r.deps.Store.Groups(req.Context(), id)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", fmt.Errorf("read rule groups: %w", err))
		return
	}
	name := req.PathValue("group")
	for _, g := range groups[req.PathValue("namespace")] {
		if g.Name == name {
			writeYAML(w, g)
			return
		}
	}
	httpError(w, http.StatusNotFound, "not_found", errors.New("rule group not found"))
}

// setGroups stores the group of the body (or the groups of a rule file,
// `groups: [...]`) in the namespace, after every check: the whole body is
// refused when any part fails.
func (r *Ruler) setGroups(w http.ResponseWriter, req *http.Request) {
	id, ns, ok := tenantAndNamespace(w, req)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxRuleGroupBytes))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "bad_data", fmt.Errorf("read the rule groups: %w", err))
		return
	}
	groups, err := r.parseGroups(id, body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	if max := r.deps.Limits.For(id).RulerMaxRuleGroupsPerTenant; max > 0 {
		existing, err := r.deps.Store.GroupNames(req.Context(), id)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "internal", fmt.Errorf("list rule groups: %w", err))
			return
		}
		n := 0
		for other, names := range existing {
			for _, name := range names {
				if other != ns || !slices.ContainsFunc(groups, func(p rulefmt.RuleGroup) bool { return p.Name == name }) {
					n++
				}
			}
		}
		if n+len(groups) > max {
			httpError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("the tenant would have %d rule groups, over its limit of %d (-ruler.max-rule-groups-per-tenant)", n+len(groups), max))
			return
		}
	}
	for _, g := range groups {
		if err := r.deps.Store.SetGroup(req.Context(), id, ns, g); err != nil {
			r.storeError(w, err)
			return
		}
	}
	r.accepted(w)
}

// parseGroups reads one rule group, or a rule file of groups, and checks
// each as Prometheus checks rule files, and against the tenant's limits.
func (r *Ruler) parseGroups(id string, body []byte) ([]rulefmt.RuleGroup, error) {
	var probe map[string]any
	if err := yaml.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var file rulefmt.RuleGroups
	dec := yaml.NewDecoder(bytes.NewReader(body))
	dec.KnownFields(true)
	if _, isFile := probe["groups"]; isFile {
		if err := dec.Decode(&file); err != nil {
			return nil, fmt.Errorf("invalid rule file: %w", err)
		}
	} else {
		var g rulefmt.RuleGroup
		if err := dec.Decode(&g); err != nil {
			return nil, fmt.Errorf("invalid rule group: %w", err)
		}
		file.Groups = []rulefmt.RuleGroup{g}
	}
	if len(file.Groups) == 0 {
		return nil, errors.New("no rule group in the body")
	}
	// Prometheus' own checks, on the groups as a rule file.
	canonical, err := yaml.Marshal(file)
	if err != nil {
		return nil, err
	}
	l := r.deps.Limits.For(id)
	if _, errs := rulefmt.Parse(canonical, false, nameScheme(l), r.deps.Parser, r.logger); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, g := range file.Groups {
		if max := l.RulerMaxRulesPerRuleGroup; max > 0 && len(g.Rules) > max {
			return nil, fmt.Errorf("rule group %q has %d rules, over the limit of %d (-ruler.max-rules-per-rule-group)", g.Name, len(g.Rules), max)
		}
		if min := time.Duration(l.RulerMinEvaluationInterval); g.Interval != 0 && time.Duration(g.Interval) < min {
			return nil, fmt.Errorf("rule group %q has an evaluation interval of %s, under the minimum of %s (-ruler.min-evaluation-interval)", g.Name, g.Interval, model.Duration(min))
		}
	}
	return file.Groups, nil
}

func (r *Ruler) deleteNamespace(w http.ResponseWriter, req *http.Request) {
	id, ns, ok := tenantAndNamespace(w, req)
	if !ok {
		return
	}
	if err := r.deps.Store.DeleteNamespace(req.Context(), id, ns); err != nil {
		r.storeError(w, err)
		return
	}
	r.accepted(w)
}

func (r *Ruler) deleteGroup(w http.ResponseWriter, req *http.Request) {
	id, ns, ok := tenantAndNamespace(w, req)
	if !ok {
		return
	}
	if err := r.deps.Store.DeleteGroup(req.Context(), id, ns, req.PathValue("group")); err != nil {
		r.storeError(w, err)
		return
	}
	r.accepted(w)
}

func (r *Ruler) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrReadOnly):
		httpError(w, http.StatusMethodNotAllowed, "bad_data", err)
	case errors.Is(err, errNotFound):
		httpError(w, http.StatusNotFound, "not_found", errors.New("rule group not found"))
	default:
		httpError(w, http.StatusInternalServerError, "internal", fmt.Errorf("store rule groups: %w", err))
	}
}

// resyncSoon reads the groups again in the background, so that an API
// change runs from the next evaluation on this ruler.
func (r *Ruler) resyncSoon() {
	select {
	case r.syncNow <- struct{}{}:
	default:
	}
}

// The shapes of Prometheus' /api/v1/rules and /api/v1/alerts.
type (
	apiAlert struct {
		Labels          labels.Labels `json:"labels"`
		Annotations     labels.Labels `json:"annotations"`
		State           string        `json:"state"`
		ActiveAt        *time.Time    `json:"activeAt,omitempty"`
		KeepFiringSince *time.Time    `json:"keepFiringSince,omitempty"`
		Value           string        `json:"value"`
	}
	apiRule struct {
		State          string           `json:"state,omitempty"`
		Name           string           `json:"name"`
		Query          string           `json:"query"`
		Duration       float64          `json:"duration,omitempty"`
		KeepFiringFor  float64          `json:"keepFiringFor,omitempty"`
		Labels         labels.Labels    `json:"labels"`
		Annotations    labels.Labels    `json:"annotations,omitempty"`
		Alerts         []*apiAlert      `json:"alerts,omitempty"`
		Health         rules.RuleHealth `json:"health"`
		LastError      string           `json:"lastError,omitempty"`
		EvaluationTime float64          `json:"evaluationTime"`
		LastEvaluation time.Time        `json:"lastEvaluation"`
		Type           string           `json:"type"`
	}
	apiGroup struct {
		Name           string    `json:"name"`
		File           string    `json:"file"`
		Rules          []apiRule `json:"rules"`
		Interval       float64   `json:"interval"`
		Limit          int       `json:"limit"`
		EvaluationTime float64   `json:"evaluationTime"`
		LastEvaluation time.Time `json:"lastEvaluation"`
	}
)

func writeSuccess(w http.ResponseWriter, data any, warnings []string) {
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{"status": "success", "data": data}
	if len(warnings) > 0 {
		body["warnings"] = warnings
	}
	_ = json.NewEncoder(w).Encode(body)
}

func toAPIAlerts(as []*rules.Alert) []*apiAlert {
	out := make([]*apiAlert, 0, len(as))
	for _, a := range as {
		x := &apiAlert{Labels: a.Labels, Annotations: a.Annotations, State: a.State.String(), ActiveAt: &a.ActiveAt,
			Value: strconv.FormatFloat(a.Value, 'e', -1, 64)}
		if !a.KeepFiringSince.IsZero() {
			x.KeepFiringSince = &a.KeepFiringSince
		}
		out = append(out, x)
	}
	return out
}

// localOnly asks a ruler for the groups it evaluates itself: what a ruler
// asks its peers, whose answers it adds to its own.
const localOnly = "local"

// prometheusAlerts answers /api/v1/alerts: the tenant's pending and firing
// alerts, of every ruler.
func (r *Ruler) prometheusAlerts(w http.ResponseWriter, req *http.Request) {
	id, ok := tenantOf(w, req)
	if !ok {
		return
	}
	if err := req.ParseForm(); err != nil {
		httpError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	type answer struct {
		Alerts []*apiAlert `json:"alerts"`
	}
	out := answer{Alerts: []*apiAlert{}}
	if m := r.manager(id); m != nil {
		for _, g := range m.RuleGroups() {
			if !evaluated(g) {
				continue
			}
			for _, rl := range g.Rules() {
				if ar, ok := rl.(*rules.AlertingRule); ok {
					out.Alerts = append(out.Alerts, toAPIAlerts(ar.ActiveAlerts())...)
				}
			}
		}
	}
	var warnings []string
	if req.Form.Get(localOnly) != "true" {
		warnings = askPeers(r, req.Context(), id, "/api/v1/alerts", url.Values{}, func(a answer) {
			out.Alerts = append(out.Alerts, a.Alerts...)
		})
	}
	writeSuccess(w, out, warnings)
}

// prometheusRules answers /api/v1/rules with Prometheus' filters (type,
// rule_name[], rule_group[], file[], exclude_alerts) and pagination
// (group_limit, group_next_token), over the groups of every ruler. A
// group's file is its namespace.
func (r *Ruler) prometheusRules(w http.ResponseWriter, req *http.Request) {
	id, ok := tenantOf(w, req)
	if !ok {
		return
	}
	if err := req.ParseForm(); err != nil {
		httpError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	typ := strings.ToLower(req.Form.Get("type"))
	if typ != "" && typ != "alert" && typ != "record" {
		httpError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("invalid type %q: alert or record", typ))
		return
	}
	limit := 0
	if s := req.Form.Get("group_limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			httpError(w, http.StatusBadRequest, "bad_data", errors.New("group_limit must be a positive number"))
			return
		}
		limit = n
	}
	groups := r.localGroups(id, req.Form, typ)
	var warnings []string
	if req.Form.Get(localOnly) != "true" {
		filters := url.Values{}
		for _, k := range []string{"type", "rule_name[]", "rule_group[]", "file[]", "exclude_alerts"} {
			if v, ok := req.Form[k]; ok {
				filters[k] = v
			}
		}
		type answer struct {
			Groups []apiGroup `json:"groups"`
		}
		warnings = askPeers(r, req.Context(), id, "/api/v1/rules", filters, func(a answer) {
			groups = append(groups, a.Groups...)
		})
	}
	slices.SortFunc(groups, func(a, b apiGroup) int {
		return strings.Compare(a.File+"\x00"+a.Name, b.File+"\x00"+b.Name)
	})
	out := struct {
		Groups    []apiGroup `json:"groups"`
		NextToken string     `json:"groupNextToken,omitempty"`
	}{Groups: []apiGroup{}}
	next := req.Form.Get("group_next_token")
	started := next == ""
	for _, g := range groups {
		token := groupToken(g.File, g.Name)
		if !started {
			if started = token == next; !started {
				continue
			}
		}
		if limit > 0 && len(out.Groups) == limit {
			out.NextToken = token
			break
		}
		out.Groups = append(out.Groups, g)
	}
	if !started {
		httpError(w, http.StatusBadRequest, "bad_data", errors.New("invalid group_next_token"))
		return
	}
	writeSuccess(w, out, warnings)
}

// localGroups are the tenant's groups this ruler evaluates, filtered as
// form asks.
func (r *Ruler) localGroups(id string, form url.Values, typ string) []apiGroup {
	m := r.manager(id)
	if m == nil {
		return nil
	}
	excludeAlerts := form.Get("exclude_alerts") == "true"
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	prefix := id + "/"
	var out []apiGroup
	for _, g := range m.RuleGroups() {
		file := strings.TrimPrefix(g.File(), prefix)
		if !in(form["file[]"], file) || !in(form["rule_group[]"], g.Name()) {
			continue
		}
		ag := apiGroup{Name: g.Name(), File: file, Rules: []apiRule{}, Interval: g.Interval().Seconds(), Limit: g.Limit(),
			EvaluationTime: g.GetEvaluationTime().Seconds(), LastEvaluation: g.GetLastEvaluation()}
		for _, rl := range g.Rules() {
			if !in(form["rule_name[]"], rl.Name()) {
				continue
			}
			lastErr := ""
			if err := rl.LastError(); err != nil {
				lastErr = err.Error()
			}
			switch rl := rl.(type) {
			case *rules.AlertingRule:
				if typ == "record" {
					continue
				}
				state, alerts := rl.State().String(), rl.ActiveAlerts()
				if !evaluated(g) {
					state, alerts = rules.StateInactive.String(), nil
				}
				ar := apiRule{State: state, Name: rl.Name(), Query: rl.Query().String(), Duration: rl.HoldDuration().Seconds(),
					KeepFiringFor: rl.KeepFiringFor().Seconds(), Labels: rl.Labels(), Annotations: rl.Annotations(), Health: rl.Health(),
					LastError: lastErr, EvaluationTime: rl.GetEvaluationDuration().Seconds(), LastEvaluation: rl.GetEvaluationTimestamp(), Type: "alerting"}
				if !excludeAlerts {
					ar.Alerts = toAPIAlerts(alerts)
				}
				ag.Rules = append(ag.Rules, ar)
			case *rules.RecordingRule:
				if typ == "alert" {
					continue
				}
				ag.Rules = append(ag.Rules, apiRule{Name: rl.Name(), Query: rl.Query().String(), Labels: rl.Labels(), Health: rl.Health(),
					LastError: lastErr, EvaluationTime: rl.GetEvaluationDuration().Seconds(), LastEvaluation: rl.GetEvaluationTimestamp(), Type: "recording"})
			}
		}
		if len(ag.Rules) == 0 && (typ != "" || len(form["rule_name[]"]) > 0) {
			continue // filtered out whole
		}
		out = append(out, ag)
	}
	return out
}

// evaluated reports whether g was evaluated on this ruler: before that,
// its alerts are being restored (see restoreAlerts) and not shown.
func evaluated(g *rules.Group) bool { return !g.GetLastEvaluation().IsZero() }

// peerTimeout bounds a ruler's wait for another's groups.
const peerTimeout = 10 * time.Second

// askPeers asks every other ruler for path with params, its own part
// only, and hands each answer's data to use, one at a time. A ruler that
// does not answer leaves its groups out, and a warning says which.
func askPeers[T any](r *Ruler, ctx context.Context, id, path string, params url.Values, use func(T)) []string {
	if r.deps.Peers == nil {
		return nil
	}
	peers, err := r.deps.Peers()
	if err != nil {
		return []string{fmt.Sprintf("the other rulers are unknown, only this ruler's groups are listed: %v", err)}
	}
	params = maps.Clone(params)
	params.Set(localOnly, "true")
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	var (
		mu       sync.Mutex
		warnings []string
		wg       sync.WaitGroup
	)
	for _, base := range peers {
		wg.Go(func() {
			var body struct {
				Status string `json:"status"`
				Data   T      `json:"data"`
			}
			err := getJSON(ctx, r.peerClient, base+path+"?"+params.Encode(), id, &body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("ruler %s did not answer, its groups are missing: %v", base, err))
				return
			}
			use(body.Data)
		})
	}
	wg.Wait()
	slices.Sort(warnings)
	return warnings
}

func getJSON(ctx context.Context, client *http.Client, u, id string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(tenant.HeaderName, id)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// groupToken names a group for pagination.
func groupToken(file, name string) string {
	return strconv.FormatUint(xxhash.Sum64String(file+"\x00"+name), 36)
}
