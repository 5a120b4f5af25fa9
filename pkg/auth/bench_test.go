package auth

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// benchmarkGate measures one admitted request through the gate, credential
// reading and tenant choice included, with a warm cache.
func benchmarkGate(b *testing.B, g *Gate, need Rights, header http.Header) {
	h := g.Tenant(func(*http.Request) Rights { return need }, okHandler)
	r := httptest.NewRequest(http.MethodPost, "/api/v1/push", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("warm-up: %d %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/request")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
	if w.Code != http.StatusOK {
		b.Fatalf("%d %s", w.Code, w.Body)
	}
}

func BenchmarkGate(b *testing.B) {
	b.Run("type=tokens/bearer", func(b *testing.B) {
		g, _ := newTokensGate(b, prometheus.NewRegistry())
		benchmarkGate(b, g, Write, bearer("tok-prom-a"))
	})
	b.Run("type=tokens/basic-bcrypt", func(b *testing.B) {
		g, _ := newTokensGate(b, prometheus.NewRegistry())
		benchmarkGate(b, g, ManageRules, with(basic("rules-b", "pw-rules-b"), "X-Scope-OrgID", "team-b"))
	})
	b.Run("type=keystone/cached", func(b *testing.B) {
		ks := &fakeKeystone{tokens: map[string]fakeToken{}}
		// A Fernet token is about 180 bytes.
		tok := "gAAAAAB" + strings.Repeat("q", 176)
		ks.set(tok, fakeToken{project: "0a1b2c3d4e5f60718293a4b5c6d7e8f9", roles: []string{"member"}, expires: time.Now().Add(time.Hour)})
		srv := httptest.NewServer(ks)
		defer srv.Close()
		cfg := testConfig()
		cfg.Type, cfg.Keystone.URL = TypeKeystone, srv.URL
		g, err := NewGate(cfg, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		benchmarkGate(b, g, Write, xauth(tok))
	})
	b.Run("type=oidc/cached", func(b *testing.B) {
		f := newFakeIssuer(b)
		g := newOIDCGate(b, f)
		benchmarkGate(b, g, Write, bearer(f.sign(b, f.claims("tenant:team-a", "isobar:write"))))
	})
}
