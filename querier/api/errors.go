package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/prometheus/promql"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

// errorType is the "errorType" field of an error response. The strings are
// the ones Prometheus uses.
type errorType string

const (
	errorTimeout   errorType = "timeout"
	errorCanceled  errorType = "canceled"
	errorExec      errorType = "execution"
	errorBadData   errorType = "bad_data"
	errorInternal  errorType = "internal"
	errorCostLimit errorType = "cost_limit"
	// errorUnavailable: some data could not be read now (ingesters or
	// store-gateways down); retrying later may succeed.
	errorUnavailable errorType = "unavailable"
)

// statusClientClosedConnection is the non-standard status code (introduced
// by nginx) Prometheus answers with when the client went away.
const statusClientClosedConnection = 499

// apiError is an error together with the errorType it is reported as.
type apiError struct {
	typ errorType
	err error
}

// Error implements error.
func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %s", e.typ, e.err)
}

// Unwrap returns the underlying error.
func (e *apiError) Unwrap() error {
	return e.err
}

// statusCode maps an errorType to the HTTP status code Prometheus answers
// with. Types this package never produces ("not_found", "not_acceptable")
// are left out.
func (t errorType) statusCode() int {
	switch t {
	case errorBadData:
		return http.StatusBadRequest
	case errorExec, errorCostLimit:
		return http.StatusUnprocessableEntity
	case errorCanceled:
		return statusClientClosedConnection
	case errorTimeout, errorUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// badData wraps err as a bad_data error.
func badData(err error) *apiError {
	return &apiError{typ: errorBadData, err: err}
}

// invalidParam reports err as an invalid value of parameter, worded as
// Prometheus words it.
func invalidParam(err error, parameter string) *apiError {
	return badData(fmt.Errorf("invalid parameter %q: %w", parameter, err))
}

// queryError maps an error from the engine, a querier or a series set to the
// errorType Prometheus reports it as (returnAPIError in Prometheus).
func queryError(err error) *apiError {
	if err == nil {
		return nil
	}
	var (
		canceled    promql.ErrQueryCanceled
		timeout     promql.ErrQueryTimeout
		tooMany     promql.ErrTooManySeries
		tooManyRead promql.ErrTooManySamplesRead
		storageErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled):
		return &apiError{typ: errorCanceled, err: err}
	case errors.As(err, &timeout):
		return &apiError{typ: errorTimeout, err: err}
	case errors.As(err, &tooMany), errors.As(err, &tooManyRead):
		return &apiError{typ: errorCostLimit, err: err}
	case errors.As(err, &storageErr):
		return &apiError{typ: errorInternal, err: err}
	case errors.Is(err, context.Canceled):
		return &apiError{typ: errorCanceled, err: err}
	case rpc.IsCause(err, rpc.CauseUnavailable):
		return &apiError{typ: errorUnavailable, err: err}
	}
	return &apiError{typ: errorExec, err: err}
}

// constructionError maps an error returned while building a query: a limit
// override above the ceiling is bad data as is, a timeout or cancellation (for
// example while waiting for a query slot) keeps its type, and anything else is
// an invalid "query" parameter.
func constructionError(err error) *apiError {
	var (
		ceiling  promql.ErrLimitAboveCeiling
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
	)
	switch {
	case errors.As(err, &ceiling):
		return badData(err)
	case errors.As(err, &timeout), errors.As(err, &canceled):
		return queryError(err)
	}
	return invalidParam(err, "query")
}
