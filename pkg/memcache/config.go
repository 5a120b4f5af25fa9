// Package memcache configures dskit's memcached client, which the
// store-gateway's chunk cache and the query-frontend's results cache use.
package memcache

import (
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/grafana/dskit/cache"
	"github.com/grafana/dskit/flagext"
)

// Config configures a memcached client. The settings dskit's client has
// beyond these keep dskit's defaults.
type Config struct {
	// Addresses are the memcached servers, host:port; keys are sharded
	// over them. A "dns+" prefix resolves the host to every address it
	// has, again every 30s.
	Addresses flagext.StringSliceCSV `yaml:"addresses"`
	// Timeout bounds connecting to a server and each read or write on a
	// connection.
	Timeout time.Duration `yaml:"timeout"`
	// MaxItemSize is the largest value stored, in bytes; bigger ones are
	// not cached. memcached itself refuses values over its -I (1MiB by
	// default).
	MaxItemSize int `yaml:"max_item_size"`
	// MaxAsyncConcurrency is how many stores run at once in the background.
	MaxAsyncConcurrency int `yaml:"max_async_concurrency"`
	// MaxAsyncBufferSize is how many stores wait for a worker; stores
	// beyond it are dropped.
	MaxAsyncBufferSize int `yaml:"max_async_buffer_size"`
}

// RegisterFlagsWithPrefix registers the flags under prefix (ending in a
// dot); what names the values cached ("chunks"), backendFlag the flag
// that selects memcached, and onMiss what happens when a read times out.
func (c *Config) RegisterFlagsWithPrefix(f *flag.FlagSet, prefix, what, backendFlag, onMiss string) {
	f.Var(&c.Addresses, prefix+"addresses", `Comma-separated memcached servers, host:port, for `+backendFlag+`=memcached; `+what+` are sharded over them. A "dns+" prefix uses every address of the host name, resolved again every 30s.`)
	f.DurationVar(&c.Timeout, prefix+"timeout", 200*time.Millisecond, "Timeout to connect to memcached and of each read or write; "+onMiss)
	f.IntVar(&c.MaxItemSize, prefix+"max-item-size", 1<<20, "Largest of the "+what+" stored in memcached, in bytes; bigger ones are not cached. Keep it at most memcached's -I (1MiB by default).")
	f.IntVar(&c.MaxAsyncConcurrency, prefix+"max-async-concurrency", 50, "How many of the "+what+" are stored into memcached at once in the background.")
	f.IntVar(&c.MaxAsyncBufferSize, prefix+"max-async-buffer-size", 25000, "How many of the "+what+" wait to be stored into memcached; beyond it they are not cached.")
}

// Validate checks the configuration registered under prefix, for use when
// memcached is selected by backendFlag.
func (c *Config) Validate(prefix, backendFlag string) error {
	p := prefix
	if len(c.Addresses) == 0 {
		return fmt.Errorf("-%saddresses must name at least one host:port with %s=memcached", p, backendFlag)
	}
	for _, a := range c.Addresses {
		host, port, err := net.SplitHostPort(strings.TrimPrefix(a, "dns+"))
		if err != nil {
			return fmt.Errorf("-%saddresses: %q is not host:port: %w", p, a, err)
		}
		if host == "" || port == "" {
			return fmt.Errorf("-%saddresses: %q is not host:port: empty host or port", p, a)
		}
	}
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("-%stimeout must be positive, is %s", p, c.Timeout)
	case c.MaxItemSize <= 0:
		return fmt.Errorf("-%smax-item-size must be positive, is %d", p, c.MaxItemSize)
	case c.MaxAsyncConcurrency <= 0:
		return fmt.Errorf("-%smax-async-concurrency must be positive, is %d", p, c.MaxAsyncConcurrency)
	case c.MaxAsyncBufferSize <= 0:
		return fmt.Errorf("-%smax-async-buffer-size must be positive, is %d", p, c.MaxAsyncBufferSize)
	}
	return nil
}

// ClientConfig returns dskit's client configuration: c's settings, and
// dskit's defaults for the rest.
func (c *Config) ClientConfig() cache.MemcachedClientConfig {
	var d cache.MemcachedClientConfig
	d.RegisterFlagsWithPrefix("", flag.NewFlagSet("", flag.PanicOnError))
	d.Addresses = c.Addresses
	d.Timeout = c.Timeout
	d.ConnectTimeout = c.Timeout
	d.MaxItemSize = c.MaxItemSize
	d.MaxAsyncConcurrency = c.MaxAsyncConcurrency
	d.MaxAsyncBufferSize = c.MaxAsyncBufferSize
	return d
}
