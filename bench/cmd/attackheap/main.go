// Command attackheap sends an isobar process the hostile writes of the
// hardening issue, one at a time, and reports for each the process's peak
// Go heap above what it held before (go_memstats_heap_inuse_bytes, read
// from /metrics every 5 ms while the attack runs and for half a second
// after), its answer, and whether the process still answers /ready.
//
//	attackheap -url http://127.0.0.1:9009
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

func main() {
	fs := flag.NewFlagSet("attackheap", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:9009", "base URL of the isobar process (the only address contacted)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	for _, a := range attacks() {
		peak, answer, err := measure(*base, a.run)
		ready := get(*base+"/ready") == nil
		if err != nil {
			answer = err.Error()
		}
		fmt.Printf("%-58s peak heap +%7.1f MiB  answer: %-40.40s  ready after: %t\n", a.name, float64(peak)/(1<<20), answer, ready)
	}
}

type attack struct {
	name string
	run  func(base string) (string, error)
}

func attacks() []attack {
	return []attack{
		{"250,000 empty native histograms in one series (snappy)", func(base string) (string, error) {
			ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "attack_histograms"}}, Histograms: make([]prompb.Histogram, 250_000)}
			return push(base, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}})
		}},
		{"250,000 empty metadata entries (snappy)", func(base string) (string, error) {
			return push(base, &prompb.WriteRequest{Metadata: make([]prompb.MetricMetadata, 250_000)})
		}},
		{"6-byte snappy body whose header claims 100 MB", func(base string) (string, error) {
			body := append(appendUvarint(nil, 100<<20), 0, 0)
			return post(base, bytes.NewReader(body), int64(len(body)))
		}},
		{"3 connections declaring Content-Length 100 MB, sending 10 B", func(base string) (string, error) {
			u, err := url.Parse(base)
			if err != nil {
				return "", err
			}
			var wg sync.WaitGroup
			var answer atomic.Value
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
					if err != nil {
						answer.Store(err.Error())
						return
					}
					defer c.Close()
					fmt.Fprintf(c, "POST /api/v1/push HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %d\r\n\r\n0123456789", u.Host, 100<<20)
					time.Sleep(2 * time.Second) // hold the connection, as a slow client would
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					line, _ := bufio.NewReader(c).ReadString('\n')
					answer.Store(strings.TrimSpace(line))
				}()
			}
			wg.Wait()
			s, _ := answer.Load().(string)
			if s == "" {
				s = "no answer within 3 s"
			}
			return s, nil
		}},
	}
}

// measure runs attack while it samples the heap.
func measure(base string, attack func(string) (string, error)) (peak uint64, answer string, err error) {
	before, err := heapInuse(base)
	if err != nil {
		return 0, "", err
	}
	done := make(chan struct{})
	var max atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		stopAt := time.Time{}
		for {
			if h, err := heapInuse(base); err == nil && h > before && h-before > max.Load() {
				max.Store(h - before)
			}
			select {
			case <-done:
				if stopAt.IsZero() {
					stopAt = time.Now().Add(500 * time.Millisecond)
				}
			default:
			}
			if !stopAt.IsZero() && time.Now().After(stopAt) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	answer, err = attack(base)
	close(done)
	wg.Wait()
	return max.Load(), answer, err
}

var client = &http.Client{Timeout: 30 * time.Second}

func heapInuse(base string) (uint64, error) {
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return uint64(f), err
		}
	}
	return 0, errors.New("no go_memstats_heap_inuse_bytes in /metrics")
}

func push(base string, req *prompb.WriteRequest) (string, error) {
	raw, err := req.Marshal()
	if err != nil {
		return "", err
	}
	body := snappy.Encode(nil, raw)
	return post(base, bytes.NewReader(body), int64(len(body)))
}

func post(base string, body io.Reader, n int64) (string, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/push", body)
	if err != nil {
		return "", err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(msg))), nil
}

func get(u string) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
