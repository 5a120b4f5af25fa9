package rpc

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/prometheus/prompb"
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
		// gRPC's own answer to a message over its size limit is no tenant
		// limit: a sender would retry a 429 forever.
		{name: "message over gRPC's limit is internal", err: status.Error(codes.ResourceExhausted, "grpc: received message larger than max (6238984 vs. 4194304)"), wantCode: codes.ResourceExhausted, wantCause: CauseInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := ToStatus(tc.err)
			require.Equal(t, tc.wantCode, status.Code(st))
			back := FromStatus(st)
			require.Equal(t, tc.wantCause, CauseOf(back))
			require.Contains(t, back.Error(), status.Convert(st).Message())
		})
	}
	require.Contains(t, FromStatus(status.Error(codes.ResourceExhausted, "grpc: received message larger than max")).Error(), "-server.grpc-max-send-msg-size-bytes")
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

	// Segments travel as one body, in order.
	out, err = c.Marshal(&PushRequest{Segments: [][]byte{[]byte("ab"), []byte("c"), []byte("def")}})
	require.NoError(t, err)
	require.NoError(t, c.Unmarshal(out, &in))
	require.Equal(t, []byte("abcdef"), in.Body)
	in.buf.Free()

	_, err = c.Marshal("not a push")
	require.Error(t, err)
	require.Error(t, c.Unmarshal(out, new(int)))
}

func TestLabelsMessagesRoundTrip(t *testing.T) {
	req := &LabelsRequest{Start: -5, End: 1_700_000_000_000, Name: "instance", Limit: 7,
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "job", Value: "node|libvirt"}}}
	b, err := req.Marshal()
	require.NoError(t, err)
	var got LabelsRequest
	require.NoError(t, got.Unmarshal(b))
	require.Equal(t, *req, got)

	resp := &LabelsResponse{Values: []string{"a", "", "ü"}}
	b, err = resp.Marshal()
	require.NoError(t, err)
	var gotResp LabelsResponse
	require.NoError(t, gotResp.Unmarshal(b))
	require.Equal(t, resp.Values, gotResp.Values)
	require.Error(t, got.Unmarshal([]byte{0x0a, 0x7f}), "truncated input is an error")
}
