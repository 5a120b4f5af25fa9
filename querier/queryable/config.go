package queryable

import (
	"flag"
	"fmt"
	"time"
)

// Config says which source a querier asks for which part of a query's
// time range.
type Config struct {
	QueryIngestersWithin time.Duration `yaml:"query_ingesters_within"`
	QueryStoreAfter      time.Duration `yaml:"query_store_after"`
	BucketIndexMaxAge    time.Duration `yaml:"bucket_index_max_age"`
	BucketIndexMaxStale  time.Duration `yaml:"bucket_index_max_stale_period"`
}

// RegisterFlags registers the flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.QueryIngestersWithin, "querier.query-ingesters-within", 13*time.Hour, "Ask the ingesters only for the last this long of a query; they hold no more. 0 asks them for all of it.")
	f.DurationVar(&c.QueryStoreAfter, "querier.query-store-after", 12*time.Hour, "Ask the store-gateways only for data older than this; newer data is left to the ingesters. 0 always asks the bucket too.")
	f.DurationVar(&c.BucketIndexMaxAge, "querier.bucket-index-max-age", time.Minute, "Read a tenant's bucket index again once the copy in memory is this old.")
	f.DurationVar(&c.BucketIndexMaxStale, "querier.bucket-index-max-stale-period", time.Hour, "Fail queries that read blocks (503) when the compactor last updated the tenant's bucket index longer ago than this, rather than answer without the blocks made since. 0 disables the check.")
}

// Validate checks that every part of a query's range is asked of someone.
func (c *Config) Validate() error {
	switch {
	case c.QueryIngestersWithin < 0 || c.QueryStoreAfter < 0 || c.BucketIndexMaxAge < 0 || c.BucketIndexMaxStale < 0:
		return fmt.Errorf("-querier.query-ingesters-within, -querier.query-store-after, -querier.bucket-index-max-age and -querier.bucket-index-max-stale-period must not be negative")
	case c.QueryIngestersWithin > 0 && c.QueryStoreAfter >= c.QueryIngestersWithin:
		return fmt.Errorf("-querier.query-store-after (%s) must be shorter than -querier.query-ingesters-within (%s): data in between would be asked of neither the ingesters nor the bucket", c.QueryStoreAfter, c.QueryIngestersWithin)
	}
	return nil
}
