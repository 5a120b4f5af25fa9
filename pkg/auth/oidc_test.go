package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// fakeIssuer serves an OIDC discovery document and its keys, and signs
// tokens with the key in force. The end-to-end tests use a real provider.
type fakeIssuer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	keys  []jose.JSONWebKey // private; the last signs
	down  atomic.Bool
	jwksN atomic.Int64
}

func newFakeIssuer(t testing.TB) *fakeIssuer {
	f := &fakeIssuer{}
	f.rotate(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			http.Error(w, "down", 502)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/keys",
			"authorization_endpoint": f.srv.URL + "/auth", "token_endpoint": f.srv.URL + "/token", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		f.jwksN.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		var set jose.JSONWebKeySet
		for _, k := range f.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIssuer) rotate(t testing.TB) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, jose.JSONWebKey{Key: k, KeyID: "k" + string(rune('0'+len(f.keys))), Algorithm: "RS256", Use: "sig"})
}

func (f *fakeIssuer) sign(t testing.TB, claims map[string]any) string {
	f.mu.Lock()
	key := f.keys[len(f.keys)-1]
	f.mu.Unlock()
	return signWith(t, key, claims)
}

func signWith(t testing.TB, key jose.JSONWebKey, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(t, err)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	jws, err := signer.Sign(payload)
	require.NoError(t, err)
	s, err := jws.CompactSerialize()
	require.NoError(t, err)
	return s
}

func (f *fakeIssuer) claims(scopes ...string) map[string]any {
	return map[string]any{"iss": f.srv.URL, "aud": []string{"isobar"}, "sub": "client-1", "client_id": "client-1",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "scp": scopes}
}

func newOIDCGate(t testing.TB, f *fakeIssuer) *Gate {
	cfg := testConfig()
	cfg.Type = TypeOIDC
	cfg.OIDC.IssuerURL = f.srv.URL
	cfg.OIDC.Audience = "isobar"
	cfg.OIDC.TenantClaim, cfg.OIDC.TenantPrefix, cfg.OIDC.RightsClaim = "scp", "tenant:", "scp"
	require.NoError(t, cfg.Validate())
	g, err := NewGate(cfg, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	g.limiter = newFailureLimiter(1000, 1000)
	return g
}

func TestOIDC(t *testing.T) {
	f := newFakeIssuer(t)
	g := newOIDCGate(t, f)
	writes := g.Tenant(func(*http.Request) Rights { return Write }, echoTenant)
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)

	good := f.sign(t, f.claims("tenant:team-a", "isobar:write"))
	code, body := serve(writes, http.MethodPost, bearer(good))
	require.Equal(t, 200, code, body)
	require.Equal(t, "team-a", body)
	code, body = serve(reads, http.MethodGet, bearer(good))
	require.Equal(t, 403, code, "a token with only write cannot read: %s", body)

	expired := f.claims("tenant:team-a", "isobar:read")
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	wrongAud := f.claims("tenant:team-a", "isobar:read")
	wrongAud["aud"] = []string{"grafana"}
	wrongIss := f.claims("tenant:team-a", "isobar:read")
	wrongIss["iss"] = "http://127.0.0.1:1/other"
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	forged := signWith(t, jose.JSONWebKey{Key: otherKey, KeyID: "k0", Algorithm: "RS256"}, f.claims("tenant:team-a", "isobar:read"))
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(f.claims("tenant:team-a", "isobar:read"))
	algNone := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + enc(payload) + "." + parts[2]
	for _, tc := range []struct {
		name, token string
		code        int
		contain     string
	}{
		{"expired", f.sign(t, expired), 401, "expired"},
		{"another audience", f.sign(t, wrongAud), 401, "not for this audience"},
		{"another issuer", f.sign(t, wrongIss), 401, "another issuer"},
		{"signed by another key", forged, 401, "signature does not verify"},
		{"alg none", algNone, 401, "not valid"},
		{"payload swapped", tampered, 401, "not valid"},
		{"not a JWT", "hello", 401, "not a signed JWT"},
		{"no tenant", f.sign(t, f.claims("isobar:read")), 403, "names no tenant"},
		{"bad tenant", f.sign(t, f.claims("tenant:a/b", "isobar:read")), 403, "not a valid tenant ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := serve(reads, http.MethodGet, bearer(tc.token))
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.contain)
		})
	}

	// A key made after the first token: its tokens are checked after the
	// keys are fetched again.
	before := f.jwksN.Load()
	f.rotate(t)
	rotated := f.sign(t, f.claims("tenant:team-b", "isobar:read"))
	code, body = serve(reads, http.MethodGet, bearer(rotated))
	require.Equal(t, 200, code, body)
	require.Equal(t, "team-b", body)
	require.Greater(t, f.jwksN.Load(), before)

	// A key the issuer no longer publishes: its tokens not yet checked are
	// refused once the keys are past their max age.
	retiredKey := f.keys[0]
	f.mu.Lock()
	f.keys = f.keys[1:]
	f.mu.Unlock()
	retired := signWith(t, retiredKey, f.claims("tenant:team-a", "isobar:read"))
	code, _ = serve(reads, http.MethodGet, bearer(retired))
	require.Equal(t, 200, code, "within the keys' max age")
	retired = signWith(t, retiredKey, f.claims("tenant:team-a", "isobar:read", "isobar:write"))
	o := g.authn.(*openIDConnect)
	o.now = func() time.Time { return time.Now().Add(o.cfg.KeysMaxAge) }
	code, body = serve(reads, http.MethodGet, bearer(retired))
	require.Equal(t, 401, code, body)
	require.Contains(t, body, "not valid")

	// A checked token is cached: the issuer going away does not matter.
	f.srv.Close()
	code, _ = serve(reads, http.MethodGet, bearer(rotated))
	require.Equal(t, 200, code)
}

func TestOIDCIssuerDownAtFirst(t *testing.T) {
	f := newFakeIssuer(t)
	f.down.Store(true)
	g := newOIDCGate(t, f)
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	tok := f.sign(t, f.claims("tenant:team-a", "isobar:read"))
	code, body := serve(reads, http.MethodGet, bearer(tok))
	require.Equal(t, 503, code, body)
	require.Contains(t, body, "issuer did not answer")
	f.down.Store(false)
	require.Eventually(t, func() bool {
		code, _ := serve(reads, http.MethodGet, bearer(tok))
		return code == 200
	}, 5*time.Second, 50*time.Millisecond, "discovery is tried again")
}

func TestClaimValues(t *testing.T) {
	claims := map[string]any{"scope": "a b  c", "groups": []any{"x", 3, "y"}, "ext": map[string]any{"tenant": "t1"}}
	require.Equal(t, []string{"a", "b", "c"}, claimValues(claims, "scope"))
	require.Equal(t, []string{"x", "y"}, claimValues(claims, "groups"))
	require.Equal(t, []string{"t1"}, claimValues(claims, "ext.tenant"))
	require.Nil(t, claimValues(claims, "ext.none"))
	require.Nil(t, claimValues(claims, "scope.deeper"))
}
