package ports

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAddrIsUniqueBindableAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addr := Addr(t)
		require.False(t, seen[addr], "%s handed out twice", addr)
		seen[addr] = true
		_, p, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		n, err := strconv.Atoi(p)
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, lowest)
		require.Less(t, n, ephemeralLow())
		l, err := net.Listen("tcp", addr)
		require.NoError(t, err, "a handed-out port must be free to bind")
		require.NoError(t, l.Close())
	}
}

func TestPortSkipsOnesInUse(t *testing.T) {
	p := Port(t)
	// Hold the next port the counter would give; it must be skipped.
	mu.Lock()
	busy := next
	mu.Unlock()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(busy)))
	require.NoError(t, err)
	defer l.Close()
	q := Port(t)
	require.NotEqual(t, busy, q)
	require.NotEqual(t, p, q)
}
