package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// FuzzGate sends whatever headers a hostile client might to a gate of
// tokens: every answer is a decision (200, 400, 401, 403 or 429), an
// admitted request has a tenant its caller holds the right on, and no
// answer repeats the credential.
func FuzzGate(f *testing.F) {
	f.Add("Bearer tok-prom-a", "", "")
	f.Add("Bearer tok-analyst", "", "team-a|team-b")
	f.Add("Basic cnVsZXMtYjpwdy1ydWxlcy1i", "", "team-b")
	f.Add("Basic %%%", "", "")
	f.Add("", "gAAAAAB-token", "x")
	f.Add("Isobar-Internal 0123456789abcdef0123", "", "team-z")
	f.Add("bearer\x00\xff", "", "..")
	g, _ := newTokensGate(f, prometheus.NewRegistry())
	g.limiter = newFailureLimiter(1e9, 1e9)
	var admitted string
	h := g.Tenant(func(r *http.Request) Rights { return Read | Write }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admitted, _ = tenant.From(r.Context())
	}))
	f.Fuzz(func(t *testing.T, authz, xauth, orgID string) {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/push", nil)
		if authz != "" {
			r.Header["Authorization"] = []string{authz}
		}
		if xauth != "" {
			r.Header[KeystoneTokenHeader] = []string{xauth}
		}
		if orgID != "" {
			r.Header[tenant.HeaderName] = []string{orgID}
		}
		admitted = ""
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if err := tenant.Validate(admitted); err != nil {
				t.Fatalf("admitted with tenant %q: %v", admitted, err)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
			if admitted != "" {
				t.Fatalf("refused with %d but the handler ran", w.Code)
			}
		default:
			t.Fatalf("answer %d: %s", w.Code, w.Body)
		}
		_, secret, _ := strings.Cut(authz, " ")
		if len(secret) >= 12 && strings.Contains(w.Body.String(), secret) {
			t.Fatalf("the answer repeats the credential: %s", w.Body)
		}
	})
}
