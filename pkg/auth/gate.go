package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// InternalScheme is the Authorization scheme of requests between the
// cluster's own processes.
const InternalScheme = "Isobar-Internal"

// KeystoneTokenHeader carries an OpenStack token.
const KeystoneTokenHeader = "X-Auth-Token"

type credentialKind uint8

const (
	bearerCredential credentialKind = iota + 1 // the zero value is no credential
	basicCredential
	keystoneCredential
	internalCredential
)

// credential is what a request presents.
type credential struct {
	kind   credentialKind
	user   string
	secret string
}

// readCredential takes the credential of r: an Authorization header
// (Bearer, Basic or the internal scheme) or an X-Auth-Token.
func readCredential(r *http.Request) (credential, *Failure) {
	authz := r.Header.Values("Authorization")
	xauth := r.Header.Values(KeystoneTokenHeader)
	if len(authz)+len(xauth) > 1 {
		return credential{}, unauthenticated(ReasonMalformed, "more than one credential: send one Authorization or X-Auth-Token header")
	}
	if len(xauth) == 1 {
		tok := strings.TrimSpace(xauth[0])
		if tok == "" {
			return credential{}, unauthenticated(ReasonMalformed, "the X-Auth-Token header is empty")
		}
		if len(tok) > MaxCredentialBytes {
			return credential{}, unauthenticated(ReasonMalformed, "the X-Auth-Token header is %d bytes long, over the limit of %d", len(tok), MaxCredentialBytes)
		}
		return credential{kind: keystoneCredential, secret: tok}, nil
	}
	if len(authz) == 0 {
		return credential{}, unauthenticated(ReasonMissing, "no credential: send an Authorization header (Bearer or Basic) or an X-Auth-Token")
	}
	h := authz[0]
	if len(h) > MaxCredentialBytes {
		return credential{}, unauthenticated(ReasonMalformed, "the Authorization header is %d bytes long, over the limit of %d", len(h), MaxCredentialBytes)
	}
	scheme, value, ok := strings.Cut(h, " ")
	value = strings.TrimSpace(value)
	if !ok || value == "" {
		return credential{}, unauthenticated(ReasonMalformed, "the Authorization header is not SCHEME CREDENTIAL")
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return credential{kind: bearerCredential, secret: value}, nil
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return credential{}, unauthenticated(ReasonMalformed, "basic auth: the credential is not base64")
		}
		u, p, ok := strings.Cut(string(raw), ":")
		if !ok || u == "" {
			return credential{}, unauthenticated(ReasonMalformed, "basic auth: the credential is not USER:PASSWORD")
		}
		return credential{kind: basicCredential, user: u, secret: p}, nil
	case scheme == InternalScheme:
		return credential{kind: internalCredential, secret: value}, nil
	}
	return credential{}, unauthenticated(ReasonMalformed, "unsupported authorization scheme: use Bearer or Basic")
}

// authenticator checks a credential of one type.
type authenticator interface {
	authenticate(ctx context.Context, c credential) (*Identity, *Failure)
}

// Gate authenticates the requests of a process's HTTP API and gives each
// its tenant. With type trust it only reads X-Scope-OrgID.
type Gate struct {
	services.Service

	cfg          Config
	multitenancy bool
	logger       *slog.Logger
	authn        authenticator
	tokens       *tokens // when the type is tokens, to reload
	internal     []byte
	limiter      *failureLimiter

	allowed  prometheus.Counter
	failures *prometheus.CounterVec
}

// NewGate builds the gate of cfg; multitenancy is the choice of trust
// (every other type has it on).
func NewGate(cfg Config, multitenancy bool, logger *slog.Logger, reg prometheus.Registerer) (*Gate, error) {
	g := &Gate{
		cfg:          cfg,
		multitenancy: multitenancy || cfg.Enabled(),
		logger:       logger.With("component", "auth"),
		limiter:      newFailureLimiter(cfg.FailuresPerSecond, cfg.FailureBurst),
		allowed: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "isobar_auth_allowed_requests_total",
			Help: "Requests whose caller was authenticated and had the rights they needed.",
		}),
		failures: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "isobar_auth_failures_total",
			Help: "Requests refused by authentication (401), authorisation (403), an identity service that did not answer (503) or the per-address failure limit (429), by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonMissing, ReasonMalformed, ReasonUnknown, ReasonInvalid, ReasonExpired, ReasonForbidden, ReasonUnavailable, ReasonRateLimited} {
		g.failures.WithLabelValues(r)
	}
	if cfg.InternalSecretFile != "" {
		b, err := os.ReadFile(cfg.InternalSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read -auth.internal-secret-file: %w", err)
		}
		g.internal = []byte(strings.TrimSpace(string(b)))
		if len(g.internal) < 16 {
			return nil, fmt.Errorf("-auth.internal-secret-file holds %d bytes: use at least 16 random ones", len(g.internal))
		}
	}
	var err error
	switch cfg.Type {
	case TypeTokens:
		reloaded := promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "isobar_auth_tokens_last_reload_successful",
			Help: "1 if the tokens file was last read and taken, 0 if it was refused (the previous one stays in force).",
		})
		g.tokens, err = newTokens(cfg.Tokens, g.logger, reloaded)
		g.authn = g.tokens
	case TypeOIDC:
		g.authn, err = newOIDC(cfg.OIDC, cfg.CacheSize, reg)
	case TypeKeystone:
		g.authn, err = newKeystone(cfg.Keystone, cfg.CacheSize, reg)
	}
	if err != nil {
		return nil, err
	}
	g.Service = services.NewBasicService(nil, g.running, nil)
	return g, nil
}

func (g *Gate) running(ctx context.Context) error {
	if g.tokens != nil {
		g.tokens.run(ctx) // until ctx ends
		return nil
	}
	<-ctx.Done()
	return nil
}

// Tenant returns a handler that authenticates each request, checks the
// caller holds need (or what needFor says the request needs) on the
// tenant, and puts the tenant in the request's context for next.
func (g *Gate) Tenant(needFor func(*http.Request) Rights, next http.Handler) http.Handler {
	if !g.cfg.Enabled() {
		return g.Trusted(needFor, next)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, f := g.authenticate(r)
		if f == nil {
			var t string
			t, f = g.chooseTenant(id, r, needFor(r))
			if f == nil {
				g.allowed.Inc()
				if g.logger.Enabled(r.Context(), slog.LevelDebug) {
					g.logger.Debug("request allowed", "caller", id.Caller, "tenant", t, "path", r.URL.Path, "source", sourceAddress(r))
				}
				next.ServeHTTP(w, r.WithContext(tenant.With(r.Context(), t)))
				return
			}
		}
		g.refuse(w, r, id, f)
	})
}

// Trusted returns a handler that takes the tenant from X-Scope-OrgID as
// sent: type trust's, and a querier's behind a frontend in its process,
// which has admitted the caller.
func (g *Gate) Trusted(needFor func(*http.Request) Rights, next http.Handler) http.Handler {
	return tenant.MiddlewareValidating(g.multitenancy, func(r *http.Request, id string) error {
		return g.validTenant(id, needFor(r))
	}, next)
}

// validTenant checks the tenant a request names: several (a|b) only for
// reads, with federation on.
func (g *Gate) validTenant(id string, need Rights) error {
	if g.cfg.Federation && need == Read {
		return tenant.ValidateMany(id)
	}
	if strings.Contains(id, "|") {
		if need != Read {
			return fmt.Errorf("several tenants (%s) can only be read, not written to", id)
		}
		return fmt.Errorf("several tenants (%s) need -tenant-federation.enabled", id)
	}
	return tenant.Validate(id)
}

// Admin returns a handler that lets only callers with the admin right
// reach next (operator endpoints). With type trust it is next.
func (g *Gate) Admin(next http.Handler) http.Handler {
	if !g.cfg.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, f := g.authenticate(r)
		if f == nil && !id.IsAdmin() {
			f = forbidden("caller %q has no admin right: operator endpoints need it", id.Caller)
		}
		if f != nil {
			g.refuse(w, r, id, f)
			return
		}
		g.allowed.Inc()
		g.logger.Debug("operator request allowed", "caller", id.Caller, "path", r.URL.Path, "source", sourceAddress(r))
		next.ServeHTTP(w, r)
	})
}

func (g *Gate) authenticate(r *http.Request) (*Identity, *Failure) {
	if g.limiter.blocked(sourceAddress(r)) {
		return nil, &Failure{Status: http.StatusTooManyRequests, Reason: ReasonRateLimited,
			Message: "too many failed authentications from this address: wait and retry"}
	}
	c, f := readCredential(r)
	if f != nil {
		return nil, f
	}
	if c.kind == internalCredential {
		if g.internal != nil && subtle.ConstantTimeCompare([]byte(c.secret), g.internal) == 1 {
			return &Identity{Caller: "isobar (internal)", AnyTenant: Read | Write | ManageRules}, nil
		}
		return nil, unauthenticated(ReasonInvalid, "the internal secret is not this cluster's (-auth.internal-secret-file)")
	}
	return g.authn.authenticate(r.Context(), c)
}

// chooseTenant picks the request's tenant: the one X-Scope-OrgID names,
// which the caller must hold need on, or the caller's only tenant.
func (g *Gate) chooseTenant(id *Identity, r *http.Request, need Rights) (string, *Failure) {
	named := r.Header.Values(tenant.HeaderName)
	if len(named) > 1 {
		return "", &Failure{Status: http.StatusBadRequest, Reason: ReasonMalformed, Message: "more than one " + tenant.HeaderName + " header"}
	}
	var t string
	if len(named) == 1 {
		t = named[0]
	}
	if t == "" {
		n := 0
		for _, gr := range id.Grants {
			if gr.Tenant != "" {
				t, n = gr.Tenant, n+1
			}
		}
		if n != 1 || id.AnyTenant != 0 {
			return "", &Failure{Status: http.StatusBadRequest, Reason: ReasonMalformed,
				Message: fmt.Sprintf("caller %q may use %d tenants: name one in the %s header", id.Caller, n, tenant.HeaderName)}
		}
	}
	// Several tenants at once (a|b) need the right on every one.
	for rest := t; ; {
		one, more, found := strings.Cut(rest, "|")
		if !id.RightsOn(one).Has(need) {
			return "", forbidden("caller %q has no %s right on tenant %q", id.Caller, need&^id.RightsOn(one), one)
		}
		if !found {
			break
		}
		rest = more
	}
	if err := g.validTenant(t, need); err != nil {
		return "", &Failure{Status: http.StatusBadRequest, Reason: ReasonMalformed, Message: "invalid " + tenant.HeaderName + " header: " + err.Error()}
	}
	return t, nil
}

func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, id *Identity, f *Failure) {
	g.failures.WithLabelValues(f.Reason).Inc()
	src := sourceAddress(r)
	if f.Status == http.StatusUnauthorized {
		g.limiter.fail(src)
	}
	caller := ""
	if id != nil {
		caller = id.Caller
	}
	g.logger.Debug("request refused", "caller", caller, "status", f.Status, "reason", f.Reason, "why", f.Message, "path", r.URL.Path, "source", src)
	if f.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="isobar"`)
	}
	http.Error(w, f.Message, f.Status)
}

// sourceAddress is the request's peer address, without its port.
func sourceAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// InternalTransport returns rt adding the cluster's internal credential
// to each request; rt itself when there is no secret. A nil rt is Go's
// default transport.
func (g *Gate) InternalTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if g.internal == nil {
		return rt
	}
	authz := InternalScheme + " " + string(g.internal)
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", authz)
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
