// Package memcachedtest starts a real memcached for tests, on 127.0.0.1,
// and talks to it directly to check what a client stored.
package memcachedtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/testutil/ports"
)

// RequireEnv, when set, turns a missing memcached binary into a test
// failure instead of a skip (the Makefile sets it).
const RequireEnv = "ISOBAR_REQUIRE_MEMCACHED"

// Server is a memcached process a test started on 127.0.0.1.
type Server struct {
	// Addr is host:port.
	Addr     string
	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
}

// Start starts memcached on a free port of 127.0.0.1 (TCP only)
// and stops it when the test ends. Without the binary it skips the test,
// or fails it if ISOBAR_REQUIRE_MEMCACHED is set.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("memcached not found and %s is set: %v (scripts/install-test-deps.sh installs it)", RequireEnv, err)
		}
		t.Skipf("memcached not found (%v): scripts/install-test-deps.sh installs it; set %s=1 to fail instead of skipping", err, RequireEnv)
	}
	var lastErr error
	for range 3 {
		srv, err := tryStart(t, bin)
		if err == nil {
			t.Cleanup(srv.Stop)
			return srv
		}
		lastErr = err
	}
	t.Fatalf("start memcached: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, bin string) (*Server, error) {
	port := strconv.Itoa(ports.Port(t))

	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "64", "-t", "1"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // memcached refuses root without -u
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	srv := &Server{Addr: net.JoinHostPort("127.0.0.1", port), cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(srv.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", srv.Addr, time.Second)
		if err == nil {
			conn.Close()
			return srv, nil
		}
		select {
		case <-srv.exited:
			return nil, fmt.Errorf("memcached on port %s exited: %s", port, strings.TrimSpace(stderr.String()))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			srv.Stop()
			return nil, fmt.Errorf("memcached on port %s not accepting connections after 10s: %w", port, err)
		}
	}
}

// Stop kills the process, by its PID, and waits for it; later calls do
// nothing.
func (m *Server) Stop() {
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Kill()
		<-m.exited
	})
}

// Pause stops the process (SIGSTOP): it holds its connections and answers
// nothing. Stop kills it anyway.
func (m *Server) Pause(t testing.TB) {
	t.Helper()
	require.NoError(t, m.cmd.Process.Signal(syscall.SIGSTOP))
	// The signal is delivered asynchronously: until the process shows as
	// stopped, it may still answer a request sent after Pause.
	stat := fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(stat)
		if err != nil {
			return false
		}
		// pid (comm) state ...: the state follows the last ')'.
		rest := b[bytes.LastIndexByte(b, ')')+1:]
		return len(bytes.TrimSpace(rest)) > 0 && bytes.TrimSpace(rest)[0] == 'T'
	}, 10*time.Second, time.Millisecond, "memcached never showed as stopped")
}

// Dial opens a raw text-protocol connection.
func (m *Server) Dial(t testing.TB) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", m.Addr, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	return conn, bufio.NewReader(conn)
}

// Set stores value under key, as a client other than the one tested.
func (m *Server) Set(t testing.TB, key string, value []byte) {
	t.Helper()
	conn, r := m.Dial(t)
	defer conn.Close()
	_, err := fmt.Fprintf(conn, "set %s 0 0 %d\r\n%s\r\n", key, len(value), value)
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "STORED\r\n", line)
}

// Get returns the values memcached holds for keys.
func (m *Server) Get(t testing.TB, keys ...string) map[string][]byte {
	t.Helper()
	conn, r := m.Dial(t)
	defer conn.Close()
	out := map[string][]byte{}
	for batch := range slices.Chunk(keys, 50) {
		_, err := fmt.Fprintf(conn, "get %s\r\n", strings.Join(batch, " "))
		require.NoError(t, err)
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			if line == "END\r\n" {
				break
			}
			f := strings.Fields(line)
			require.Len(t, f, 4, "reply %q", line)
			require.Equal(t, "VALUE", f[0])
			n, err := strconv.Atoi(f[3])
			require.NoError(t, err)
			v := make([]byte, n+2)
			_, err = io.ReadFull(r, v)
			require.NoError(t, err)
			out[f[1]] = v[:n]
		}
	}
	return out
}
