//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// keystone is a real OpenStack Keystone (Debian's python3-keystone) on
// SQLite, served by keystone-wsgi-public on 127.0.0.1.
type keystone struct {
	*proc
	URL        string // http://127.0.0.1:PORT/v3
	adminToken string
}

// startKeystone sets up Keystone in a temp dir (database, Fernet keys,
// bootstrap with an admin) and starts it.
func startKeystone(t *testing.T) *keystone {
	t.Helper()
	for _, bin := range []string{"keystone-manage", "keystone-wsgi-public"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not on PATH (%v): the Keystone tests need Debian's python3-keystone; run `make test-deps` (scripts/install-test-deps.sh)", bin, err)
		}
	}
	dir := t.TempDir()
	for _, d := range []string{"fernet", "receipts", "credential"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o700))
	}
	addr := freeAddr(t)
	conf := filepath.Join(dir, "keystone.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`[DEFAULT]
log_file = %[1]s/keystone.log
[database]
connection = sqlite:///%[1]s/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = %[1]s/fernet
[fernet_receipts]
key_repository = %[1]s/receipts
[credential]
key_repository = %[1]s/credential
`, dir)), 0o600))
	manage := func(args ...string) {
		cmd := exec.Command("keystone-manage", append([]string{"--config-file", conf}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "keystone-manage %v: %s", args, tailLines(string(out), 20))
	}
	manage("db_sync")
	manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
	manage("credential_setup", "--keystone-user", "root", "--keystone-group", "root")
	base := "http://" + addr + "/v3"
	manage("bootstrap", "--bootstrap-password", "e2e-admin-pw", "--bootstrap-admin-url", base+"/",
		"--bootstrap-public-url", base+"/", "--bootstrap-region-id", "RegionOne")
	host, port := strings.Split(addr, ":")[0], port(addr)
	k := &keystone{proc: newProc(t, "keystone", "env", []string{"OS_KEYSTONE_CONFIG_FILES=" + conf,
		"keystone-wsgi-public", "--host", host, "--port", port}), URL: base}
	k.start()
	waitFor(t, 60*time.Second, "Keystone to issue the admin's token", func() error {
		if !k.running() {
			t.Fatalf("keystone exited: %v\n%s", k.waitErr, k.currentLog())
		}
		tok, err := k.passwordToken("admin", "e2e-admin-pw", "admin")
		k.adminToken = tok
		return err
	})
	return k
}

// call sends a request to Keystone's API with token and decodes its JSON
// answer into out (if not nil); it returns the answer's headers.
func (k *keystone) call(method, path, token string, in, out any, want int) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, k.URL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// passwordToken is a token of user scoped to project (names, in the
// default domain).
func (k *keystone) passwordToken(user, password, project string) (string, error) {
	h, err := k.call(http.MethodPost, "/auth/tokens", "", map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": user, "domain": map[string]string{"id": "default"}, "password": password}}},
		"scope": map[string]any{"project": map[string]any{"name": project, "domain": map[string]string{"id": "default"}}},
	}}, nil, http.StatusCreated)
	if err != nil {
		return "", err
	}
	return h.Get("X-Subject-Token"), nil
}

func (k *keystone) create(t *testing.T, kind string, fields map[string]any) string {
	t.Helper()
	var out map[string]map[string]any
	_, err := k.call(http.MethodPost, "/"+kind+"s", k.adminToken, map[string]any{kind: fields}, &out, http.StatusCreated)
	require.NoError(t, err)
	return out[kind]["id"].(string)
}

func (k *keystone) roleID(t *testing.T, name string) string {
	t.Helper()
	var out struct {
		Roles []struct{ ID string } `json:"roles"`
	}
	_, err := k.call(http.MethodGet, "/roles?name="+url.QueryEscape(name), k.adminToken, nil, &out, http.StatusOK)
	require.NoError(t, err)
	require.Len(t, out.Roles, 1, "role %s", name)
	return out.Roles[0].ID
}

// TestKeystoneProjectsAreTenants runs isobar with -auth.type=keystone
// against a real Keystone with two projects: a real Prometheus writes with
// a member's token (as a bearer token: Debian's Prometheus 2.42 does not
// send remote_write's extra headers, so not as X-Auth-Token, which the
// queries here use) for one project and an application
// credential (basic auth) for the other; each project reads its own series
// and never the other's; a reader cannot write; a revoked token stops
// working within the recheck period; a token of no project, a garbage
// token and another project's tenant are refused; Keystone down is a 503
// for tokens not yet checked.
func TestKeystoneProjectsAreTenants(t *testing.T) {
	ks := startKeystone(t)
	projA := ks.create(t, "project", map[string]any{"name": "team-a", "domain_id": "default"})
	projB := ks.create(t, "project", map[string]any{"name": "team-b", "domain_id": "default"})
	member, reader := ks.roleID(t, "member"), ks.roleID(t, "reader")
	users := map[string]string{}
	for _, u := range []struct{ name, project, role string }{
		{"alice", projA, member}, {"bob", projA, reader}, {"carol", projB, member},
	} {
		users[u.name] = ks.create(t, "user", map[string]any{"name": u.name, "domain_id": "default", "password": "pw-" + u.name})
		_, err := ks.call(http.MethodPut, fmt.Sprintf("/projects/%s/users/%s/roles/%s", u.project, users[u.name], u.role), ks.adminToken, nil, nil, http.StatusNoContent)
		require.NoError(t, err)
	}
	token := func(user, project string) string {
		tok, err := ks.passwordToken(user, "pw-"+user, project)
		require.NoError(t, err)
		return tok
	}
	alice, bob, carol := token("alice", "team-a"), token("bob", "team-a"), token("carol", "team-b")
	// Carol's Prometheus uses an application credential, as a service would.
	var cred struct {
		ApplicationCredential struct{ ID, Secret string } `json:"application_credential"`
	}
	_, err := ks.call(http.MethodPost, "/users/"+users["carol"]+"/application_credentials", carol,
		map[string]any{"application_credential": map[string]any{"name": "prometheus"}}, &cred, http.StatusCreated)
	require.NoError(t, err)

	const recheck = 3 * time.Second
	iso := startIsobar(t, t.TempDir(), "-auth.type=keystone", "-auth.keystone.url="+ks.URL, "-auth.keystone.recheck-period="+recheck.String())
	startWritingPrometheus(t, iso.URL+"/api/v1/push", map[string]string{
		"alice": "authorization: {credentials: " + alice + "}",
		"carol": fmt.Sprintf("basic_auth: {username: %s, password: %s}", cred.ApplicationCredential.ID, cred.ApplicationCredential.Secret),
	})

	for _, w := range []struct{ reader, writer string }{{bob, "alice"}, {carol, "carol"}} {
		waitOnlyWriter(t, apiClient{base: iso.URL, header: http.Header{"X-Auth-Token": {w.reader}}}, w.writer)
	}
	// The project's ID is the tenant: an operator finds it in Keystone.
	code, body, err := httpGet(iso.URL+"/api/v1/label/writer/values", http.Header{"X-Auth-Token": {bob}, "X-Scope-OrgID": {projA}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"status":"success","data":["alice"]}`, body)

	pushAs := func(h http.Header) (int, string) {
		req := encodeWrite(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "e2e_keystone_probe"}, sample(time.Now().UnixMilli(), 1))}})
		for k, v := range rwHeaders("") {
			h[k] = v
		}
		code, body, err := postRaw(httpClient, iso.URL+"/api/v1/push", req, h)
		require.NoError(t, err)
		return code, body
	}
	code, body = pushAs(http.Header{"X-Auth-Token": {bob}})
	require.Equal(t, http.StatusForbidden, code, "a reader cannot write: %s", body)
	code, body = pushAs(http.Header{"X-Auth-Token": {alice}, "X-Scope-OrgID": {projB}})
	require.Equal(t, http.StatusForbidden, code, "a project's token cannot write to another: %s", body)
	code, body = pushAs(http.Header{"X-Auth-Token": {"gAAAAABnot-a-token"}})
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.NotContains(t, body, "gAAAA")
	// A token scoped to no project names no tenant.
	h, err := ks.call(http.MethodPost, "/auth/tokens", "", map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": "alice", "domain": map[string]string{"id": "default"}, "password": "pw-alice"}}}}}, nil, http.StatusCreated)
	require.NoError(t, err)
	code, body = pushAs(http.Header{"X-Auth-Token": {h.Get("X-Subject-Token")}})
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "not scoped to a project")
	code, body = pushAs(http.Header{"X-Auth-Token": {alice}})
	require.Equal(t, http.StatusNoContent, code, body)

	// Revoked, alice's token stops working within the recheck period.
	_, err = ks.call(http.MethodDelete, "/auth/tokens", ks.adminToken, nil, nil, http.StatusNoContent)
	require.Error(t, err, "the revocation below names its token")
	req, _ := http.NewRequest(http.MethodDelete, ks.URL+"/auth/tokens", nil)
	req.Header.Set("X-Auth-Token", ks.adminToken)
	req.Header.Set("X-Subject-Token", alice)
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	revoked := time.Now()
	waitFor(t, recheck+5*time.Second, "the revoked token to be refused", func() error {
		if code, _ := pushAs(http.Header{"X-Auth-Token": {alice}}); code != http.StatusUnauthorized {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	t.Logf("a revoked token was refused %s after its revocation (recheck period %s)", time.Since(revoked).Round(time.Millisecond), recheck)

	// Keystone down: a token isobar has not checked gets a 503, not an
	// open door; the process stays up.
	dave := token("bob", "team-a")
	require.True(t, ks.signal(syscall.SIGTERM, stopTimeout))
	code, body = pushAs(http.Header{"X-Auth-Token": {dave}})
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "Keystone")
	code, _, err = httpGet(iso.URL+"/ready", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
}
