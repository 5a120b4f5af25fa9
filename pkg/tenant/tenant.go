// Package tenant resolves, validates and carries the tenant ID of a request.
//
// Tenant IDs become directory names under the data dir and key prefixes in the
// bucket, so they are validated before anything else touches them.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/grafana/dskit/user"
)

// Anonymous is the tenant every request belongs to when multitenancy is off.
const Anonymous = "anonymous"

// HeaderName carries the tenant ID on HTTP requests.
const HeaderName = "X-Scope-OrgID"

// MaxLength is the longest tenant ID accepted.
const MaxLength = 150

var (
	errEmpty   = errors.New("tenant ID is empty")
	errDots    = errors.New(`tenant ID must not be "." or ".."`)
	errHidden  = errors.New(`tenant ID must not start with ".": the filesystem bucket hides such names (its uploads in flight), so the tenant's blocks would never be compacted, served or deleted`)
	errMissing = errors.New("no tenant ID in request context")
)

// Validate reports whether id can be used as a tenant ID: 1 to MaxLength
// characters from [a-zA-Z0-9!-_.*'()], and never "." or ".." or a name
// beginning with ".".
func Validate(id string) error {
	if id == "" {
		return errEmpty
	}
	if len(id) > MaxLength {
		return fmt.Errorf("tenant ID is %d characters long, more than the limit of %d", len(id), MaxLength)
	}
	if id == "." || id == ".." {
		return errDots
	}
	for i := 0; i < len(id); i++ {
		if !allowed(id[i]) {
			return fmt.Errorf("tenant ID contains unsupported character %q at position %d (allowed: a-z A-Z 0-9 ! - _ . * ' ( ))", rune(id[i]), i)
		}
	}
	if id[0] == '.' {
		return errHidden
	}
	return nil
}

// MaxFederated bounds the tenants one query across tenants names: each is
// asked in turn.
const MaxFederated = 100

// ValidateMany reports whether id names one valid tenant or several,
// a|b|c (a query across tenants, the Cortex convention), each valid.
func ValidateMany(id string) error {
	if !strings.Contains(id, "|") {
		return Validate(id)
	}
	parts := strings.Split(id, "|")
	if len(parts) > MaxFederated {
		return fmt.Errorf("%d tenants in one query, more than the limit of %d", len(parts), MaxFederated)
	}
	for i, p := range parts {
		if err := Validate(p); err != nil {
			return fmt.Errorf("tenant %d of %d: %w", i+1, len(parts), err)
		}
	}
	return nil
}

func allowed(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '-', '_', '.', '*', '\'', '(', ')':
		return true
	}
	return false
}

// With returns a context that carries the tenant ID.
func With(ctx context.Context, id string) context.Context {
	return user.InjectOrgID(ctx, id)
}

// From returns the tenant ID carried by ctx. The ID was validated when it
// entered the process.
func From(ctx context.Context) (string, error) {
	id, err := user.ExtractOrgID(ctx)
	if err != nil || id == "" {
		return "", errMissing
	}
	return id, nil
}

// Middleware puts the request's tenant into its context. With multitenancy
// on, the tenant comes from the X-Scope-OrgID header and a missing or invalid
// one is answered with 401 or 400; with it off, every request belongs to
// Anonymous and the header is ignored.
func Middleware(multitenancy bool, next http.Handler) http.Handler {
	return MiddlewareValidating(multitenancy, func(_ *http.Request, id string) error { return Validate(id) }, next)
}

// MiddlewareValidating is Middleware checking the header with validate.
func MiddlewareValidating(multitenancy bool, validate func(r *http.Request, id string) error, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := Anonymous
		if multitenancy {
			id = r.Header.Get(HeaderName)
			if id == "" {
				http.Error(w, "no tenant ID: set the "+HeaderName+" header (multitenancy is enabled)", http.StatusUnauthorized)
				return
			}
			if err := validate(r, id); err != nil {
				http.Error(w, "invalid "+HeaderName+" header: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(With(r.Context(), id)))
	})
}
