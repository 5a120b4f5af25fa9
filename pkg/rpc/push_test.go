package rpc

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCauseSurvivesGRPC(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		wantCode  codes.Code
		wantCause Cause
	}{
		{name: "bad data", err: Errorf(CauseBadData, "bad label"), wantCode: codes.InvalidArgument, wantCause: CauseBadData},
		{name: "limit", err: Errorf(CauseTenantLimit, "too fast"), wantCode: codes.ResourceExhausted, wantCause: CauseTenantLimit},
		{name: "unavailable", err: Errorf(CauseUnavailable, "replaying"), wantCode: codes.Unavailable, wantCause: CauseUnavailable},
		{name: "plain error is internal", err: errors.New("disk full"), wantCode: codes.Internal, wantCause: CauseInternal},
		{name: "deadline is retryable", err: status.Error(codes.DeadlineExceeded, "slow"), wantCode: codes.DeadlineExceeded, wantCause: CauseUnavailable},
		{name: "canceled context", err: context.Canceled, wantCode: codes.Internal, wantCause: CauseInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := ToStatus(tc.err)
			require.Equal(t, tc.wantCode, status.Code(st))
			back := FromStatus(st)
			require.Equal(t, tc.wantCause, CauseOf(back))
			require.Contains(t, back.Error(), status.Convert(st).Message())
		})
	}
	require.NoError(t, ToStatus(nil))
	require.NoError(t, FromStatus(nil))
	require.Equal(t, CauseUnavailable, CauseOf(FromStatus(errors.New("connection refused"))), "a non-gRPC failure means the ingester was not reached")
}

func TestRawCodec(t *testing.T) {
	c := rawCodec{}
	out, err := c.Marshal(&PushRequest{Body: []byte("abc")})
	require.NoError(t, err)
	var in PushRequest
	require.NoError(t, c.Unmarshal(out, &in))
	require.Equal(t, []byte("abc"), in.Body)
	in.buf.Free()
	_, err = c.Marshal("not a push")
	require.Error(t, err)
	require.Error(t, c.Unmarshal(out, new(int)))
}
