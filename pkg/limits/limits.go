// Package limits holds the per-tenant limits and the overrides that set them
// tenant by tenant. Every limit's message names the flag that raises it.
package limits

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/flagext"
	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
	"gopkg.in/yaml.v3"
)

// Limits are the knobs that may differ between tenants.
type Limits struct {
	IngestionRate          float64        `yaml:"ingestion_rate"`
	IngestionBurstSize     int            `yaml:"ingestion_burst_size"`
	MaxLabelNamesPerSeries int            `yaml:"max_label_names_per_series"`
	MaxLabelNameLength     int            `yaml:"max_label_name_length"`
	MaxLabelValueLength    int            `yaml:"max_label_value_length"`
	MaxMetadataLength      int            `yaml:"max_metadata_length"`
	CreationGracePeriod    model.Duration `yaml:"creation_grace_period"`
	PastGracePeriod        model.Duration `yaml:"past_grace_period"`
	MaxSeriesPerTenant     int            `yaml:"max_series_per_tenant"`
	MaxSeriesPerMetric     int            `yaml:"max_series_per_metric"`
	OutOfOrderTimeWindow   model.Duration `yaml:"out_of_order_time_window"`
	MaxExemplars           int            `yaml:"max_exemplars"`
	MaxMetadataFamilies    int            `yaml:"max_metadata_families_per_tenant"`
	NameValidationScheme   string         `yaml:"name_validation_scheme"`

	// HA pairs: with -distributor.ha-tracker.enable, the series carrying
	// both labels are kept from each cluster's elected replica only.
	AcceptHASamples bool   `yaml:"accept_ha_samples"`
	HAClusterLabel  string `yaml:"ha_cluster_label"`
	HAReplicaLabel  string `yaml:"ha_replica_label"`
	HAMaxClusters   int    `yaml:"ha_max_clusters"`

	// OTLP: how OpenTelemetry metrics become series (Prometheus' OTLP
	// settings, per tenant).
	OTLPPromoteResourceAttributes         flagext.StringSliceCSV `yaml:"otlp_promote_resource_attributes"`
	OTLPKeepIdentifyingResourceAttributes bool                   `yaml:"otlp_keep_identifying_resource_attributes"`
	OTLPTranslationStrategy               string                 `yaml:"otlp_translation_strategy"`
	OTLPConvertHistogramsToNHCB           bool                   `yaml:"otlp_convert_histograms_to_nhcb"`
	OTLPDisableTargetInfo                 bool                   `yaml:"otlp_disable_target_info"`
	OTLPAcceptDeltaTemporality            bool                   `yaml:"otlp_accept_delta_temporality"`

	// Query limits: what one query may fetch and span.
	MaxFetchedSeriesPerQuery     int            `yaml:"max_fetched_series_per_query"`
	MaxFetchedChunksPerQuery     int            `yaml:"max_fetched_chunks_per_query"`
	MaxFetchedChunkBytesPerQuery int            `yaml:"max_fetched_chunk_bytes_per_query"`
	MaxQueryLength               model.Duration `yaml:"max_query_length"`
	MaxQueryLookback             model.Duration `yaml:"max_query_lookback"`
	QueryShardingTotalShards     int            `yaml:"query_sharding_total_shards"`

	// Ruler limits.
	RulerMaxRuleGroupsPerTenant int               `yaml:"ruler_max_rule_groups_per_tenant"`
	RulerMaxRulesPerRuleGroup   int               `yaml:"ruler_max_rules_per_rule_group"`
	RulerMinEvaluationInterval  model.Duration    `yaml:"ruler_min_evaluation_interval"`
	RulerQueryOffset            model.Duration    `yaml:"ruler_query_offset"`
	RulerExternalLabels         map[string]string `yaml:"ruler_external_labels,omitempty"`
}

// RegisterFlags registers the defaults of every limit.
func (l *Limits) RegisterFlags(f *flag.FlagSet) {
	f.Float64Var(&l.IngestionRate, "distributor.ingestion-rate-limit", 1_000_000, "Per-tenant ingestion rate limit in samples per second.")
	f.IntVar(&l.IngestionBurstSize, "distributor.ingestion-burst-size", 2_000_000, "Per-tenant number of samples that may be ingested at once above the rate limit.")
	f.IntVar(&l.MaxLabelNamesPerSeries, "validation.max-label-names-per-series", 30, "Maximum number of labels a series may have.")
	f.IntVar(&l.MaxLabelNameLength, "validation.max-length-label-name", 1024, "Maximum length of a label name in bytes.")
	f.IntVar(&l.MaxLabelValueLength, "validation.max-length-label-value", 2048, "Maximum length of a label value in bytes.")
	f.IntVar(&l.MaxMetadataLength, "validation.max-metadata-length", 1024, "Maximum length of a metric family name, help or unit in bytes.")
	l.CreationGracePeriod = model.Duration(10 * time.Minute)
	f.Var(&l.CreationGracePeriod, "validation.create-grace-period", "How far in the future a sample's timestamp may be.")
	l.PastGracePeriod = model.Duration(30 * 24 * time.Hour)
	f.Var(&l.PastGracePeriod, "validation.past-grace-period", "How far in the past a sample's timestamp may be; older samples, histograms and exemplars are refused. 0 means no limit (a tenant's first sample then sets where its ingesters' heads start).")
	f.IntVar(&l.MaxSeriesPerTenant, "ingester.max-series-per-tenant", 5_000_000, "Maximum number of active series of a tenant per ingester. 0 means no limit.")
	f.IntVar(&l.MaxSeriesPerMetric, "ingester.max-series-per-metric", 0, "Maximum number of active series of one metric name per tenant per ingester. 0 means no limit.")
	f.Var(&l.OutOfOrderTimeWindow, "ingester.out-of-order-time-window", "How far behind a series' newest sample an out-of-order sample may be and still be accepted. 0 rejects out-of-order samples.")
	f.StringVar(&l.NameValidationScheme, "validation.name-validation-scheme", "legacy", "Which metric and label names are valid: legacy ([a-zA-Z_:][a-zA-Z0-9_:]*) or utf8 (any UTF-8).")
	f.BoolVar(&l.AcceptHASamples, "distributor.ha-tracker.accept-ha-samples", true, "With -distributor.ha-tracker.enable, deduplicate the tenant's HA pairs; false stores every replica's samples as sent.")
	f.StringVar(&l.HAClusterLabel, "distributor.ha-tracker.cluster-label", "cluster", "Label naming the HA cluster (the pair) a series comes from; it is kept.")
	f.StringVar(&l.HAReplicaLabel, "distributor.ha-tracker.replica-label", "__replica__", "Label naming the replica of its HA cluster a series comes from; it is removed before storage.")
	f.IntVar(&l.HAMaxClusters, "distributor.ha-tracker.max-clusters", 100, "Maximum number of HA clusters a tenant may have; the series of more are refused. 0 means no limit.")
	f.Var(&l.OTLPPromoteResourceAttributes, "distributor.otlp.promote-resource-attributes", "Comma-separated OpenTelemetry resource attributes that become labels of every series of their resource (service.name and service.instance.id always become job and instance).")
	f.BoolVar(&l.OTLPKeepIdentifyingResourceAttributes, "distributor.otlp.keep-identifying-resource-attributes", false, "Keep service.name, service.namespace and service.instance.id as labels of target_info too.")
	f.StringVar(&l.OTLPTranslationStrategy, "distributor.otlp.translation-strategy", string(otlptranslator.UnderscoreEscapingWithSuffixes), "How OpenTelemetry metric and attribute names become Prometheus names: UnderscoreEscapingWithSuffixes (unit and type suffixes, invalid characters to _), UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes or NoTranslation (the last two need -validation.name-validation-scheme=utf8).")
	f.BoolVar(&l.OTLPConvertHistogramsToNHCB, "distributor.otlp.convert-histograms-to-nhcb", false, "Store OpenTelemetry explicit-bucket histograms as native histograms with custom buckets instead of classic _bucket series.")
	f.BoolVar(&l.OTLPDisableTargetInfo, "distributor.otlp.disable-target-info", false, "Do not write the target_info series of each OpenTelemetry resource's attributes.")
	f.BoolVar(&l.OTLPAcceptDeltaTemporality, "distributor.otlp.accept-delta-temporality", false, "Store the samples of OpenTelemetry sums and histograms of delta temporality as they come (of type unknown); without it they are refused with a 400 that names them.")
	f.IntVar(&l.MaxMetadataFamilies, "ingester.max-metadata-families-per-tenant", 50_000, "Metric families whose metadata (type, help, unit) a tenant's ingester keeps; metadata of more is dropped and counted. 0 means no limit.")
	f.IntVar(&l.MaxExemplars, "ingester.max-exemplars", 100_000, "Maximum number of exemplars kept in memory per tenant. 0 disables exemplar storage.")
	f.IntVar(&l.MaxFetchedSeriesPerQuery, "querier.max-fetched-series-per-query", 0, "Maximum number of distinct series one query may read. 0 means no limit.")
	f.IntVar(&l.MaxFetchedChunksPerQuery, "querier.max-fetched-chunks-per-query", 2_000_000, "Maximum number of chunks one query may fetch from ingesters and store-gateways, counted as they arrive. 0 means no limit.")
	f.IntVar(&l.MaxFetchedChunkBytesPerQuery, "querier.max-fetched-chunk-bytes-per-query", 0, "Maximum number of chunk bytes one query may fetch from ingesters and store-gateways, counted as they arrive. 0 means no limit.")
	f.Var(&l.MaxQueryLength, "querier.max-query-length", "Maximum time range one query may read, lookback and range selectors included. 0 means no limit.")
	f.Var(&l.MaxQueryLookback, "querier.max-query-lookback", "How far back from now a query may read; older data is left out of answers. 0 means no limit.")
	f.IntVar(&l.RulerMaxRuleGroupsPerTenant, "ruler.max-rule-groups-per-tenant", 70, "Maximum number of rule groups a tenant may have. 0 means no limit.")
	f.IntVar(&l.RulerMaxRulesPerRuleGroup, "ruler.max-rules-per-rule-group", 20, "Maximum number of rules in one rule group. 0 means no limit.")
	l.RulerMinEvaluationInterval = model.Duration(15 * time.Second)
	f.Var(&l.RulerMinEvaluationInterval, "ruler.min-evaluation-interval", "Shortest evaluation interval a rule group may have; shorter ones are refused by the API and raised to it when read from files.")
	f.Var(&l.RulerQueryOffset, "ruler.query-offset", "How far in the past rules evaluate (an evaluation delay), so that samples still on their way are in; a group's query_offset overrides it.")
	f.IntVar(&l.QueryShardingTotalShards, "query-frontend.query-sharding-total-shards", 16, "Into how many shards by series the query-frontend cuts the shardable aggregations of a query (sum, count, min, max, avg, group, topk, bottomk) for queriers to evaluate in parallel. 0 or 1 does not shard.")
}

// Validate reports limits that cannot work.
func (l *Limits) Validate() error {
	switch {
	case l.IngestionRate <= 0:
		return fmt.Errorf("ingestion rate limit must be positive, is %v", l.IngestionRate)
	case l.IngestionBurstSize <= 0:
		return fmt.Errorf("ingestion burst size must be positive, is %d", l.IngestionBurstSize)
	case l.MaxLabelNamesPerSeries <= 0 || l.MaxLabelNameLength <= 0 || l.MaxLabelValueLength <= 0:
		return fmt.Errorf("label count and length limits must be positive")
	case l.MaxSeriesPerTenant < 0 || l.MaxSeriesPerMetric < 0 || l.MaxExemplars < 0:
		return fmt.Errorf("series and exemplar limits must not be negative")
	case l.MaxFetchedSeriesPerQuery < 0 || l.MaxFetchedChunksPerQuery < 0 || l.MaxFetchedChunkBytesPerQuery < 0 || l.MaxQueryLength < 0 || l.MaxQueryLookback < 0 || l.QueryShardingTotalShards < 0 ||
		l.RulerMaxRuleGroupsPerTenant < 0 || l.RulerMaxRulesPerRuleGroup < 0 || l.RulerMinEvaluationInterval < 0 || l.RulerQueryOffset < 0:
		return fmt.Errorf("query limits must not be negative")
	case l.AcceptHASamples && (l.HAClusterLabel == "" || l.HAReplicaLabel == "" || l.HAClusterLabel == l.HAReplicaLabel):
		return fmt.Errorf("the HA cluster and replica labels must be two different names, are %q and %q", l.HAClusterLabel, l.HAReplicaLabel)
	case !slices.Contains([]otlptranslator.TranslationStrategyOption{otlptranslator.UnderscoreEscapingWithSuffixes, otlptranslator.UnderscoreEscapingWithoutSuffixes,
		otlptranslator.NoUTF8EscapingWithSuffixes, otlptranslator.NoTranslation}, otlptranslator.TranslationStrategyOption(l.OTLPTranslationStrategy)):
		return fmt.Errorf("unknown OTLP translation strategy %q: use UnderscoreEscapingWithSuffixes, UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes or NoTranslation", l.OTLPTranslationStrategy)
	case l.HAMaxClusters < 0:
		return fmt.Errorf("the maximum number of HA clusters must not be negative")
	case l.NameValidationScheme != "legacy" && l.NameValidationScheme != "utf8":
		return fmt.Errorf("unknown name validation scheme %q: use legacy or utf8", l.NameValidationScheme)
	}
	return nil
}

// UTF8Names reports whether metric and label names may be any UTF-8.
func (l *Limits) UTF8Names() bool { return l.NameValidationScheme == "utf8" }

// Overrides answers the limits of each tenant: the defaults, overridden
// field by field for the tenants that have an entry in the configuration
// file, and again by the runtime configuration file when there is one.
type Overrides struct {
	defaults Limits
	static   map[string]*Limits // from the configuration file
	tenants  atomic.Pointer[map[string]*Limits]

	mu        sync.Mutex
	listeners []func()
}

// NewOverrides applies per-tenant YAML fragments on top of defaults. Fields a
// fragment leaves out keep their default.
func NewOverrides(defaults Limits, tenants map[string]yaml.Node) (*Overrides, error) {
	if err := defaults.Validate(); err != nil {
		return nil, fmt.Errorf("default limits: %w", err)
	}
	o := &Overrides{defaults: defaults, static: map[string]*Limits{}}
	static, err := o.parse(tenants)
	if err != nil {
		return nil, err
	}
	o.static = static
	o.tenants.Store(&static)
	return o, nil
}

// parse applies per-tenant fragments on top of each tenant's limits from
// the configuration file, or the defaults. Any bad fragment fails the whole.
func (o *Overrides) parse(tenants map[string]yaml.Node) (map[string]*Limits, error) {
	out := make(map[string]*Limits, len(o.static)+len(tenants))
	maps.Copy(out, o.static)
	for id, node := range tenants {
		l := o.defaults
		if s, ok := o.static[id]; ok {
			l = *s
		}
		if err := decodeStrict(&node, &l); err != nil {
			return nil, fmt.Errorf("limits of tenant %q: %w", id, err)
		}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("limits of tenant %q: %w", id, err)
		}
		out[id] = &l
	}
	return out, nil
}

// For returns the limits of tenant. The result must not be modified.
func (o *Overrides) For(tenant string) *Limits {
	if l, ok := (*o.tenants.Load())[tenant]; ok {
		return l
	}
	return &o.defaults
}

// Defaults returns the limits of a tenant without overrides.
func (o *Overrides) Defaults() Limits { return o.defaults }

// Overridden returns the limits of every tenant that has overrides.
func (o *Overrides) Overridden() map[string]*Limits { return *o.tenants.Load() }

// OnChange registers f to be called after the limits of tenants changed.
func (o *Overrides) OnChange(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listeners = append(o.listeners, f)
}

// set puts tenants in force and tells the listeners.
func (o *Overrides) set(tenants map[string]*Limits) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tenants.Store(&tenants)
	for _, f := range o.listeners {
		f()
	}
}

// decodeStrict decodes node into l, failing on keys Limits does not have
// (yaml.Node.Decode alone ignores them).
func decodeStrict(node *yaml.Node, l *Limits) error {
	raw, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(l)
}
