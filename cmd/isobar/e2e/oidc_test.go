//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// hydra is a real OpenID Connect provider, Ory Hydra, with its store in
// memory, listening on 127.0.0.1.
type hydra struct {
	*proc
	Issuer string // its public URL, the tokens' iss
	Admin  string
}

// hydraBin finds the Hydra that scripts/install-test-deps.sh builds, or
// fails the test.
func hydraBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("ISOBAR_HYDRA")
	if bin == "" {
		bin = "hydra"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("no Ory Hydra at ISOBAR_HYDRA or hydra on PATH (%v): the OIDC tests need it; run `make test-deps` (scripts/install-test-deps.sh)", err)
	}
	return path
}

func startHydra(t *testing.T) *hydra {
	t.Helper()
	public, admin := freeAddr(t), freeAddr(t)
	conf := filepath.Join(t.TempDir(), "hydra.yml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`dsn: memory
serve:
  public: {host: 127.0.0.1, port: %s}
  admin: {host: 127.0.0.1, port: %s}
urls:
  self: {issuer: http://%s}
strategies:
  access_token: jwt
secrets:
  system: [isobar-e2e-system-secret-of-32-bytes]
log: {level: warn}
`, port(public), port(admin), public)), 0o600))
	h := &hydra{proc: newProc(t, "hydra", hydraBin(t), []string{"serve", "all", "--dev", "--sqa-opt-out", "-c", conf}),
		Issuer: "http://" + public, Admin: "http://" + admin}
	h.start()
	waitFor(t, 60*time.Second, "Hydra's discovery document", func() error {
		if !h.running() {
			t.Fatalf("hydra exited: %v\n%s", h.waitErr, h.currentLog())
		}
		code, _, err := httpGet(h.Issuer+"/.well-known/openid-configuration", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("status %d, %v", code, err)
		}
		code, _, err = httpGet(h.Admin+"/health/ready", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("admin: status %d, %v", code, err)
		}
		return nil
	})
	return h
}

type oauthClient struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// client registers a client-credentials client allowed scope and audience.
func (h *hydra) client(t *testing.T, scope, audience string) oauthClient {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"grant_types": []string{"client_credentials"}, "scope": scope, "audience": []string{audience},
		"token_endpoint_auth_method": "client_secret_basic"})
	code, resp, err := postRaw(httpClient, h.Admin+"/admin/clients", body, http.Header{"Content-Type": {"application/json"}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code, resp)
	var c oauthClient
	require.NoError(t, json.Unmarshal([]byte(resp), &c))
	return c
}

// token gets an access token for c with scope and audience.
func (h *hydra) token(t *testing.T, c oauthClient, scope, audience string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}, "audience": {audience}}
	header := basicHeader(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, resp, err := postRaw(httpClient, h.Issuer+"/oauth2/token", []byte(form.Encode()), header)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, resp)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &tok))
	return tok.AccessToken
}

// jwtPart decodes part i (0 header, 1 claims) of a JWT.
func jwtPart(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

// TestOIDCFromHydra runs isobar with -auth.type=oidc against Ory Hydra: a
// real Prometheus writes for two tenants with OAuth2 client credentials
// (Hydra's JWT access tokens carry the tenant and the rights in their
// scopes); each tenant's reader sees its own series only; a reader cannot
// write nor a writer read; Hydra's signing key rotates and new tokens
// still work; an expired token, a token for another audience, alg none and
// a forged signature are refused.
func TestOIDCFromHydra(t *testing.T) {
	h := startHydra(t)
	writerA := h.client(t, "tenant:team-a isobar:write", "isobar")
	writerB := h.client(t, "tenant:team-b isobar:write", "isobar")
	readerA := h.client(t, "tenant:team-a isobar:read", "isobar")
	readerB := h.client(t, "tenant:team-b isobar:read", "isobar")
	grafana := h.client(t, "tenant:team-a isobar:read", "grafana")

	iso := startIsobar(t, t.TempDir(), "-auth.type=oidc", "-auth.oidc.issuer-url="+h.Issuer, "-auth.oidc.audience=isobar",
		"-auth.oidc.tenant-claim=scp", "-auth.oidc.tenant-prefix=tenant:", "-auth.oidc.rights-claim=scp")
	oauth2 := func(c oauthClient, tenant string) string {
		return fmt.Sprintf("oauth2: {client_id: %s, client_secret: %s, token_url: %s/oauth2/token, scopes: ['tenant:%s', 'isobar:write'], endpoint_params: {audience: isobar}}",
			c.ID, c.Secret, h.Issuer, tenant)
	}
	startWritingPrometheus(t, iso.URL+"/api/v1/push", map[string]string{"a": oauth2(writerA, "team-a"), "b": oauth2(writerB, "team-b")})

	tokA := h.token(t, readerA, "tenant:team-a isobar:read", "isobar")
	tokB := h.token(t, readerB, "tenant:team-b isobar:read", "isobar")
	for _, w := range []struct{ tok, writer string }{{tokA, "a"}, {tokB, "b"}} {
		waitOnlyWriter(t, apiClient{base: iso.URL, header: bearerHeader(w.tok)}, w.writer)
	}

	probe := encodeWrite(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "e2e_oidc_probe"}, sample(time.Now().UnixMilli(), 1))}})
	pushAs := func(tok string) (int, string) {
		hd := bearerHeader(tok)
		for k, v := range rwHeaders("") {
			hd[k] = v
		}
		code, body, err := postRaw(httpClient, iso.URL+"/api/v1/push", probe, hd)
		require.NoError(t, err)
		return code, body
	}
	query := func(tok string) (int, string) {
		code, body, err := httpGet(iso.URL+"/api/v1/query?query=vector(1)", bearerHeader(tok))
		require.NoError(t, err)
		return code, body
	}
	code, body := pushAs(tokA)
	require.Equal(t, http.StatusForbidden, code, "a reader cannot write: %s", body)
	tokWriterA := h.token(t, writerA, "tenant:team-a isobar:write", "isobar")
	code, body = query(tokWriterA)
	require.Equal(t, http.StatusForbidden, code, "a writer cannot read: %s", body)
	code, body = pushAs(tokWriterA)
	require.Equal(t, http.StatusNoContent, code, body)

	// Refused tokens.
	forGrafana := h.token(t, grafana, "tenant:team-a isobar:read", "grafana")
	code, body = query(forGrafana)
	require.Equal(t, http.StatusUnauthorized, code, "a token for another audience: %s", body)
	enc := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(tokA, ".")
	claims := jwtPart(t, tokA, 1)
	claims["scp"] = []string{"tenant:team-b", "isobar:read"}
	swapped, _ := json.Marshal(claims)
	for name, tok := range map[string]string{
		"alg none":          enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".",
		"claims swapped":    parts[0] + "." + enc(swapped) + "." + parts[2],
		"signature altered": parts[0] + "." + parts[1] + "." + enc([]byte("not the signature")),
		"not a JWT":         "hello",
	} {
		code, body = query(tok)
		require.Equal(t, http.StatusUnauthorized, code, "%s: %s", name, body)
	}

	// A new signing key: tokens signed with it are checked once isobar
	// fetches Hydra's keys again.
	kidBefore := jwtPart(t, tokA, 0)["kid"]
	code, resp, err := postRaw(httpClient, h.Admin+"/admin/keys/hydra.jwt.access-token", []byte(`{"alg":"RS256","use":"sig"}`), http.Header{"Content-Type": {"application/json"}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code, resp)
	rotated := h.token(t, readerA, "tenant:team-a isobar:read", "isobar")
	require.NotEqual(t, kidBefore, jwtPart(t, rotated, 0)["kid"], "Hydra signs with the new key")
	code, body = query(rotated)
	require.Equal(t, http.StatusOK, code, "a token signed with the rotated key: %s", body)

	// A token past its expiry stops working.
	short := h.client(t, "tenant:team-a isobar:read", "isobar")
	lifespan, _ := json.Marshal(map[string]string{"client_credentials_grant_access_token_lifespan": "2s"})
	req, _ := http.NewRequest(http.MethodPut, h.Admin+"/admin/clients/"+short.ID+"/lifespans", strings.NewReader(string(lifespan)))
	req.Header.Set("Content-Type", "application/json")
	resp2, err := httpClient.Do(req)
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, http.StatusOK, resp2.StatusCode)
	shortTok := h.token(t, short, "tenant:team-a isobar:read", "isobar")
	code, body = query(shortTok)
	require.Equal(t, http.StatusOK, code, body)
	exp := time.Unix(int64(jwtPart(t, shortTok, 1)["exp"].(float64)), 0)
	time.Sleep(time.Until(exp) + 1100*time.Millisecond)
	code, body = query(shortTok)
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "expired")

	code, _, err = httpGet(iso.URL+"/ready", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
}
