package auth

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// OIDCConfig is how JWTs of an OpenID Connect issuer are checked and read.
type OIDCConfig struct {
	IssuerURL    string        `yaml:"issuer_url"`
	Audience     string        `yaml:"audience"`
	TenantClaim  string        `yaml:"tenant_claim"`
	TenantPrefix string        `yaml:"tenant_prefix"`
	RightsClaim  string        `yaml:"rights_claim"`
	Rights       string        `yaml:"rights"`
	Timeout      time.Duration `yaml:"timeout"`
	KeysMaxAge   time.Duration `yaml:"keys_max_age"`
}

// RegisterFlags registers OIDC's flags.
func (c *OIDCConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.IssuerURL, "auth.oidc.issuer-url", "", "The OIDC issuer (-auth.type=oidc): its discovery document gives the signing keys, fetched again when a token names a new key.")
	f.StringVar(&c.Audience, "auth.oidc.audience", "", "The audience a token must name (its aud claim).")
	f.StringVar(&c.TenantClaim, "auth.oidc.tenant-claim", "tenant", "Claim that names the caller's tenants: a string, a list, or space-separated; a.b reads claim b inside claim a.")
	f.StringVar(&c.TenantPrefix, "auth.oidc.tenant-prefix", "", "If set, only values of the tenant claim that start with it name tenants, without it (for example tenant: in a scope claim).")
	f.StringVar(&c.RightsClaim, "auth.oidc.rights-claim", "scope", "Claim whose values give the caller's rights (scopes, groups, roles), on each of its tenants.")
	f.StringVar(&c.Rights, "auth.oidc.rights", "isobar:read=read,isobar:write=write,isobar:rules=rules,isobar:admin=admin", "Rights of the rights claim's values: value=right+right, comma-separated.")
	f.DurationVar(&c.Timeout, "auth.oidc.timeout", 5*time.Second, "Longest wait for the issuer's discovery document or keys.")
	f.DurationVar(&c.KeysMaxAge, "auth.oidc.keys-max-age", 10*time.Minute, "How long the issuer's discovery document and keys are used before they are fetched again: a key the issuer withdrew is trusted at most this long for tokens not yet checked.")
}

// Validate checks OIDC's configuration.
func (c *OIDCConfig) Validate() error {
	if c.IssuerURL == "" || c.Audience == "" {
		return errors.New("-auth.type=oidc needs -auth.oidc.issuer-url and -auth.oidc.audience")
	}
	if c.TenantClaim == "" || c.RightsClaim == "" {
		return errors.New("-auth.oidc.tenant-claim and -auth.oidc.rights-claim must not be empty")
	}
	if _, err := parseRightsMap("auth.oidc.rights", c.Rights); err != nil {
		return err
	}
	if c.Timeout <= 0 || c.KeysMaxAge <= 0 {
		return errors.New("-auth.oidc.timeout and -auth.oidc.keys-max-age must be positive")
	}
	return nil
}

// openIDConnect checks bearer JWTs: signature by a key of the issuer's,
// issuer, audience and expiry (go-oidc), then reads tenants and rights
// from claims. A checked token is kept until it expires.
type openIDConnect struct {
	cfg    OIDCConfig
	rights map[string]Rights
	cache  *credentialCache
	now    func() time.Time
	client *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	// verifiedAt is when the verifier's discovery was made.
	verifierAt time.Time
	// failedAt is when discovery last failed: it is tried again at most
	// every second, not on every request.
	failedAt time.Time
}

func newOIDC(cfg OIDCConfig, cacheSize int, reg prometheus.Registerer) (*openIDConnect, error) {
	rights, err := parseRightsMap("auth.oidc.rights", cfg.Rights)
	if err != nil {
		return nil, err
	}
	return &openIDConnect{
		cfg:    cfg,
		rights: rights,
		cache:  newCredentialCache(TypeOIDC, cacheSize, 0, reg),
		now:    time.Now,
		client: &http.Client{Timeout: cfg.Timeout},
	}, nil
}

// verifierFor discovers the issuer the first time it is needed, so a
// process starts while its issuer is down, and again once the keys are
// older than their max age (go-oidc fetches keys only for a key ID it has
// not seen, so it would trust a withdrawn key for ever). While the issuer
// does not answer, the keys in hand are kept.
func (o *openIDConnect) verifierFor() (*oidc.IDTokenVerifier, *Failure) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	if o.verifier != nil && now.Sub(o.verifierAt) < o.cfg.KeysMaxAge {
		return o.verifier, nil
	}
	if now.Sub(o.failedAt) < time.Second {
		if o.verifier != nil {
			return o.verifier, nil
		}
		return nil, unavailable("the OIDC issuer did not answer: try again later")
	}
	// Keys are fetched with the provider's context: not a request's,
	// which may end before the fetch that other requests wait for.
	ctx := oidc.ClientContext(context.Background(), o.client)
	p, err := oidc.NewProvider(ctx, o.cfg.IssuerURL)
	if err != nil {
		o.failedAt = now
		if o.verifier != nil {
			return o.verifier, nil
		}
		return nil, unavailable("the OIDC issuer did not answer: try again later")
	}
	o.verifier, o.verifierAt = p.VerifierContext(ctx, &oidc.Config{ClientID: o.cfg.Audience, Now: o.now}), now
	return o.verifier, nil
}

func (o *openIDConnect) authenticate(ctx context.Context, c credential) (*Identity, *Failure) {
	if c.kind != bearerCredential {
		return nil, unauthenticated(ReasonMissing, "no credential: send a bearer token from the OIDC issuer")
	}
	key := hashSecret(c.secret)
	now := o.now()
	if id, expired := o.cache.get(key, now); id != nil {
		return id, nil
	} else if expired {
		return nil, unauthenticated(ReasonExpired, "the token has expired")
	}
	v, f := o.verifierFor()
	if f != nil {
		return nil, f
	}
	tok, err := v.Verify(ctx, c.secret)
	if err != nil {
		return nil, verifyFailure(ctx, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, unauthenticated(ReasonMalformed, "the token's claims do not read: %v", err)
	}
	id, f := o.identity(tok.Subject, claims)
	if f != nil {
		return nil, f
	}
	o.cache.put(key, id, tok.Expiry, now)
	return id, nil
}

// verifyFailure says which check of go-oidc's a token failed, in words
// that name neither the token nor what the issuer and audience should be.
func verifyFailure(ctx context.Context, err error) *Failure {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return unauthenticated(ReasonExpired, "the token has expired")
	case ctx.Err() == nil && strings.Contains(msg, "fetching keys"):
		return unavailable("the OIDC issuer's keys could not be fetched: try again later")
	case strings.Contains(msg, "malformed jwt"), strings.Contains(msg, "not signed"), strings.Contains(msg, "multiple signatures"):
		return unauthenticated(ReasonMalformed, "the token is not valid: not a signed JWT")
	case strings.Contains(msg, "different provider"):
		return unauthenticated(ReasonInvalid, "the token is not valid: another issuer's")
	case strings.Contains(msg, "expected audience"):
		return unauthenticated(ReasonInvalid, "the token is not valid: not for this audience")
	case strings.Contains(msg, "nbf"):
		return unauthenticated(ReasonInvalid, "the token is not valid yet")
	case strings.Contains(msg, "signature"), strings.Contains(msg, "signing algorithm"):
		return unauthenticated(ReasonInvalid, "the token is not valid: its signature does not verify with the issuer's keys")
	}
	return unauthenticated(ReasonInvalid, "the token is not valid")
}

// identity reads the caller's tenants and rights from claims.
func (o *openIDConnect) identity(subject string, claims map[string]any) (*Identity, *Failure) {
	var rights Rights
	for _, v := range claimValues(claims, o.cfg.RightsClaim) {
		rights |= o.rights[v]
	}
	caller := "oidc subject " + subject
	if cid, ok := claims["client_id"].(string); ok && cid != subject {
		caller += " (client " + cid + ")"
	}
	id := &Identity{Caller: caller}
	for _, v := range claimValues(claims, o.cfg.TenantClaim) {
		t, ok := strings.CutPrefix(v, o.cfg.TenantPrefix)
		if !ok {
			continue
		}
		if err := tenant.Validate(t); err != nil {
			return nil, forbidden("the token's tenant %q is not a valid tenant ID: %v", t, err)
		}
		id.Grants = append(id.Grants, Grant{Tenant: t, Rights: rights})
	}
	if len(id.Grants) == 0 {
		if rights.Has(Admin) {
			id.Grants = []Grant{{Rights: Admin}}
			return id, nil
		}
		return nil, forbidden("the token names no tenant in its %s claim", o.cfg.TenantClaim)
	}
	return id, nil
}

// claimValues reads a claim at a dotted path as strings: a string is split
// at spaces (OAuth's scope), a list gives its strings.
func claimValues(claims map[string]any, path string) []string {
	var v any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
