//go:build e2e

package e2e

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestTenantIsolation runs isobar with multitenancy and requires every read
// endpoint to answer a tenant with exactly its own data.
func TestTenantIsolation(t *testing.T) {
	iso := startIsobar(t, t.TempDir(), "-auth.multitenancy-enabled=true")
	now := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	const step = 15_000
	times := []int64{now - 3*step, now - 2*step, now - step, now}

	// Pushes without a valid tenant are refused before anything is read.
	probe := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "e2e_no_tenant"}, sample(now, 1))}}
	for _, c := range []struct {
		tenant string
		status int
		msg    string
	}{
		{"", http.StatusUnauthorized, "no tenant ID: set the X-Scope-OrgID header"},
		{"../x", http.StatusBadRequest, `invalid X-Scope-OrgID header: tenant ID contains unsupported character '/'`},
		{"..", http.StatusBadRequest, `tenant ID must not be "." or ".."`},
		{"team-a|team-b", http.StatusBadRequest, "several tenants (team-a|team-b) can only be read, not written to"},
		{".tmp-x", http.StatusBadRequest, `tenant ID must not start with "."`},
	} {
		code, body, err := push(iso.URL, c.tenant, probe)
		require.NoError(t, err)
		require.Equal(t, c.status, code, "push as %q: %s", c.tenant, body)
		require.Contains(t, body, c.msg, "push as %q", c.tenant)
	}

	// Each tenant's series: one metric name both use, with different label
	// values, values and metadata, and names of its own.
	type tenantData struct {
		id       string
		series   map[string][]string // metric id -> labels (name/value pairs, sorted)
		value    func(id string, round int) float64
		metadata []prompb.MetricMetadata
	}
	tenants := []tenantData{
		{
			id: "team-a",
			series: map[string][]string{
				"shared":   {"__name__", "e2e_shared", "instance", "host-1", "team", "a"},
				"only":     {"__name__", "e2e_only_a", "a_label", "x", "team", "a"},
				"requests": {"__name__", "e2e_requests_total", "code", "200", "team", "a"},
			},
			value: func(id string, round int) float64 { return 100 + float64(len(id)) + float64(round)*0.5 },
			metadata: []prompb.MetricMetadata{
				{MetricFamilyName: "e2e_shared", Type: prompb.MetricMetadata_COUNTER, Help: "Shared metric, as team a describes it."},
				{MetricFamilyName: "e2e_only_a", Type: prompb.MetricMetadata_GAUGE, Help: "Only team a has this.", Unit: "bytes"},
			},
		},
		{
			id: "team-b",
			series: map[string][]string{
				"shared":   {"__name__", "e2e_shared", "instance", "host-1", "team", "b"},
				"shared2":  {"__name__", "e2e_shared", "instance", "host-2", "team", "b"},
				"only":     {"__name__", "e2e_only_b", "b_label", "y", "team", "b"},
				"requests": {"__name__", "e2e_requests_total", "code", "500", "team", "b"},
			},
			value: func(id string, round int) float64 { return 200 + float64(len(id))*10 + float64(round)*0.25 },
			metadata: []prompb.MetricMetadata{
				{MetricFamilyName: "e2e_shared", Type: prompb.MetricMetadata_GAUGE, Help: "Shared metric, as team b describes it.", Unit: "seconds"},
				{MetricFamilyName: "e2e_only_b", Type: prompb.MetricMetadata_COUNTER, Help: "Only team b has this."},
			},
		},
	}

	// Push as a Prometheus would: samples every round, interleaved between
	// the tenants, and the metadata (again) after every second round, in
	// requests of its own.
	lastPush := map[string]*prompb.WriteRequest{}
	for round, ts := range times {
		for _, td := range tenants {
			req := &prompb.WriteRequest{}
			lastPush[td.id] = req
			for _, id := range sortedKeys(td.series) {
				s := series(td.series[id], sample(ts, td.value(id, round)))
				if id == "requests" && round == len(times)-1 {
					s.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: td.id + "-trace"}}, Value: 0.125, Timestamp: ts}}
				}
				req.Timeseries = append(req.Timeseries, s)
			}
			mustPush(t, iso.URL, td.id, req)
			if round%2 == 1 {
				mustPush(t, iso.URL, td.id, &prompb.WriteRequest{Metadata: td.metadata})
			}
		}
	}
	// A sender retries a batch it got no answer for; the retries of samples
	// already stored are accepted and change nothing. (These small requests
	// come after the metadata on purpose: they reuse the server's pooled
	// request buffers, which stored metadata must not point into.)
	for range 10 {
		for _, td := range tenants {
			mustPush(t, iso.URL, td.id, &prompb.WriteRequest{Timeseries: lastPush[td.id].Timeseries[:1]})
		}
	}

	for _, td := range tenants {
		t.Run(td.id, func(t *testing.T) {
			ac := apiClient{base: iso.URL, tenant: td.id}
			// What the tenant pushed, as the API should answer it.
			var wantInstant, wantRange, wantShared result
			wantInstant.Type, wantRange.Type, wantShared.Type = "vector", "matrix", "vector"
			var wantSeries []string
			names, labelNames, teams := map[string]bool{}, map[string]bool{}, map[string]bool{}
			for _, id := range sortedKeys(td.series) {
				m := map[string]string{}
				lbls := td.series[id]
				for i := 0; i < len(lbls); i += 2 {
					m[lbls[i]] = lbls[i+1]
					labelNames[lbls[i]] = true
				}
				names[m["__name__"]], teams[m["team"]] = true, true
				wantSeries = append(wantSeries, labelString(m))
				last := point{T: now, F: td.value(id, len(times)-1)}
				wantInstant.Series = append(wantInstant.Series, resultSeries{Metric: m, Points: []point{last}})
				if m["__name__"] == "e2e_shared" {
					wantShared.Series = append(wantShared.Series, resultSeries{Metric: m, Points: []point{last}})
					rs := resultSeries{Metric: m}
					for round, ts := range times {
						rs.Points = append(rs.Points, point{T: ts, F: td.value(id, round)})
					}
					wantRange.Series = append(wantRange.Series, rs)
				}
			}
			sort.Strings(wantSeries)

			got := ac.query(t, `{__name__=~".+"}`, now)
			require.Empty(t, diffResults(wantInstant, got, 0), "instant query of every series")
			got = ac.query(t, `e2e_shared`, now)
			require.Empty(t, diffResults(wantShared, got, 0), "instant query e2e_shared")
			got = ac.query(t, `count(e2e_shared)`, now)
			require.Equal(t, float64(len(wantShared.Series)), got.Series[0].Points[0].F, "count(e2e_shared)")
			got = ac.queryRange(t, `e2e_shared`, times[0], now, step*time.Millisecond)
			require.Empty(t, diffResults(wantRange, got, 0), "range query e2e_shared")
			// The same through the /prometheus prefix Grafana uses.
			pc := apiClient{base: iso.URL + "/prometheus", tenant: td.id}
			got = pc.queryRange(t, `e2e_shared`, times[0], now, step*time.Millisecond)
			require.Empty(t, diffResults(wantRange, got, 0), "range query e2e_shared under /prometheus")

			require.Equal(t, wantSeries, ac.seriesSet(t, `{__name__=~".+"}`), "series")
			require.Equal(t, sortedKeys(labelNames), ac.labelNames(t), "label names")
			require.Equal(t, sortedKeys(names), ac.labelValues(t, "__name__"), "metric names")
			require.Equal(t, sortedKeys(teams), ac.labelValues(t, "team"), "values of label team")

			// Grafana POSTs its queries as a form.
			form := url.Values{"query": {`{__name__=~".+"}`}, "time": {fmtTime(now)}}
			req, err := http.NewRequest(http.MethodPost, iso.URL+"/api/v1/query", strings.NewReader(form.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Scope-OrgID", td.id)
			resp, err := httpClient.Do(req)
			require.NoError(t, err)
			var env apiEnvelope
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "POST query: %s", env.Error)
			got, err = parseResult(env.Data)
			require.NoError(t, err)
			require.Empty(t, diffResults(wantInstant, got, 0), "POST instant query of every series")

			// Exemplars: only the tenant's own.
			var ex []struct {
				SeriesLabels map[string]string `json:"seriesLabels"`
				Exemplars    []struct {
					Labels    map[string]string `json:"labels"`
					Value     string            `json:"value"`
					Timestamp float64           `json:"timestamp"`
				} `json:"exemplars"`
			}
			ac.mustGet(t, "/api/v1/query_exemplars", url.Values{"query": {`{__name__=~"e2e_.+"}`}, "start": {fmtTime(times[0])}, "end": {fmtTime(now + 1000)}}, &ex)
			require.Len(t, ex, 1, "exemplars: %+v", ex)
			require.Equal(t, "e2e_requests_total", ex[0].SeriesLabels["__name__"])
			require.Equal(t, teams, map[string]bool{ex[0].SeriesLabels["team"]: true})
			require.Len(t, ex[0].Exemplars, 1)
			require.Equal(t, map[string]string{"trace_id": td.id + "-trace"}, ex[0].Exemplars[0].Labels)
			require.Equal(t, "0.125", ex[0].Exemplars[0].Value)
			require.Equal(t, now, int64(math.Round(ex[0].Exemplars[0].Timestamp*1000)))

			wantMeta := map[string][]metadataEntry{}
			for _, m := range td.metadata {
				wantMeta[m.MetricFamilyName] = []metadataEntry{{Type: strings.ToLower(m.Type.String()), Help: m.Help, Unit: m.Unit}}
			}
			require.Equal(t, wantMeta, ac.metadata(t, ""), "metadata")
			require.Equal(t, map[string][]metadataEntry{"e2e_shared": wantMeta["e2e_shared"]}, ac.metadata(t, "e2e_shared"), "metadata of e2e_shared")
		})
	}

	t.Run("tenant that never wrote", func(t *testing.T) {
		ac := apiClient{base: iso.URL, tenant: "team-c"}
		require.Empty(t, ac.query(t, `{__name__=~".+"}`, now).Series)
		require.Empty(t, ac.queryRange(t, `e2e_shared`, times[0], now, step*time.Millisecond).Series)
		require.Empty(t, ac.seriesSet(t, `{__name__=~".+"}`))
		require.Empty(t, ac.labelNames(t))
		require.Empty(t, ac.labelValues(t, "__name__"))
		require.Empty(t, ac.metadata(t, ""))
	})

	t.Run("requests without a valid tenant", func(t *testing.T) {
		params := map[string]url.Values{
			"/api/v1/query":                 {"query": {"e2e_shared"}, "time": {fmtTime(now)}},
			"/api/v1/query_range":           {"query": {"e2e_shared"}, "start": {fmtTime(times[0])}, "end": {fmtTime(now)}, "step": {"15"}},
			"/api/v1/series":                {"match[]": {`{__name__=~".+"}`}},
			"/api/v1/labels":                nil,
			"/api/v1/label/team/values":     nil,
			"/api/v1/label/__name__/values": nil,
			"/api/v1/metadata":              nil,
			"/api/v1/query_exemplars":       {"query": {"e2e_shared"}},
			"/prometheus/api/v1/query":      {"query": {"e2e_shared"}, "time": {fmtTime(now)}},
		}
		for _, path := range sortedKeys(params) {
			for _, c := range []struct {
				tenant string
				status int
			}{{"", http.StatusUnauthorized}, {"../x", http.StatusBadRequest}, {"team-a|team-b", http.StatusBadRequest}} {
				code, body, err := apiClient{base: iso.URL, tenant: c.tenant}.getRaw(path, params[path])
				require.NoError(t, err)
				require.Equal(t, c.status, code, "GET %s as %q: %s", path, c.tenant, body)
				require.NotContains(t, body, "e2e_", "GET %s as %q leaks data", path, c.tenant)
			}
		}
		// Build info is the one API path Grafana asks without a tenant.
		code, body, err := apiClient{base: iso.URL}.getRaw("/api/v1/status/buildinfo", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, `"version":"0.1.0-dev"`)
	})

	// Nothing of the refused pushes was stored anywhere.
	for _, id := range []string{"team-a", "team-b", "team-c", "anonymous"} {
		r := apiClient{base: iso.URL, tenant: id}.query(t, `e2e_no_tenant`, now)
		require.Empty(t, r.Series, "tenant %s has the sample of a refused push", id)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
