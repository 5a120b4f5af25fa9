package limits

import (
	"flag"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func defaults(t *testing.T) Limits {
	var l Limits
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	l.RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	return l
}

func TestOverrides(t *testing.T) {
	var tenants map[string]yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(`
team-a:
  ingestion_rate: 50
  out_of_order_time_window: 1h
team-b: {}
`), &tenants))

	d := defaults(t)
	o, err := NewOverrides(d, tenants)
	require.NoError(t, err)

	a := o.For("team-a")
	require.InDelta(t, 50.0, a.IngestionRate, 0)
	require.Equal(t, model.Duration(time.Hour), a.OutOfOrderTimeWindow)
	require.Equal(t, d.MaxLabelNamesPerSeries, a.MaxLabelNamesPerSeries, "unset fields keep the default")
	require.Equal(t, d, *o.For("team-b"))
	require.Equal(t, d, *o.For("unknown"))
}

func TestOverridesRejectsBadLimits(t *testing.T) {
	for name, doc := range map[string]string{
		"negative rate": "t: {ingestion_rate: -1}",
		"unknown field": "t: {ingestion_rat: 5}",
	} {
		t.Run(name, func(t *testing.T) {
			var tenants map[string]yaml.Node
			require.NoError(t, yaml.Unmarshal([]byte(doc), &tenants))
			_, err := NewOverrides(defaults(t), tenants)
			require.ErrorContains(t, err, `tenant "t"`)
		})
	}
}
