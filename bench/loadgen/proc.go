package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

const (
	// defaultClockTicks is USER_HZ, the unit of the CPU times in
	// /proc/<pid>/stat; Linux fixes it at 100 on all common architectures.
	defaultClockTicks = 100
	// atClockTick is the auxiliary vector key of the kernel-provided
	// CLK_TCK (what getconf CLK_TCK prints).
	atClockTick = 17
)

// procStats is a point-in-time reading of a process' resource usage.
type procStats struct {
	cpuSeconds float64 // user + system
	rssBytes   int64
}

// procReader reads /proc for one process.
type procReader struct {
	root       string // normally "/proc"
	pid        int
	clockTicks int
}

func newProcReader(root string, pid int) *procReader {
	return &procReader{root: root, pid: pid, clockTicks: clockTicks(root)}
}

// clockTicks returns CLK_TCK from the auxiliary vector of this process, or
// 100 if it cannot be read.
func clockTicks(root string) int {
	auxv, err := os.ReadFile(root + "/self/auxv")
	if err != nil {
		return defaultClockTicks
	}
	for ; len(auxv) >= 16; auxv = auxv[16:] {
		key := binary.NativeEndian.Uint64(auxv)
		if key == atClockTick {
			if v := binary.NativeEndian.Uint64(auxv[8:]); v > 0 && v < 1e6 {
				return int(v)
			}
			return defaultClockTicks
		}
		if key == 0 {
			break
		}
	}
	return defaultClockTicks
}

// read returns the current CPU time and resident set size of the process.
func (p *procReader) read() (procStats, error) {
	cpu, err := p.cpuSeconds()
	if err != nil {
		return procStats{}, err
	}
	rss, err := p.rssBytes()
	if err != nil {
		return procStats{}, err
	}
	return procStats{cpuSeconds: cpu, rssBytes: rss}, nil
}

// cpuSeconds returns utime+stime from /proc/<pid>/stat in seconds.
func (p *procReader) cpuSeconds() (float64, error) {
	path := fmt.Sprintf("%s/%d/stat", p.root, p.pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read /proc stat: %w", err)
	}
	// The command name (field 2) is in parentheses and may contain spaces
	// and parentheses: fields are counted after the last ')'.
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("parse %s: no command name", path)
	}
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("parse %s: %d fields", path, len(fields))
	}
	utime, err := strconv.ParseUint(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s utime: %w", path, err)
	}
	stime, err := strconv.ParseUint(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s stime: %w", path, err)
	}
	return float64(utime+stime) / float64(p.clockTicks), nil
}

// rssBytes returns VmRSS from /proc/<pid>/status in bytes.
func (p *procReader) rssBytes() (int64, error) {
	path := fmt.Sprintf("%s/%d/status", p.root, p.pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read /proc status: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse %s: unexpected VmRSS line %q", path, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s VmRSS: %w", path, err)
		}
		return kb * 1024, nil
	}
	// Zombies and kernel threads have no VmRSS line.
	return 0, fmt.Errorf("parse %s: no VmRSS line", path)
}
