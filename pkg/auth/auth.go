// Package auth finds out who is calling and what the caller may do: it
// authenticates a request (bearer tokens and users from a file, OIDC JWTs,
// OpenStack Keystone tokens, or, with type trust, nobody at all) and maps the
// caller to the tenants it may use and its rights on them.
package auth

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Types of authentication (-auth.type).
const (
	TypeTrust    = "trust"
	TypeTokens   = "tokens"
	TypeOIDC     = "oidc"
	TypeKeystone = "keystone"
)

// MaxCredentialBytes bounds a credential: a longer one is refused before
// anything hashes or parses it.
const MaxCredentialBytes = 16 << 10

// Rights are what a caller may do with a tenant.
type Rights uint8

// The rights. Admin is the operator endpoints' (ring pages, flush, pprof,
// runtime config); it implies none of the others.
const (
	Read Rights = 1 << iota
	Write
	ManageRules
	Admin
)

var rightNames = []struct {
	r    Rights
	name string
}{{Read, "read"}, {Write, "write"}, {ManageRules, "rules"}, {Admin, "admin"}}

// parseRight reads one right's name.
func parseRight(s string) (Rights, error) {
	for _, n := range rightNames {
		if n.name == s {
			return n.r, nil
		}
	}
	return 0, fmt.Errorf("unknown right %q: use read, write, rules or admin", s)
}

// parseRights reads a list of rights' names.
func parseRights(names []string) (Rights, error) {
	var r Rights
	for _, s := range names {
		one, err := parseRight(strings.TrimSpace(s))
		if err != nil {
			return 0, err
		}
		r |= one
	}
	return r, nil
}

func (r Rights) String() string {
	var names []string
	for _, n := range rightNames {
		if r&n.r != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}

// Has reports whether r holds every right of need.
func (r Rights) Has(need Rights) bool { return r&need == need }

// Grant is a caller's rights on one tenant.
type Grant struct {
	Tenant string
	Rights Rights
}

// Identity is an authenticated caller.
type Identity struct {
	// Caller names the caller in logs: a token's or user's name, a
	// Keystone user and project, an OIDC subject. Never a secret.
	Caller string
	Grants []Grant
	// AnyTenant are rights on whatever tenant the request names (the
	// cluster's own processes).
	AnyTenant Rights
}

// RightsOn returns the caller's rights on tenant id.
func (id *Identity) RightsOn(tenant string) Rights {
	r := id.AnyTenant
	for _, g := range id.Grants {
		if g.Tenant == tenant {
			r |= g.Rights
		}
	}
	return r
}

// IsAdmin reports whether the caller may use the operator endpoints.
func (id *Identity) IsAdmin() bool {
	if id.AnyTenant.Has(Admin) {
		return true
	}
	return slices.ContainsFunc(id.Grants, func(g Grant) bool { return g.Rights.Has(Admin) })
}

// Failure is why a request was refused: an HTTP status, a reason for the
// failures metric and a message that names what is wrong with the
// credential without repeating it.
type Failure struct {
	Status  int
	Reason  string
	Message string
}

func (f *Failure) Error() string { return f.Message }

// Reasons of failures, the values of the reason label.
const (
	ReasonMissing     = "missing"
	ReasonMalformed   = "malformed"
	ReasonUnknown     = "unknown"
	ReasonInvalid     = "invalid"
	ReasonExpired     = "expired"
	ReasonForbidden   = "forbidden"
	ReasonUnavailable = "unavailable"
	ReasonRateLimited = "rate_limited"
)

func unauthenticated(reason, format string, args ...any) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *Failure {
	return &Failure{Status: http.StatusForbidden, Reason: ReasonForbidden, Message: fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) *Failure {
	return &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonUnavailable, Message: fmt.Sprintf(format, args...)}
}

// Config chooses and configures the authentication.
type Config struct {
	Type string `yaml:"type"`
	// InternalSecretFile holds a secret the cluster's processes share;
	// their requests to one another (query-frontend to querier, ruler to
	// query-frontend and to other rulers) carry it instead of a caller's
	// credential.
	InternalSecretFile string         `yaml:"internal_secret_file"`
	Tokens             TokensConfig   `yaml:"tokens"`
	OIDC               OIDCConfig     `yaml:"oidc"`
	Keystone           KeystoneConfig `yaml:"keystone"`
	// CacheSize bounds the validated OIDC and Keystone credentials kept.
	CacheSize int `yaml:"cache_size"`
	// FailuresPerSecond and FailureBurst limit failed authentications per
	// source address; past them the address gets 429 without a check.
	FailuresPerSecond float64 `yaml:"failures_per_second"`
	FailureBurst      int     `yaml:"failure_burst"`
	// Federation lets reads name several tenants, a|b.
	Federation bool `yaml:"tenant_federation_enabled"`
}

// RegisterFlags registers the flags of every type.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Type, "auth.type", TypeTrust, "How a request's caller and tenant are found: trust (the X-Scope-OrgID header as sent: put an authenticating proxy in front), tokens (-auth.tokens.file), oidc (JWTs of -auth.oidc.issuer-url) or keystone (OpenStack tokens checked with -auth.keystone.url). Any type but trust turns multitenancy on.")
	f.StringVar(&c.InternalSecretFile, "auth.internal-secret-file", "", "File holding a secret the cluster's processes share; their HTTP requests to one another carry it. Needed with an -auth.type other than trust by a query-frontend with queriers in other processes and by a ruler in a process of its own.")
	f.IntVar(&c.CacheSize, "auth.cache-size", 100_000, "Most validated OIDC or Keystone credentials kept in memory.")
	f.Float64Var(&c.FailuresPerSecond, "auth.failures-per-second", 5, "Failed authentications a source address may make per second, on average, before its requests get 429 without a check; 0 turns the limit off (clients behind one proxy address share an allowance).")
	f.IntVar(&c.FailureBurst, "auth.failure-burst", 20, "Failed authentications a source address may make at once.")
	f.BoolVar(&c.Federation, "tenant-federation.enabled", false, "Let queries, series, labels, metadata and exemplars read several tenants at once, X-Scope-OrgID: a|b (the Cortex convention): each series gets the label __tenant_id__. The caller needs read on every one.")
	c.Tokens.RegisterFlags(f)
	c.OIDC.RegisterFlags(f)
	c.Keystone.RegisterFlags(f)
}

// Validate checks the configuration of the chosen type.
func (c *Config) Validate() error {
	if c.FailuresPerSecond < 0 || c.FailureBurst <= 0 {
		return errors.New("-auth.failures-per-second must not be negative and -auth.failure-burst must be positive")
	}
	if c.CacheSize <= 0 {
		return errors.New("-auth.cache-size must be positive")
	}
	switch c.Type {
	case TypeTrust:
		return nil
	case TypeTokens:
		return c.Tokens.Validate()
	case TypeOIDC:
		return c.OIDC.Validate()
	case TypeKeystone:
		return c.Keystone.Validate()
	}
	return fmt.Errorf("unknown -auth.type %q: use trust, tokens, oidc or keystone", c.Type)
}

// Enabled reports whether callers are authenticated.
func (c *Config) Enabled() bool { return c.Type != TypeTrust }

// parseRightsMap reads "value=right+right,value=right".
func parseRightsMap(flagName, s string) (map[string]Rights, error) {
	out := map[string]Rights{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("-%s: %q is not value=right+right", flagName, pair)
		}
		r, err := parseRights(strings.Split(v, "+"))
		if err != nil {
			return nil, fmt.Errorf("-%s: %s: %w", flagName, k, err)
		}
		out[strings.TrimSpace(k)] = r
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-%s maps nothing", flagName)
	}
	return out, nil
}
