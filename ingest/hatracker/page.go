package hatracker

import (
	"cmp"
	"html/template"
	"net/http"
	"slices"
	"time"
)

var pageTemplate = template.Must(template.New("ha").Parse(`<!DOCTYPE html>
<html><head><title>HA tracker</title></head><body>
<h1>HA tracker</h1>
<p>The elected replica of each HA cluster, as this distributor knows it. Another replica is elected once the elected one has sent nothing for {{.Failover}}.</p>
<table border="1" cellpadding="4">
<tr><th>Tenant</th><th>Cluster</th><th>Elected replica</th><th>Elected at</th><th>Last sent (recorded)</th><th>Ago</th></tr>
{{range .Rows}}<tr><td>{{.Tenant}}</td><td>{{.Cluster}}</td><td>{{.Replica}}</td><td>{{.ElectedAt}}</td><td>{{.ReceivedAt}}</td><td>{{.Ago}}</td></tr>
{{end}}</table>
</body></html>
`))

// ServeHTTP lists the elections, by tenant and cluster.
func (t *Tracker) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	type row struct {
		Tenant, Cluster, Replica, ElectedAt, ReceivedAt string
		Ago                                             time.Duration
	}
	elections := t.Elections()
	slices.SortFunc(elections, func(a, b Status) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Cluster, b.Cluster))
	})
	now := t.now()
	data := struct {
		Failover time.Duration
		Rows     []row
	}{Failover: t.cfg.FailoverTimeout}
	for _, e := range elections {
		received := time.UnixMilli(e.ReceivedAt)
		data.Rows = append(data.Rows, row{
			Tenant: e.Tenant, Cluster: e.Cluster, Replica: e.Replica,
			ElectedAt:  time.UnixMilli(e.ElectedAt).UTC().Format(time.RFC3339),
			ReceivedAt: received.UTC().Format(time.RFC3339),
			Ago:        now.Sub(received).Truncate(time.Second),
		})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplate.Execute(w, data)
}
