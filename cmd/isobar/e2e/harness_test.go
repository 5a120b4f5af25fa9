//go:build e2e

// Package e2e holds Isobar's end-to-end tests: real isobar processes and a
// real Prometheus, talking HTTP on 127.0.0.1.
//
// Run with `make e2e`, or `go test -tags e2e ./cmd/isobar/e2e/` (which
// builds the binary itself when ISOBAR_BIN is not set).
package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/isobar-tsdb/isobar/pkg/testutil/ports"
)

// isobarBin is the binary under test: $ISOBAR_BIN, or one TestMain built.
var isobarBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	isobarBin = os.Getenv("ISOBAR_BIN")
	if isobarBin == "" {
		dir, err := os.MkdirTemp("", "isobar-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: create temp dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		isobarBin = filepath.Join(dir, "isobar")
		// go test puts $GOROOT/bin first on PATH, so this is the same toolchain.
		cmd := exec.Command("go", "build", "-o", isobarBin, "github.com/isobar-tsdb/isobar/cmd/isobar")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		fmt.Fprintln(os.Stderr, "e2e: ISOBAR_BIN is not set; building", isobarBin)
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/isobar:", err)
			return 1
		}
	}
	if fi, err := os.Stat(isobarBin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		fmt.Fprintf(os.Stderr, "e2e: ISOBAR_BIN=%q is not an executable file (run `make build`): %v\n", isobarBin, err)
		return 1
	}
	return m.Run()
}

// Timeouts of the harness. Every wait in this package is bounded.
const (
	listenTimeout = 20 * time.Second // until a process logs its address
	readyTimeout  = 60 * time.Second // until /ready (WAL replay) or /-/ready
	stopTimeout   = 30 * time.Second // SIGTERM to exit
	killTimeout   = 10 * time.Second // SIGKILL to exit
	pollInterval  = 100 * time.Millisecond
)

// httpClient is for everything but the crash test's writer.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// actionClient is for operator actions: a flush of a week of data writes
// and ships dozens of blocks.
var actionClient = &http.Client{Timeout: 3 * time.Minute}

// proc is one external process that the test started, possibly several
// times (incarnations) with the same arguments. Its output goes to a file per
// incarnation in the test's temp dir; their tails are printed if the test
// fails.
type proc struct {
	t       *testing.T
	name    string
	bin     string
	args    []string
	logDir  string
	logs    []string // one per incarnation
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed once cmd.Wait returned
	waitErr error
}

func newProc(t *testing.T, name, bin string, args []string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: bin, args: args, logDir: t.TempDir()}
	// Cleanups run last-registered first: this one, registered first, prints
	// the logs after the process has been stopped by the one below.
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range p.logs {
				t.Logf("---- last lines of %s ----\n%s", l, tailFile(l, 60))
			}
		}
	})
	t.Cleanup(p.cleanup)
	return p
}

// start starts a new incarnation. The previous one must have exited.
func (p *proc) start() {
	p.t.Helper()
	require.False(p.t, p.running(), "%s: start while the previous incarnation still runs", p.name)
	logPath := filepath.Join(p.logDir, fmt.Sprintf("%s-%d.log", p.name, len(p.logs)+1))
	f, err := os.Create(logPath)
	require.NoError(p.t, err)
	p.logs = append(p.logs, logPath)
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(p.t, cmd.Start(), "%s: start %s %v", p.name, p.bin, p.args)
	p.cmd, p.logFile, p.done, p.waitErr = cmd, f, make(chan struct{}), nil
	done := p.done
	go func() {
		err := cmd.Wait()
		p.waitErr = err // read only after done is closed
		_ = f.Close()
		close(done)
	}()
	p.t.Logf("%s: started pid %d: %s %s (output: %s)", p.name, cmd.Process.Pid, p.bin, strings.Join(p.args, " "), logPath)
}

// running reports whether the current incarnation has not exited. It reads
// the Wait goroutine's channel rather than cmd.ProcessState, which that
// goroutine writes.
func (p *proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is the process ID of the current incarnation.
func (p *proc) PID() int { return p.cmd.Process.Pid }

// signal sends sig to the current incarnation (only to it, by PID) and waits
// up to timeout for it to exit. It reports whether it exited.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) bool {
	if !p.running() {
		return true
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Logf("%s: send %v to pid %d: %v", p.name, sig, p.PID(), err)
	}
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// exitCode is the exit code of the exited current incarnation; -1 when a
// signal ended it.
func (p *proc) exitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) cleanup() {
	if !p.running() {
		return
	}
	if p.signal(syscall.SIGTERM, 15*time.Second) {
		return
	}
	p.t.Logf("%s: pid %d ignored SIGTERM for 15s; sending SIGKILL", p.name, p.PID())
	if !p.signal(syscall.SIGKILL, killTimeout) {
		p.t.Errorf("%s: pid %d did not exit after SIGKILL", p.name, p.PID())
	}
}

// currentLog is the output of the current incarnation so far.
func (p *proc) currentLog() string {
	b, _ := os.ReadFile(p.logs[len(p.logs)-1])
	return string(b)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tailLines(string(b), n)
}

// tailLines is the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitFor calls f until it returns nil, failing the test with f's last error
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(pollInterval)
	}
}

// httpGet GETs url with header and returns the status and body.
func httpGet(url string, header http.Header) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// ---- isobar ----

// isobar is a running isobar process (-target=all).
type isobar struct {
	*proc
	// URL is http://127.0.0.1:PORT of the current incarnation; the port
	// changes on Restart.
	URL     string
	DataDir string
}

var listenRE = regexp.MustCompile(`msg="HTTP server listening".*\baddr=(127\.0\.0\.1:\d+)`)

// startIsobar starts isobar on dataDir, listening on a free port of
// 127.0.0.1, and waits until /ready answers 200.
func startIsobar(t *testing.T, dataDir string, extraFlags ...string) *isobar {
	t.Helper()
	args := append([]string{
		"-server.http-listen-address=127.0.0.1",
		"-server.http-listen-port=0",
		"-server.grpc-listen-port=0",
		"-data.dir=" + dataDir,
	}, extraFlags...)
	i := &isobar{proc: newProc(t, "isobar", isobarBin, args), DataDir: dataDir}
	i.launch()
	return i
}

func (i *isobar) launch() {
	t := i.t
	t.Helper()
	i.start()
	var addr string
	waitFor(t, listenTimeout, "isobar to log its listen address", func() error {
		if m := listenRE.FindStringSubmatch(i.currentLog()); m != nil {
			addr = m[1]
			return nil
		}
		if !i.running() {
			t.Fatalf("isobar exited before listening (%v):\n%s", i.waitErr, i.currentLog())
		}
		return errors.New(`no line msg="HTTP server listening" addr=... in its output yet`)
	})
	i.URL = "http://" + addr
	i.waitReady()
}

// waitReady waits until /ready answers 200: every module runs, the WAL has
// been replayed.
func (i *isobar) waitReady() {
	i.t.Helper()
	waitFor(i.t, readyTimeout, "isobar /ready to answer 200", func() error {
		if !i.running() {
			i.t.Fatalf("isobar exited while starting (%v):\n%s", i.waitErr, i.currentLog())
		}
		code, body, err := httpGet(i.URL+"/ready", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/ready: %d %s", code, strings.TrimSpace(body))
		}
		return nil
	})
}

// Kill9 sends SIGKILL to the process and waits for it to exit.
func (i *isobar) Kill9() {
	i.t.Helper()
	require.True(i.t, i.running(), "Kill9: isobar is not running")
	require.True(i.t, i.signal(syscall.SIGKILL, killTimeout), "isobar pid %d did not exit after SIGKILL", i.PID())
}

// Stop sends SIGTERM, waits up to 30s for the process to exit (failing the
// test if it does not) and returns its exit code.
func (i *isobar) Stop() int {
	i.t.Helper()
	require.True(i.t, i.running(), "Stop: isobar is not running")
	start := time.Now()
	if !i.signal(syscall.SIGTERM, stopTimeout) {
		i.t.Fatalf("isobar pid %d did not exit within %s of SIGTERM", i.PID(), stopTimeout)
	}
	i.t.Logf("isobar pid %d exited %s after SIGTERM", i.PID(), time.Since(start).Round(time.Millisecond))
	return i.exitCode()
}

// Restart starts the process again with the same flags and data dir (after
// Stop or Kill9) and waits until it is ready. URL changes.
func (i *isobar) Restart() {
	i.t.Helper()
	require.False(i.t, i.running(), "Restart: stop or kill isobar first")
	i.launch()
}

// ---- prometheus ----

// prometheus is a running Prometheus server.
type prometheus struct {
	*proc
	URL  string
	Addr string
}

// promAddrPlaceholder in the configuration passed to startPrometheus is
// replaced by the address Prometheus listens on (to scrape itself).
const promAddrPlaceholder = "{{PROMETHEUS_ADDR}}"

// startPrometheus starts the system's Prometheus with configYAML on a free
// port of 127.0.0.1 and a TSDB in a temp dir, and waits for /-/ready.
func startPrometheus(t *testing.T, configYAML string, extraFlags ...string) *prometheus {
	t.Helper()
	return startPrometheusBin(t, prometheusBin(t), configYAML, extraFlags...)
}

// startPrometheusBin is startPrometheus with the Prometheus binary bin.
func startPrometheusBin(t *testing.T, bin, configYAML string, extraFlags ...string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	// The port is free when chosen but may be taken before Prometheus binds
	// it: retry with another port in that case.
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		cfgPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.yml", attempt))
		cfg := strings.ReplaceAll(configYAML, promAddrPlaceholder, addr)
		require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
		args := append([]string{
			"--config.file=" + cfgPath,
			"--storage.tsdb.path=" + filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address=" + addr,
			// Do not hang on shutdown retrying sends to a stopped isobar.
			"--storage.remote.flush-deadline=5s",
		}, extraFlags...)
		p := &prometheus{proc: newProc(t, "prometheus", bin, args), Addr: addr, URL: "http://" + addr}
		p.start()
		err := p.waitReady()
		if err == nil {
			return p
		}
		if !p.running() && strings.Contains(p.currentLog(), "address already in use") && attempt < 3 {
			t.Logf("prometheus: port of %s was taken meanwhile; retrying", addr)
			continue
		}
		t.Fatalf("prometheus did not become ready: %v\n%s", err, tailFile(p.logs[len(p.logs)-1], 40))
	}
}

func (p *prometheus) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if !p.running() {
			return fmt.Errorf("prometheus exited: %v", p.waitErr)
		}
		code, _, err := httpGet(p.URL+"/-/ready", nil)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/-/ready after %s: status %d, err %v", readyTimeout, code, err)
		}
		time.Sleep(pollInterval)
	}
}

// prometheusBin finds the prometheus binary or fails the test (never skips
// it: a missing peer must not look like a pass).
func prometheusBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not on PATH (%v): the end-to-end tests need Debian's Prometheus; run `make test-deps` (scripts/install-test-deps.sh)", err)
	}
	return bin
}

// prometheus3Bin finds the Prometheus 3 that scripts/install-test-deps.sh
// builds from the prometheus module (Debian's is 2.42, without remote write
// 2.0), or fails the test.
func prometheus3Bin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("ISOBAR_PROMETHEUS3")
	if bin == "" {
		bin = "prometheus3"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("no Prometheus 3 at ISOBAR_PROMETHEUS3 or prometheus3 on PATH (%v): the remote write 2.0 tests need it; run `make test-deps` (scripts/install-test-deps.sh)", err)
	}
	return path
}

// freeAddr returns 127.0.0.1:PORT for a process that cannot pick its own
// port: one no other test gets and no outgoing connection can take (see
// package ports).
func freeAddr(t *testing.T) string {
	t.Helper()
	return ports.Addr(t)
}

// logLines returns the lines of s that contain every one of subs.
func logLines(s string, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewBufferString(s))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		for _, sub := range subs {
			if !strings.Contains(sc.Text(), sub) {
				continue lines
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// syncSlice is a slice appended to by one goroutine and read by another.
type syncSlice[T any] struct {
	mu sync.Mutex
	s  []T
}

func (s *syncSlice[T]) add(v T) {
	s.mu.Lock()
	s.s = append(s.s, v)
	s.mu.Unlock()
}

func (s *syncSlice[T]) snapshot() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]T(nil), s.s...)
}
