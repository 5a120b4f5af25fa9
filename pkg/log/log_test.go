package log

import (
	"bytes"
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
