// Package ports hands tests TCP ports on 127.0.0.1 for processes they
// start, when the process cannot pick its own port and report it.
//
// A port found free with a listen on "127.0.0.1:0" and closed again comes
// from the kernel's ephemeral range, which every outgoing connection of the
// machine draws from too: between the close and the child's bind, the port
// can be taken ("bind: address already in use"), or worse, taken by another
// server that the test then talks to. The ports handed out here lie below
// the ephemeral range, so neither outgoing connections nor ":0" listeners
// ever get them, and each is locked (flock, released when the process
// exits) so that test processes running side by side never share one.
package ports

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// lowest is the bottom of the range handed out: above the well-known and
// most registered service ports.
const lowest = 20000

var (
	mu    sync.Mutex
	next  int
	locks []*os.File // held for the life of the test process
)

// Addr returns "127.0.0.1:PORT" with a port that no other caller in any
// test process on this machine gets, and that nothing listened on when it
// was handed out.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}

// Port is Addr's port as a number.
func Port(t testing.TB) int {
	t.Helper()
	p, err := reserve()
	if err != nil {
		t.Fatalf("reserve a TCP port: %v", err)
	}
	return p
}

func reserve() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	hi := ephemeralLow()
	if hi <= lowest+100 {
		return 0, fmt.Errorf("the ephemeral port range starts at %d, leaving no room above %d", hi, lowest)
	}
	span := hi - lowest
	if next == 0 {
		next = lowest + (os.Getpid()*211)%span // processes start apart; the locks settle any overlap
	}
	dir := filepath.Join(os.TempDir(), "isobar-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fmt.Errorf("create lock dir: %w", err)
	}
	for range span {
		p := next
		next++
		if next >= hi {
			next = lowest
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return 0, fmt.Errorf("open port lock: %w", err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			_ = f.Close() // another test process holds it
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			_ = f.Close() // a server outside the tests uses it
			continue
		}
		_ = l.Close()
		locks = append(locks, f)
		return p, nil
	}
	return 0, fmt.Errorf("every port in [%d, %d) is taken", lowest, hi)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return n
}
