// Package promapi is what the querier and the query-frontend share of the
// Prometheus HTTP API: its endpoints and the methods each takes.
package promapi

import "net/http"

// Endpoint is one path of the API, relative to its prefix (/api/v1).
type Endpoint struct {
	Path    string
	Methods []string
}

var getPost = []string{http.MethodGet, http.MethodPost}

// Endpoints of the API, served by the querier and, in front of it, by the
// query-frontend.
var (
	Query          = Endpoint{"/query", getPost}
	QueryRange     = Endpoint{"/query_range", getPost}
	QueryExemplars = Endpoint{"/query_exemplars", getPost}
	FormatQuery    = Endpoint{"/format_query", getPost}
	Labels         = Endpoint{"/labels", getPost}
	LabelValues    = Endpoint{"/label/{name}/values", []string{http.MethodGet}}
	Series         = Endpoint{"/series", getPost}
	Metadata       = Endpoint{"/metadata", []string{http.MethodGet}}
	BuildInfo      = Endpoint{"/status/buildinfo", []string{http.MethodGet}}
	StatusTSDB     = Endpoint{"/status/tsdb", []string{http.MethodGet}}
	// Mimir's cardinality endpoints.
	CardinalityLabelNames   = Endpoint{"/cardinality/label_names", getPost}
	CardinalityLabelValues  = Endpoint{"/cardinality/label_values", getPost}
	CardinalityActiveSeries = Endpoint{"/cardinality/active_series", getPost}
)

// Endpoints lists every endpoint.
func Endpoints() []Endpoint {
	return []Endpoint{Query, QueryRange, QueryExemplars, FormatQuery, Labels, LabelValues, Series, Metadata, BuildInfo,
		StatusTSDB, CardinalityLabelNames, CardinalityLabelValues, CardinalityActiveSeries}
}

// Register mounts h on mux for every method of e under prefix.
func (e Endpoint) Register(mux *http.ServeMux, prefix string, h http.Handler) {
	for _, m := range e.Methods {
		mux.Handle(m+" "+prefix+e.Path, h)
	}
}
