package log

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/go-kit/log/level"
	"github.com/stretchr/testify/require"
)

func TestGoKitAdapter(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{Level: "info", Format: "logfmt"}, &buf)
	require.NoError(t, err)
	kl := GoKit(l)

	require.NoError(t, level.Debug(kl).Log("msg", "hidden"))
	require.NoError(t, level.Warn(kl).Log("msg", "ring changed", "instances", 3))
	out := buf.String()
	require.NotContains(t, out, "hidden")
	require.Contains(t, out, "level=WARN")
	require.Contains(t, out, `msg="ring changed"`)
	require.Contains(t, out, "instances=3")

	buf.Reset()
	require.NoError(t, level.Error(kl).Log("msg", "failed", "err", stackError{}))
	require.Contains(t, buf.String(), `err="write: disk full"`+"\n", "an error's message, without a stack trace")
}

// stackError prints a stack trace with %+v, as pkg/errors' errors do.
type stackError struct{}

func (stackError) Error() string { return "write: disk full" }
func (stackError) Format(s fmt.State, _ rune) {
	_, _ = io.WriteString(s, "write: disk full\nmain.write\n\t/src/main.go:12")
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg     Config
		wantErr bool
	}{
		{cfg: Config{Level: "debug", Format: "json"}},
		{cfg: Config{Level: "loud", Format: "json"}, wantErr: true},
		{cfg: Config{Level: "info", Format: "xml"}, wantErr: true},
	} {
		err := tc.cfg.Validate()
		require.Equal(t, tc.wantErr, err != nil, "%+v: %v", tc.cfg, err)
	}
}
