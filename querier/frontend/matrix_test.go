package frontend

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// apiResponse is the envelope of a Prometheus API answer.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

// decodeMatrixReference is the frontend's first decoder, on encoding/json:
// what decodeMatrix must agree with.
func decodeMatrixReference(body []byte) (*matrix, error) {
	var resp apiResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("status %q", resp.Status)
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric     json.RawMessage   `json:"metric"`
			Values     []json.RawMessage `json:"values"`
			Histograms []json.RawMessage `json:"histograms"`
		} `json:"result"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "matrix" {
		return nil, fmt.Errorf("result type %q", data.ResultType)
	}
	m := &matrix{warnings: resp.Warnings, infos: resp.Infos}
	for _, r := range data.Result {
		var lbls map[string]string
		if err := json.Unmarshal(r.Metric, &lbls); err != nil {
			return nil, err
		}
		s := &rawSeries{metric: r.Metric, lset: labels.FromMap(lbls)}
		for _, points := range []struct {
			raw []json.RawMessage
			out *[]rawPoint
		}{{r.Values, &s.values}, {r.Histograms, &s.histograms}} {
			for _, p := range points.raw {
				var pair []json.RawMessage
				if err := json.Unmarshal(p, &pair); err != nil || len(pair) != 2 {
					return nil, fmt.Errorf("point %s", p)
				}
				ts, err := strconv.ParseFloat(string(pair[0]), 64)
				if err != nil {
					return nil, err
				}
				*points.out = append(*points.out, rawPoint{t: int64(math.Round(ts * 1000)), raw: p})
			}
		}
		m.series = append(m.series, s)
	}
	return m, nil
}

const histogramAnswer = `{"status":"success","data":{"resultType":"matrix","result":[` +
	`{"metric":{"__name__":"lb_latency","backend":"a"},"histograms":[[60,{"count":"4","sum":"5","buckets":[[0,"0.7","1","1"]]}],[120.5,{"count":"7","sum":"7","buckets":[]}]]},` +
	`{"metric":{},"values":[[1e3,"NaN"],[1001,"+Inf"]]}]},"warnings":["w1"],"infos":["i1","i2"]}`

func TestDecodeMatrix(t *testing.T) {
	for name, body := range map[string]string{
		"panel":      string(panelAnswer(3, 4)),
		"histograms": histogramAnswer,
		"empty":      `{"status":"success","data":{"resultType":"matrix","result":[]}}`,
		"spaced":     "{ \"status\" : \"success\" , \"data\" : { \"result\" : [ { \"values\" : [ [ 1 , \"2\" ] ] , \"metric\" : { \"a\" : \"b\" } } ] , \"resultType\" : \"matrix\" } }",
		"unknown":    `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\u00e9\"x"},"values":[[1,"2"]],"extra":[1,{"b":null}]}],"stats":{}},"extra":true}`,
	} {
		t.Run(name, func(t *testing.T) {
			want, err := decodeMatrixReference([]byte(body))
			require.NoError(t, err)
			got, err := decodeMatrix([]byte(body))
			require.NoError(t, err)
			requireSameRawMatrix(t, want, got)
			require.Equal(t, want.encode(), got.encode())
		})
	}
	for name, body := range map[string]string{
		"error":            `{"status":"error","errorType":"execution","error":"too many samples"}`,
		"vector":           `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		"not a pair":       `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[{"t":1}]}]}}`,
		"bad timestamp":    `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[["x","1"]]}]}}`,
		"label not string": `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}`,
		"label twice":      `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1","a":"2"},"values":[]}]}}`,
		"cut short":        `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]`,
		"not json":         `<html>bad gateway</html>`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeMatrix([]byte(body))
			require.Error(t, err)
		})
	}
}

func requireSameRawMatrix(t *testing.T, want, got *matrix) {
	t.Helper()
	require.Equal(t, len(want.warnings), len(got.warnings)) // nil or empty: none
	require.Equal(t, len(want.infos), len(got.infos))
	for i := range want.warnings {
		require.Equal(t, want.warnings[i], got.warnings[i])
	}
	for i := range want.infos {
		require.Equal(t, want.infos[i], got.infos[i])
	}
	require.Len(t, got.series, len(want.series))
	for i, w := range want.series {
		g := got.series[i]
		require.Equal(t, string(w.metric), string(g.metric))
		require.True(t, labels.Equal(w.lset, g.lset), "%s != %s", w.lset, g.lset)
		for _, pair := range [][2][]rawPoint{{w.values, g.values}, {w.histograms, g.histograms}} {
			require.Len(t, pair[1], len(pair[0]))
			for j := range pair[0] {
				require.Equal(t, pair[0][j].t, pair[1][j].t)
				require.Equal(t, string(pair[0][j].raw), string(pair[1][j].raw))
			}
		}
	}
}

var (
	exactFieldNames = []string{`"status"`, `"data"`, `"resultType"`, `"result"`, `"metric"`, `"values"`, `"histograms"`, `"warnings"`, `"infos"`, `"errorType"`, `"error"`}
	fieldNames      = regexp.MustCompile(`(?i)"(status|data|resultType|result|metric|values|histograms|warnings|infos|errorType|error)"`)
)

// Whatever a querier (or something posing as one) answers, decodeMatrix
// returns an error or the matrix the encoding/json decoder reads.
func FuzzDecodeMatrix(f *testing.F) {
	f.Add(panelAnswer(2, 3))
	f.Add([]byte(histogramAnswer))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"2"]]}]},"warnings":["x"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeMatrix(body)
		if err != nil {
			return
		}
		if !utf8.Valid(body) {
			return // encoding/json replaces bytes that are not UTF-8; queriers send only UTF-8
		}
		for _, key := range fieldNames.FindAll(body, -1) {
			if !slices.Contains(exactFieldNames, string(key)) {
				return // encoding/json takes "Metric" for "metric"; no querier sends it
			}
		}
		want, err := decodeMatrixReference(body)
		if err != nil {
			return // looser than encoding/json on what no querier sends
		}
		requireSameRawMatrix(t, want, got)
	})
}
