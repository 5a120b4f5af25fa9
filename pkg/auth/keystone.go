package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/singleflight"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// KeystoneConfig is how OpenStack tokens are checked.
type KeystoneConfig struct {
	URL     string        `yaml:"url"`
	Tenant  string        `yaml:"tenant"`
	Roles   string        `yaml:"roles"`
	Recheck time.Duration `yaml:"recheck_period"`
	Timeout time.Duration `yaml:"timeout"`
}

// RegisterFlags registers Keystone's flags.
func (c *KeystoneConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.URL, "auth.keystone.url", "", "Keystone's identity API, with or without its /v3 (-auth.type=keystone), e.g. http://keystone:5000/v3.")
	f.StringVar(&c.Tenant, "auth.keystone.tenant", "id", "What of a token's project is the tenant: id or name.")
	f.StringVar(&c.Roles, "auth.keystone.roles", "reader=read,member=read+write+rules,admin=admin", "Rights of Keystone roles: role=right+right, comma-separated; a token's rights are those of all its roles.")
	f.DurationVar(&c.Recheck, "auth.keystone.recheck-period", time.Minute, "How long a validated token is trusted before Keystone is asked again: a revoked token stops working within it.")
	f.DurationVar(&c.Timeout, "auth.keystone.timeout", 5*time.Second, "Longest wait for Keystone's answer.")
}

// Validate checks Keystone's configuration.
func (c *KeystoneConfig) Validate() error {
	if c.URL == "" {
		return errors.New("-auth.type=keystone needs -auth.keystone.url")
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("-auth.keystone.url %q is not an http(s) URL", c.URL)
	}
	if c.Tenant != "id" && c.Tenant != "name" {
		return fmt.Errorf("-auth.keystone.tenant is %q: use id or name", c.Tenant)
	}
	if _, err := parseRightsMap("auth.keystone.roles", c.Roles); err != nil {
		return err
	}
	if c.Recheck <= 0 || c.Timeout <= 0 {
		return errors.New("-auth.keystone.recheck-period and -auth.keystone.timeout must be positive")
	}
	return nil
}

// keystone checks OpenStack tokens (X-Auth-Token, or a bearer token) and
// application credentials (basic auth: the credential's ID and secret)
// with Keystone's v3 API. A token checks itself: Keystone lets a token's
// subject validate it, so isobar needs no service account.
type keystone struct {
	cfg    KeystoneConfig
	tokens string // .../v3/auth/tokens
	roles  map[string]Rights
	client *http.Client
	cache  *credentialCache
	flight singleflight.Group
	now    func() time.Time
	asked  *prometheus.CounterVec
}

func newKeystone(cfg KeystoneConfig, cacheSize int, reg prometheus.Registerer) (*keystone, error) {
	roles, err := parseRightsMap("auth.keystone.roles", cfg.Roles)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(strings.TrimSuffix(cfg.URL, "/"), "/v3")
	return &keystone{
		cfg:    cfg,
		tokens: base + "/v3/auth/tokens",
		roles:  roles,
		client: &http.Client{Timeout: cfg.Timeout},
		cache:  newCredentialCache(TypeKeystone, cacheSize, cfg.Recheck, reg),
		now:    time.Now,
		asked: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_auth_keystone_requests_total",
			Help: "Requests to Keystone, by what was asked (validate, application_credential) and outcome (valid, refused, error).",
		}, []string{"request", "outcome"}),
	}, nil
}

func (k *keystone) authenticate(ctx context.Context, c credential) (*Identity, *Failure) {
	var key [sha256.Size]byte
	switch c.kind {
	case keystoneCredential, bearerCredential:
		key = hashSecret(c.secret)
	case basicCredential:
		key = sha256.Sum256([]byte("application_credential\x00" + c.user + "\x00" + c.secret))
	default:
		return nil, unauthenticated(ReasonMissing, "no credential: send an OpenStack token in X-Auth-Token, or an application credential's ID and secret as basic auth")
	}
	now := k.now()
	if id, expired := k.cache.get(key, now); id != nil {
		return id, nil
	} else if expired {
		return nil, unauthenticated(ReasonExpired, "the token has expired")
	}
	// Concurrent requests with one credential ask Keystone once.
	v, _, _ := k.flight.Do(string(key[:]), func() (any, error) {
		id, expires, f := k.ask(ctx, c)
		if f == nil {
			k.cache.put(key, id, expires, k.now())
		} else if f.Status == http.StatusUnauthorized {
			k.cache.remove(key) // revoked: no stale entry left to find
		}
		return keystoneAnswer{id, f}, nil
	})
	a := v.(keystoneAnswer)
	return a.id, a.failure
}

type keystoneAnswer struct {
	id      *Identity
	failure *Failure
}

// tokenBody is what Keystone says of a token.
type tokenBody struct {
	Token struct {
		ExpiresAt time.Time `json:"expires_at"`
		User      struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"user"`
		Project *struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"project"`
		Roles []struct {
			Name string `json:"name"`
		} `json:"roles"`
	} `json:"token"`
}

// ask has Keystone validate a token, or issue one for an application
// credential.
func (k *keystone) ask(ctx context.Context, c credential) (*Identity, time.Time, *Failure) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.Timeout)
	defer cancel()
	var req *http.Request
	what := "validate"
	if c.kind == basicCredential {
		what = "application_credential"
		body, _ := json.Marshal(map[string]any{"auth": map[string]any{"identity": map[string]any{
			"methods":                []string{"application_credential"},
			"application_credential": map[string]string{"id": c.user, "secret": c.secret},
		}}})
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, k.tokens, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, k.tokens, nil)
		req.Header.Set("X-Auth-Token", c.secret)
		req.Header.Set("X-Subject-Token", c.secret)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		k.asked.WithLabelValues(what, "error").Inc()
		return nil, time.Time{}, unavailable("the identity service (Keystone) did not answer: try again later")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case err != nil:
		k.asked.WithLabelValues(what, "error").Inc()
		return nil, time.Time{}, unavailable("the identity service (Keystone) did not answer: try again later")
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		k.asked.WithLabelValues(what, "refused").Inc()
		if what == "validate" {
			return nil, time.Time{}, unauthenticated(ReasonInvalid, "Keystone does not accept the token (unknown, revoked or expired)")
		}
		return nil, time.Time{}, unauthenticated(ReasonInvalid, "Keystone does not accept the application credential")
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated:
		k.asked.WithLabelValues(what, "error").Inc()
		return nil, time.Time{}, unavailable("the identity service (Keystone) answered %d: try again later", resp.StatusCode)
	}
	var tb tokenBody
	if err := json.Unmarshal(body, &tb); err != nil {
		k.asked.WithLabelValues(what, "error").Inc()
		return nil, time.Time{}, unavailable("the identity service (Keystone) answered what is not a token")
	}
	k.asked.WithLabelValues(what, "valid").Inc()
	t := tb.Token
	if !k.now().Before(t.ExpiresAt) {
		return nil, time.Time{}, unauthenticated(ReasonExpired, "the token has expired")
	}
	if t.Project == nil {
		return nil, time.Time{}, unauthenticated(ReasonInvalid, "the token is not scoped to a project: ask Keystone for a project-scoped one")
	}
	ten := t.Project.ID
	if k.cfg.Tenant == "name" {
		ten = t.Project.Name
	}
	caller := fmt.Sprintf("keystone user %s (%s) in project %s (%s)", t.User.Name, t.User.ID, t.Project.Name, t.Project.ID)
	if err := tenant.Validate(ten); err != nil {
		return nil, time.Time{}, forbidden("project %q cannot be a tenant: %v", ten, err)
	}
	var rights Rights
	for _, r := range t.Roles {
		rights |= k.roles[r.Name]
	}
	return &Identity{Caller: caller, Grants: []Grant{{Tenant: ten, Rights: rights}}}, t.ExpiresAt, nil
}
