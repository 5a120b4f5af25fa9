// Package api serves the Prometheus HTTP query API (/api/v1/query,
// /api/v1/query_range, /api/v1/series, /api/v1/labels,
// /api/v1/label/{name}/values, /api/v1/metadata, /api/v1/query_exemplars,
// /api/v1/status/buildinfo and /api/v1/format_query) on top of a
// promql.QueryEngine and storage.Queryable.
//
// Parameters, defaults, error messages, HTTP status codes and the JSON
// encoding of responses follow Prometheus 3.x (web/api/v1) so that clients
// such as Grafana cannot tell the difference. The tenant is never read from
// request headers: every call passes the request context, into which
// middleware outside this package has put the tenant.
package api
