// Package rpc holds the contract between Isobar's components: what the
// distributor hands to ingesters, and how failures are classified so that each
// hop maps them to the status a Prometheus sender expects.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/isobar-tsdb/isobar/pkg/rwproto"
)

// Pusher stores a validated remote-write request for the tenant in ctx.
// The request and everything it references is valid only during the call.
type Pusher interface {
	Push(ctx context.Context, req *rwproto.Request) error
}

// Cause classifies an error by whose fault it is and whether a retry helps.
type Cause uint8

// Causes, from the sender's point of view.
const (
	// CauseInternal is our own fault: the sender retries (5xx).
	CauseInternal Cause = iota
	// CauseBadData is the sender's data: retrying never helps (400).
	CauseBadData
	// CauseTenantLimit means the tenant is over a limit (429).
	CauseTenantLimit
	// CauseUnavailable means a dependency is not ready: retry later (503).
	CauseUnavailable
	// CauseDeduplicated means the samples came from a replica of an HA
	// pair that is not the elected one: dropped, and not to be sent again
	// (202).
	CauseDeduplicated
)

// String names the cause in metrics and logs.
func (c Cause) String() string {
	switch c {
	case CauseBadData:
		return "bad_data"
	case CauseTenantLimit:
		return "tenant_limit"
	case CauseUnavailable:
		return "unavailable"
	case CauseDeduplicated:
		return "deduplicated"
	}
	return "internal"
}

// HTTPStatus is the status a remote-write sender gets for the cause.
func (c Cause) HTTPStatus() int {
	switch c {
	case CauseBadData:
		return http.StatusBadRequest
	case CauseTenantLimit:
		return http.StatusTooManyRequests
	case CauseUnavailable:
		return http.StatusServiceUnavailable
	case CauseDeduplicated:
		return http.StatusAccepted
	}
	return http.StatusInternalServerError
}

// Error is an error with a cause.
type Error struct {
	Cause Cause
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an error of the given cause.
func Errorf(cause Cause, format string, args ...any) error {
	return &Error{Cause: cause, Msg: fmt.Sprintf(format, args...)}
}

// CauseOf returns the cause of err; errors without one are internal.
func CauseOf(err error) Cause {
	var e *Error
	if errors.As(err, &e) {
		return e.Cause
	}
	return CauseInternal
}

// IsCause reports whether err wraps an *Error of the cause: unlike
// CauseOf, an error that carries no cause matches none.
func IsCause(err error, c Cause) bool {
	var e *Error
	return errors.As(err, &e) && e.Cause == c
}
