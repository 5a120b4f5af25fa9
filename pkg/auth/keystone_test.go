package auth

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// fakeKeystone answers token validation and application credentials the
// way Keystone's v3 API does, for tokens the test makes.
type fakeKeystone struct {
	mu     sync.Mutex
	tokens map[string]fakeToken
	asked  atomic.Int64
	down   atomic.Bool
}

type fakeToken struct {
	project, projectName string // empty: unscoped
	roles                []string
	expires              time.Time
}

func (k *fakeKeystone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.asked.Add(1)
	if k.down.Load() {
		http.Error(w, "maintenance", http.StatusBadGateway)
		return
	}
	if r.URL.Path != "/v3/auth/tokens" {
		http.NotFound(w, r)
		return
	}
	var tok string
	status := http.StatusOK
	switch r.Method {
	case http.MethodGet:
		if r.Header.Get("X-Auth-Token") != r.Header.Get("X-Subject-Token") {
			http.Error(w, "only self-validation here", 403)
			return
		}
		tok = r.Header.Get("X-Subject-Token")
	case http.MethodPost:
		var body struct {
			Auth struct {
				Identity struct {
					AppCred struct{ ID, Secret string } `json:"application_credential"`
				} `json:"identity"`
			} `json:"auth"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		tok = "appcred:" + body.Auth.Identity.AppCred.ID + ":" + body.Auth.Identity.AppCred.Secret
		status = http.StatusCreated
		w.Header().Set("X-Subject-Token", "issued")
	}
	k.mu.Lock()
	t, ok := k.tokens[tok]
	k.mu.Unlock()
	if !ok {
		if r.Method == http.MethodGet {
			http.Error(w, `{"error":{"code":404}}`, http.StatusNotFound)
		} else {
			http.Error(w, `{"error":{"code":401}}`, http.StatusUnauthorized)
		}
		return
	}
	out := map[string]any{"expires_at": t.expires.UTC().Format("2006-01-02T15:04:05.000000Z"), "user": map[string]string{"id": "u1", "name": "alice"}}
	if t.project != "" {
		out["project"] = map[string]string{"id": t.project, "name": t.projectName}
	}
	var roles []map[string]string
	for _, r := range t.roles {
		roles = append(roles, map[string]string{"id": r + "-id", "name": r})
	}
	out["roles"] = roles
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": out})
}

func (k *fakeKeystone) set(tok string, t fakeToken) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.tokens[tok] = t
}

func (k *fakeKeystone) revoke(tok string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.tokens, tok)
}

func newKeystoneGate(t *testing.T) (*Gate, *fakeKeystone, *time.Time) {
	ks := &fakeKeystone{tokens: map[string]fakeToken{}}
	srv := httptest.NewServer(ks)
	t.Cleanup(srv.Close)
	cfg := testConfig()
	cfg.Type = TypeKeystone
	cfg.Keystone.URL = srv.URL + "/v3/"
	require.NoError(t, cfg.Validate())
	g, err := NewGate(cfg, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	g.limiter = newFailureLimiter(1000, 1000)
	now := time.Now()
	g.authn.(*keystone).now = func() time.Time { return now }
	return g, ks, &now
}

func xauth(tok string) http.Header { return http.Header{KeystoneTokenHeader: {tok}} }

func TestKeystone(t *testing.T) {
	g, ks, now := newKeystoneGate(t)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	ks.set("t-member", fakeToken{project: "0a1b2c", projectName: "team a", roles: []string{"member", "reader"}, expires: in(time.Hour)})
	ks.set("t-reader", fakeToken{project: "0a1b2c", roles: []string{"reader"}, expires: in(time.Hour)})
	ks.set("t-unscoped", fakeToken{roles: []string{"admin"}, expires: in(time.Hour)})
	ks.set("t-short", fakeToken{project: "0a1b2c", roles: []string{"member"}, expires: in(30 * time.Second)})
	ks.set("appcred:ac1:s3cret", fakeToken{project: "9f9f", roles: []string{"member"}, expires: in(time.Hour)})
	writes := g.Tenant(func(*http.Request) Rights { return Write }, echoTenant)
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)

	code, body := serve(writes, http.MethodPost, xauth("t-member"))
	require.Equal(t, 200, code, body)
	require.Equal(t, "0a1b2c", body, "the project's ID is the tenant")
	code, body = serve(writes, http.MethodPost, bearer("t-member"))
	require.Equal(t, 200, code, "a token may come as a bearer token too: %s", body)
	asked := ks.asked.Load()
	for range 10 {
		code, _ = serve(reads, http.MethodGet, xauth("t-member"))
		require.Equal(t, 200, code)
	}
	require.Equal(t, asked, ks.asked.Load(), "a validated token is cached")

	code, body = serve(writes, http.MethodPost, xauth("t-reader"))
	require.Equal(t, 403, code)
	require.Contains(t, body, "no write right")
	code, body = serve(reads, http.MethodGet, with(xauth("t-member"), "X-Scope-OrgID", "ffff"))
	require.Equal(t, 403, code, "a project's token cannot reach another project: %s", body)
	code, body = serve(reads, http.MethodGet, xauth("t-unscoped"))
	require.Equal(t, 401, code)
	require.Contains(t, body, "not scoped to a project")
	code, body = serve(reads, http.MethodGet, xauth("t-unknown"))
	require.Equal(t, 401, code)
	require.Contains(t, body, "does not accept the token")

	// Application credentials as basic auth.
	code, body = serve(writes, http.MethodPost, basic("ac1", "s3cret"))
	require.Equal(t, 200, code, body)
	require.Equal(t, "9f9f", body)
	code, _ = serve(writes, http.MethodPost, basic("ac1", "wrong"))
	require.Equal(t, 401, code)

	// A revoked token works until the recheck period, then stops.
	ks.revoke("t-member")
	code, _ = serve(reads, http.MethodGet, xauth("t-member"))
	require.Equal(t, 200, code, "still within the recheck period")
	*now = now.Add(time.Minute)
	code, body = serve(reads, http.MethodGet, xauth("t-member"))
	require.Equal(t, 401, code, "revoked, and a minute has passed: %s", body)

	// An expired token is refused.
	asked = ks.asked.Load()
	*now = now.Add(-time.Minute + 31*time.Second)
	code, body = serve(reads, http.MethodGet, xauth("t-short"))
	require.Equal(t, 401, code, body)
	require.Contains(t, body, "expired")

	// Keystone down: a 503, never an open door; cached tokens still
	// within their recheck period keep working.
	ks.set("t-fresh", fakeToken{project: "0a1b2c", roles: []string{"reader"}, expires: in(2 * time.Hour)})
	code, _ = serve(reads, http.MethodGet, xauth("t-fresh"))
	require.Equal(t, 200, code)
	ks.down.Store(true)
	code, _ = serve(reads, http.MethodGet, xauth("t-fresh"))
	require.Equal(t, 200, code)
	code, body = serve(reads, http.MethodGet, xauth("t-other"))
	require.Equal(t, 503, code)
	require.Contains(t, body, "Keystone")
	*now = now.Add(2 * time.Minute)
	code, _ = serve(reads, http.MethodGet, xauth("t-fresh"))
	require.Equal(t, 503, code, "past its recheck period a token needs Keystone")
	require.Greater(t, ks.asked.Load(), asked)
}

func TestKeystoneAsksOnceForConcurrentRequests(t *testing.T) {
	g, ks, now := newKeystoneGate(t)
	ks.set("t", fakeToken{project: "p1", roles: []string{"reader"}, expires: now.Add(time.Hour)})
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			code, _ := serve(reads, http.MethodGet, xauth("t"))
			require.Equal(t, 200, code)
		})
	}
	wg.Wait()
	require.Less(t, ks.asked.Load(), int64(50))
}

func TestKeystoneTenantByName(t *testing.T) {
	ks := &fakeKeystone{tokens: map[string]fakeToken{}}
	srv := httptest.NewServer(ks)
	t.Cleanup(srv.Close)
	ks.set("named", fakeToken{project: "p1", projectName: "team-a", roles: []string{"reader"}, expires: time.Now().Add(time.Hour)})
	ks.set("spaced", fakeToken{project: "p2", projectName: "team a", roles: []string{"reader"}, expires: time.Now().Add(time.Hour)})
	cfg := testConfig()
	cfg.Type, cfg.Keystone.URL, cfg.Keystone.Tenant = TypeKeystone, srv.URL, "name"
	g, err := NewGate(cfg, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	code, body := serve(reads, http.MethodGet, xauth("named"))
	require.Equal(t, 200, code)
	require.Equal(t, "team-a", body)
	code, body = serve(reads, http.MethodGet, xauth("spaced"))
	require.Equal(t, 403, code)
	require.Contains(t, body, `project "team a" cannot be a tenant`)
}

func TestKeystoneUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	cfg := testConfig()
	cfg.Type, cfg.Keystone.URL = TypeKeystone, url
	g, err := NewGate(cfg, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	code, body := serve(g.Tenant(func(*http.Request) Rights { return Read }, echoTenant), http.MethodGet, xauth("t"))
	require.Equal(t, 503, code)
	require.Contains(t, body, "did not answer")
}
