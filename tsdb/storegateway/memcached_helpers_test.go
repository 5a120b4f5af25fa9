package storegateway

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

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/testutil/ports"
)

// requireMemcachedEnv, when set, turns a missing memcached binary into a
// test failure instead of a skip (the Makefile sets it).
const requireMemcachedEnv = "ISOBAR_REQUIRE_MEMCACHED"

// memcachedServer is a memcached process a test started on 127.0.0.1.
type memcachedServer struct {
	addr     string
	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
}

// startMemcached starts memcached on a free port of 127.0.0.1 (TCP only)
// and stops it when the test ends. Without the binary it skips the test,
// or fails it if ISOBAR_REQUIRE_MEMCACHED is set.
func startMemcached(t testing.TB) *memcachedServer {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		if os.Getenv(requireMemcachedEnv) != "" {
			t.Fatalf("memcached not found and %s is set: %v (scripts/install-test-deps.sh installs it)", requireMemcachedEnv, err)
		}
		t.Skipf("memcached not found (%v): scripts/install-test-deps.sh installs it; set %s=1 to fail instead of skipping", err, requireMemcachedEnv)
	}
	var lastErr error
	for range 3 {
		srv, err := tryStartMemcached(t, bin)
		if err == nil {
			t.Cleanup(srv.stop)
			return srv
		}
		lastErr = err
	}
	t.Fatalf("start memcached: %v", lastErr)
	return nil
}

func tryStartMemcached(t testing.TB, bin string) (*memcachedServer, error) {
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
	srv := &memcachedServer{addr: net.JoinHostPort("127.0.0.1", port), cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(srv.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", srv.addr, time.Second)
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
			srv.stop()
			return nil, fmt.Errorf("memcached on port %s not accepting connections after 10s: %w", port, err)
		}
	}
}

// stop kills the process, by its PID, and waits for it; later calls do
// nothing.
func (m *memcachedServer) stop() {
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Kill()
		<-m.exited
	})
}

// pause stops the process (SIGSTOP): it holds its connections and answers
// nothing. stop kills it anyway.
func (m *memcachedServer) pause(t testing.TB) {
	t.Helper()
	require.NoError(t, m.cmd.Process.Signal(syscall.SIGSTOP))
}

// dial opens a raw text-protocol connection.
func (m *memcachedServer) dial(t testing.TB) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", m.addr, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	return conn, bufio.NewReader(conn)
}

// set stores value under key, bypassing the store-gateway.
func (m *memcachedServer) set(t testing.TB, key string, value []byte) {
	t.Helper()
	conn, r := m.dial(t)
	defer conn.Close()
	_, err := fmt.Fprintf(conn, "set %s 0 0 %d\r\n%s\r\n", key, len(value), value)
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "STORED\r\n", line)
}

// get returns the values memcached holds for keys.
func (m *memcachedServer) get(t testing.TB, keys ...string) map[string][]byte {
	t.Helper()
	conn, r := m.dial(t)
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

// recordingCache records the memcached keys of the chunks stored through
// it.
type recordingCache struct {
	chunkCache
	mu   sync.Mutex
	keys map[string]bool
}

func (r *recordingCache) SetMultiAsync(tenantID string, block ulid.ULID, chunks []cachedChunk) {
	prefix := chunkKeyPrefix(tenantID, block)
	r.mu.Lock()
	for _, ch := range chunks {
		r.keys[chunkKey(prefix, ch.ref)] = true
	}
	r.mu.Unlock()
	r.chunkCache.SetMultiAsync(tenantID, block, chunks)
}

// stored returns the keys stored so far, sorted.
func (r *recordingCache) stored() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.keys))
	for k := range r.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// record makes sg's cache record the keys it stores.
func record(sg *StoreGateway) *recordingCache {
	r := &recordingCache{chunkCache: sg.cache, keys: map[string]bool{}}
	sg.cache = r
	return r
}

// waitStored waits until memcached holds every key: stores are async.
func waitStored(t testing.TB, srv *memcachedServer, keys []string) {
	t.Helper()
	require.NotEmpty(t, keys)
	require.Eventually(t, func() bool { return len(srv.get(t, keys...)) == len(keys) }, 10*time.Second, 10*time.Millisecond,
		"memcached holds all %d chunks stored", len(keys))
}

// memcachedTestConfig is the default configuration with the memcached
// chunk cache on srv.
func memcachedTestConfig(t testing.TB, dir string, srv *memcachedServer) Config {
	t.Helper()
	cfg := testConfig(t, dir)
	cfg.ChunkCache.Backend = ChunkCacheMemcached
	cfg.ChunkCache.Memcached.Addresses = []string{srv.addr}
	return cfg
}
