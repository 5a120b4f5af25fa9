package frontend

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// BenchmarkSevenDayRangeQuery asks for a 7-day dashboard panel over 200
// series (one point a minute) through the frontend with a cold cache (a
// new frontend each time: split into 7 days run in parallel) and with a
// warm one, next to the querier alone.
//
//	go test ./querier/frontend -run '^$' -bench SevenDay -count 6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkSevenDayRangeQuery(b *testing.B) {
	var data strings.Builder
	data.WriteString("load 1m\n")
	for i := range 200 {
		fmt.Fprintf(&data, "  node_cpu_seconds_total{instance=\"cmp-%03d\",az=\"az-%d\"} 0+%dx10080\n", i, i%3, i%7+1)
	}
	querier, frontend, _, f := querierAndFrontend(b, data.String(), testConfig())
	f.now = func() time.Time { return time.Unix(1e9, 0) }
	params := url.Values{"query": {`sum by (az) (rate(node_cpu_seconds_total[5m]))`}, "start": {"0"}, "end": {"604800"}, "step": {"300"}}
	run := func(b *testing.B, h http.Handler) {
		if code, body := get(b, h, "/api/v1/query_range", params); code != http.StatusOK {
			b.Fatalf("%d: %s", code, body)
		}
	}
	b.Run("querier", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			run(b, querier)
		}
	})
	b.Run("cache=cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f.cache = newMemoryCache(64 << 20)
			run(b, frontend)
		}
	})
	b.Run("cache=warm", func(b *testing.B) {
		run(b, frontend)
		b.ReportAllocs()
		for b.Loop() {
			run(b, frontend)
		}
	})
}

// BenchmarkDecodeMatrix decodes a querier's range answer as the frontend
// does for every piece it fetches: 220 series (a per-project panel) of 121
// points (an hour at 30s).
func BenchmarkDecodeMatrix(b *testing.B) {
	body := panelAnswer(220, 121)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeMatrix(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(220*121*b.N)/b.Elapsed().Seconds(), "points/s")
}

// panelAnswer is a query_range answer of series × points, as a querier
// encodes it.
func panelAnswer(series, points int) []byte {
	var b strings.Builder
	b.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for i := range series {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"project_id":"%032x","region":"region-one"},"values":[`, i)
		for j := range points {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `[%d.5,"%g"]`, 1796131440+30*j, float64(i*j)/7)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}
