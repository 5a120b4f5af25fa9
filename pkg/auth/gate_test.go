package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

func sha(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(s[:])
}

func bcryptOf(t testing.TB, secret string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	require.NoError(t, err)
	return "bcrypt:" + string(h)
}

// tokensFixture is a tokens file of callers of two tenants.
func tokensFixture(t testing.TB) string {
	return fmt.Sprintf(`callers:
  - name: prometheus-a
    token: %s
    tenants: [team-a]
    rights: [write]
  - name: grafana-a
    token: %s
    tenants: [team-a]
    rights: [read]
  - name: analyst
    token: %s
    tenants: [team-a, team-b]
    rights: [read]
  - name: rules-b
    username: rules-b
    password: %s
    tenants: [team-b]
    rights: [read, rules]
  - name: sha-user
    username: sha-user
    password: %s
    tenants: [team-b]
    rights: [write]
  - name: operator
    token: %s
    rights: [admin]
`, sha("tok-prom-a"), sha("tok-graf-a"), sha("tok-analyst"), bcryptOf(t, "pw-rules-b"), sha("pw-sha"), sha("tok-operator"))
}

func writeFile(t testing.TB, dir, name, content string) string {
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, p))
	return p
}

func testConfig() Config {
	var c Config
	fs := newFlagSet()
	c.RegisterFlags(fs)
	return c
}

func newTokensGate(t testing.TB, reg prometheus.Registerer) (*Gate, string) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Type = TypeTokens
	cfg.Tokens.File = writeFile(t, dir, "tokens.yaml", tokensFixture(t))
	cfg.InternalSecretFile = writeFile(t, dir, "secret", "0123456789abcdef0123")
	require.NoError(t, cfg.Validate())
	g, err := NewGate(cfg, false, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	return g, cfg.Tokens.File
}

// echoTenant answers the tenant the gate chose.
var echoTenant = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, err := tenant.From(r.Context())
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	_, _ = io.WriteString(w, id)
})

var okHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func basic(u, p string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}}
}

func with(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Add(k, v)
	return h
}

func serve(h http.Handler, method string, header http.Header) (int, string) {
	r := httptest.NewRequest(method, "/api/v1/query", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, strings.TrimSpace(w.Body.String())
}

func TestTokensGate(t *testing.T) {
	g, _ := newTokensGate(t, prometheus.NewRegistry())
	g.limiter = newFailureLimiter(1000, 1000) // the cases' failures come from one address
	writes := g.Tenant(func(*http.Request) Rights { return Write }, echoTenant)
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	rules := g.Tenant(func(*http.Request) Rights { return ManageRules }, echoTenant)
	admin := g.Admin(okHandler)
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name    string
		h       http.Handler
		header  http.Header
		code    int
		contain string
	}{
		{"no credential", reads, http.Header{}, 401, "no credential"},
		{"only a tenant header is not a credential", reads, http.Header{"X-Scope-Orgid": {"team-a"}}, 401, "no credential"},
		{"writer writes to its only tenant", writes, bearer("tok-prom-a"), 200, "team-a"},
		{"writer names its tenant", writes, with(bearer("tok-prom-a"), tenant.HeaderName, "team-a"), 200, "team-a"},
		{"writer cannot read", reads, bearer("tok-prom-a"), 403, `caller "prometheus-a" has no read right on tenant "team-a"`},
		{"writer cannot use another tenant", writes, with(bearer("tok-prom-a"), tenant.HeaderName, "team-b"), 403, "no write right"},
		{"reader cannot write", writes, bearer("tok-graf-a"), 403, "no write right"},
		{"unknown token", reads, bearer("tok-nobody"), 401, "not known"},
		{"caller of two tenants must name one", reads, bearer("tok-analyst"), 400, "may use 2 tenants"},
		{"caller of two tenants names one", reads, with(bearer("tok-analyst"), tenant.HeaderName, "team-b"), 200, "team-b"},
		{"a|b needs federation", reads, with(bearer("tok-analyst"), tenant.HeaderName, "team-a|team-b"), 400, "need -tenant-federation.enabled"},
		{"a|b needs read on both: lacks one", reads, with(bearer("tok-graf-a"), tenant.HeaderName, "team-a|team-b"), 403, `tenant "team-b"`},
		{"basic auth with bcrypt", rules, basic("rules-b", "pw-rules-b"), 200, "team-b"},
		{"basic auth, bcrypt cached", rules, basic("rules-b", "pw-rules-b"), 200, "team-b"},
		{"basic auth, wrong password", rules, basic("rules-b", "pw-rules-a"), 401, "wrong username or password"},
		{"basic auth, wrong password after a cached right one", rules, basic("rules-b", ""), 401, "wrong username or password"},
		{"basic auth with sha256", writes, basic("sha-user", "pw-sha"), 200, "team-b"},
		{"basic auth, unknown user", writes, basic("nobody", "pw-sha"), 401, "wrong username or password"},
		{"basic auth, not base64", writes, http.Header{"Authorization": {"Basic %%%"}}, 401, "not base64"},
		{"basic auth, no colon", writes, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("user"))}}, 401, "USER:PASSWORD"},
		{"unknown scheme", reads, http.Header{"Authorization": {"Digest abc"}}, 401, "unsupported authorization scheme"},
		{"no scheme", reads, http.Header{"Authorization": {"abc"}}, 401, "SCHEME CREDENTIAL"},
		{"two credentials", reads, with(bearer("tok-graf-a"), "Authorization", "Bearer tok-analyst"), 401, "more than one credential"},
		{"a token of 1 MB", reads, bearer(huge), 401, "over the limit of 16384"},
		{"an X-Auth-Token of 1 MB", reads, http.Header{KeystoneTokenHeader: {huge}}, 401, "over the limit of 16384"},
		{"two tenant headers", reads, with(with(bearer("tok-analyst"), tenant.HeaderName, "team-a"), tenant.HeaderName, "team-b"), 400, "more than one"},
		{"internal secret names any tenant", rules, with(http.Header{"Authorization": {InternalScheme + " 0123456789abcdef0123"}}, tenant.HeaderName, "team-z"), 200, "team-z"},
		{"internal secret needs a tenant", rules, http.Header{"Authorization": {InternalScheme + " 0123456789abcdef0123"}}, 400, "name one"},
		{"wrong internal secret", reads, http.Header{"Authorization": {InternalScheme + " 0123456789abcdef0124"}}, 401, "not this cluster's"},
		{"internal secret is not admin", admin, http.Header{"Authorization": {InternalScheme + " 0123456789abcdef0123"}}, 403, "no admin right"},
		{"operator reaches operator endpoints", admin, bearer("tok-operator"), 200, ""},
		{"tenant caller does not", admin, bearer("tok-analyst"), 403, "no admin right"},
		{"operator has no tenant", reads, bearer("tok-operator"), 400, "may use 0 tenants"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := serve(tc.h, http.MethodGet, tc.header)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.contain)
			require.NotContains(t, body, "tok-", "an answer never repeats a credential")
		})
	}
}

func TestFederatedReads(t *testing.T) {
	g, _ := newTokensGate(t, prometheus.NewRegistry())
	g.cfg.Federation = true
	reads := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	writes := g.Tenant(func(*http.Request) Rights { return Write }, echoTenant)
	code, body := serve(reads, http.MethodGet, with(bearer("tok-analyst"), tenant.HeaderName, "team-a|team-b"))
	require.Equal(t, 200, code, body)
	require.Equal(t, "team-a|team-b", body)
	code, body = serve(reads, http.MethodGet, with(bearer("tok-graf-a"), tenant.HeaderName, "team-a|team-b"))
	require.Equal(t, 403, code, body)
	code, body = serve(writes, http.MethodGet, with(http.Header{"Authorization": {InternalScheme + " 0123456789abcdef0123"}}, tenant.HeaderName, "team-a|team-b"))
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "can only be read")
	code, body = serve(reads, http.MethodGet, with(bearer("tok-analyst"), tenant.HeaderName, "team-a|"))
	require.Equal(t, 403, code, "an empty tenant is one the caller has no right on: %s", body)

	trust := testConfig()
	trust.Federation = true
	tg, err := NewGate(trust, true, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	code, body = serve(tg.Tenant(func(*http.Request) Rights { return Read }, echoTenant), http.MethodGet, with(http.Header{}, tenant.HeaderName, "a|b"))
	require.Equal(t, 200, code, body)
	code, body = serve(tg.Tenant(func(*http.Request) Rights { return Write }, echoTenant), http.MethodGet, with(http.Header{}, tenant.HeaderName, "a|b"))
	require.Equal(t, 400, code, body)
}

func TestFailedAuthenticationsAreRateLimitedPerAddress(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, _ := newTokensGate(t, reg)
	h := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	for range g.cfg.FailureBurst {
		code, _ := serve(h, http.MethodGet, bearer("wrong"))
		require.Equal(t, 401, code)
	}
	code, body := serve(h, http.MethodGet, bearer("tok-graf-a"))
	require.Equal(t, http.StatusTooManyRequests, code, "an address out of failures is refused without a check, even with a good token")
	require.Contains(t, body, "too many failed authentications")

	other := httptest.NewRequest(http.MethodGet, "/api/v1/query", nil)
	other.RemoteAddr = "198.51.100.7:999"
	other.Header.Set("Authorization", "Bearer tok-graf-a")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, other)
	require.Equal(t, 200, w.Code, "other addresses are not affected")

	require.Equal(t, float64(g.cfg.FailureBurst), testutil.ToFloat64(g.failures.WithLabelValues(ReasonUnknown)))
	require.Equal(t, 1.0, testutil.ToFloat64(g.failures.WithLabelValues(ReasonRateLimited)))
}

func TestFailureLimitOff(t *testing.T) {
	l := newFailureLimiter(0, 1)
	for range 10 {
		l.fail("192.0.2.1")
	}
	require.False(t, l.blocked("192.0.2.1"))
	require.Empty(t, l.addrs)
	c := testConfig()
	c.FailuresPerSecond = 0
	require.NoError(t, c.Validate())
	c.FailuresPerSecond = -1
	require.ErrorContains(t, c.Validate(), "must not be negative")
}

func TestFailureLimiterStaysBounded(t *testing.T) {
	l := newFailureLimiter(1, 1)
	for i := range maxTrackedAddresses + 10 {
		l.fail(fmt.Sprintf("addr-%d", i))
	}
	require.LessOrEqual(t, len(l.addrs), maxTrackedAddresses)
	require.True(t, l.blocked(fmt.Sprintf("addr-%d", maxTrackedAddresses+9)))
}

func TestTokensFileReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, file := newTokensGate(t, reg)
	h := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	code, _ := serve(h, http.MethodGet, bearer("tok-new"))
	require.Equal(t, 401, code)

	added := tokensFixture(t) + fmt.Sprintf("  - name: new\n    token: %s\n    tenants: [team-c]\n    rights: [read]\n", sha("tok-new"))
	writeFile(t, filepath.Dir(file), filepath.Base(file), added)
	require.NoError(t, g.tokens.reload())
	code, body := serve(h, http.MethodGet, bearer("tok-new"))
	require.Equal(t, 200, code, body)
	require.Equal(t, "team-c", body)

	// A broken file leaves the last good one in force.
	writeFile(t, filepath.Dir(file), filepath.Base(file), "callers: [{name: x, token: plain-text, rights: [read], tenants: [a]}]")
	require.ErrorContains(t, g.tokens.reload(), "store the secret hashed")
	code, _ = serve(h, http.MethodGet, bearer("tok-new"))
	require.Equal(t, 200, code)

	// A removed token stops working.
	writeFile(t, filepath.Dir(file), filepath.Base(file), tokensFixture(t))
	require.NoError(t, g.tokens.reload())
	code, _ = serve(h, http.MethodGet, bearer("tok-new"))
	require.Equal(t, 401, code)
}

func TestTokensFileRunReloadsOnItsOwn(t *testing.T) {
	g, file := newTokensGate(t, prometheus.NewRegistry())
	g.tokens.cfg.ReloadPeriod = 10 * time.Millisecond
	ctx := t.Context()
	go g.tokens.run(ctx)
	writeFile(t, filepath.Dir(file), filepath.Base(file), tokensFixture(t)+fmt.Sprintf("  - name: new\n    token: %s\n    tenants: [team-c]\n    rights: [read]\n", sha("tok-new")))
	h := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	require.Eventually(t, func() bool {
		code, _ := serve(h, http.MethodGet, bearer("tok-new"))
		return code == 200
	}, 5*time.Second, 10*time.Millisecond)
}

func TestTokensFileChangeIsReadAtOnce(t *testing.T) {
	g, file := newTokensGate(t, prometheus.NewRegistry())
	g.tokens.cfg.ReloadPeriod = time.Hour // only the directory's notice can bring the change
	go g.tokens.run(t.Context())
	h := g.Tenant(func(*http.Request) Rights { return Read }, echoTenant)
	added := tokensFixture(t) + fmt.Sprintf("  - name: new\n    token: %s\n    tenants: [team-c]\n    rights: [read]\n", sha("tok-new"))
	// The watch starts with run: write until the change is seen.
	require.Eventually(t, func() bool {
		writeFile(t, filepath.Dir(file), filepath.Base(file), added)
		code, _ := serve(h, http.MethodGet, bearer("tok-new"))
		return code == 200
	}, 5*time.Second, 50*time.Millisecond)
}

func TestParseTokensRefusals(t *testing.T) {
	for _, tc := range []struct{ name, file, err string }{
		{"plain token", "callers: [{name: a, token: abc, tenants: [t], rights: [read]}]", "store the secret hashed"},
		{"bcrypt token", fmt.Sprintf("callers: [{name: a, token: '%s', tenants: [t], rights: [read]}]", bcryptOf(t, "x")), "must be sha256"},
		{"short sha", "callers: [{name: a, token: 'sha256:abcd', tenants: [t], rights: [read]}]", "64 hexadecimal"},
		{"no name", fmt.Sprintf("callers: [{token: '%s', tenants: [t], rights: [read]}]", sha("x")), "has no name"},
		{"twice the name", fmt.Sprintf("callers: [{name: a, token: '%s', tenants: [t], rights: [read]}, {name: a, token: '%s', tenants: [t], rights: [read]}]", sha("x"), sha("y")), "used twice"},
		{"same token", fmt.Sprintf("callers: [{name: a, token: '%s', tenants: [t], rights: [read]}, {name: b, token: '%s', tenants: [t], rights: [read]}]", sha("x"), sha("x")), "same token"},
		{"unknown right", fmt.Sprintf("callers: [{name: a, token: '%s', tenants: [t], rights: [fly]}]", sha("x")), `unknown right "fly"`},
		{"no rights", fmt.Sprintf("callers: [{name: a, token: '%s', tenants: [t]}]", sha("x")), "has no rights"},
		{"no tenant", fmt.Sprintf("callers: [{name: a, token: '%s', rights: [read]}]", sha("x")), "but no tenant"},
		{"bad tenant", fmt.Sprintf("callers: [{name: a, token: '%s', tenants: ['a/b'], rights: [read]}]", sha("x")), "unsupported character"},
		{"token and user", fmt.Sprintf("callers: [{name: a, token: '%s', username: u, password: '%s', tenants: [t], rights: [read]}]", sha("x"), sha("y")), "either a token or"},
		{"user without password", "callers: [{name: a, username: u, tenants: [t], rights: [read]}]", "either a token or"},
		{"unknown field", "callers: [{name: a, tokn: x}]", "field tokn not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTokens([]byte(tc.file))
			require.ErrorContains(t, err, tc.err)
		})
	}
	set, err := parseTokens(nil)
	require.NoError(t, err, "an empty file lets nobody in")
	require.Empty(t, set.bearer)
}

func TestTrustGateReadsTheHeader(t *testing.T) {
	cfg := testConfig()
	g, err := NewGate(cfg, true, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	h := g.Tenant(func(*http.Request) Rights { return Write }, echoTenant)
	code, body := serve(h, http.MethodGet, http.Header{"X-Scope-Orgid": {"team-a"}})
	require.Equal(t, 200, code)
	require.Equal(t, "team-a", body)
	code, _ = serve(h, http.MethodGet, http.Header{})
	require.Equal(t, 401, code)
	code, _ = serve(g.Admin(okHandler), http.MethodGet, http.Header{})
	require.Equal(t, 200, code, "trust leaves operator endpoints to the network's protection")
}

func TestRightsMap(t *testing.T) {
	m, err := parseRightsMap("x", "reader=read, member=read+write ,admin=admin")
	require.NoError(t, err)
	require.Equal(t, map[string]Rights{"reader": Read, "member": Read | Write, "admin": Admin}, m)
	_, err = parseRightsMap("x", "reader")
	require.ErrorContains(t, err, "not value=right+right")
	_, err = parseRightsMap("x", "a=fly")
	require.ErrorContains(t, err, "unknown right")
	_, err = parseRightsMap("x", "")
	require.ErrorContains(t, err, "maps nothing")
	require.Equal(t, "read+write+rules+admin", (Read | Write | ManageRules | Admin).String())
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
