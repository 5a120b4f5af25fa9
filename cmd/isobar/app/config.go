// Package app assembles Isobar's components into one process: the root
// configuration, the module graph behind -target, and the HTTP server.
package app

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/grafana/dskit/kv/codec"
	"github.com/grafana/dskit/kv/memberlist"
	dskitring "github.com/grafana/dskit/ring"
	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/ingest/distributor"
	"github.com/isobar-tsdb/isobar/ingest/hatracker"
	"github.com/isobar-tsdb/isobar/pkg/auth"
	"github.com/isobar-tsdb/isobar/pkg/limits"
	"github.com/isobar-tsdb/isobar/pkg/log"
	"github.com/isobar-tsdb/isobar/pkg/profiling"
	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/querier/api"
	"github.com/isobar-tsdb/isobar/querier/engine"
	"github.com/isobar-tsdb/isobar/querier/frontend"
	"github.com/isobar-tsdb/isobar/querier/queryable"
	"github.com/isobar-tsdb/isobar/querier/ruler"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/compactor"
	"github.com/isobar-tsdb/isobar/tsdb/ingester"
	"github.com/isobar-tsdb/isobar/tsdb/storegateway"
)

// Config is the whole configuration of a process. Every field is a flag
// too, except the per-tenant limits, which only the YAML file can set.
type Config struct {
	Target              string `yaml:"target"`
	DataDir             string `yaml:"data_dir"`
	MultitenancyEnabled bool   `yaml:"multitenancy_enabled"`

	Server     ServerConfig        `yaml:"server"`
	Ring       ring.Config         `yaml:"ring"`
	Memberlist memberlist.KVConfig `yaml:"memberlist"`
	// IngesterClient configures gRPC from distributors and queriers to
	// ingesters, StoreGatewayClient from queriers to store-gateways.
	IngesterClient     rpc.ClientConfig `yaml:"ingester_client"`
	StoreGatewayClient rpc.ClientConfig `yaml:"store_gateway_client"`
	// InternalGRPCTLS is mutual TLS for all gRPC between components.
	InternalGRPCTLS rpc.TLSConfig      `yaml:"internal_grpc_tls"`
	Log             log.Config         `yaml:"log"`
	Profiling       profiling.Config   `yaml:"profiling"`
	Distributor     distributor.Config `yaml:"distributor"`
	Ingester        ingester.Config    `yaml:"ingester"`
	Querier         QuerierConfig      `yaml:"querier"`
	QueryFrontend   frontend.Config    `yaml:"query_frontend"`
	Bucket          bucket.Config      `yaml:"bucket"`
	StoreGateway    StoreGatewayConfig `yaml:"store_gateway"`
	Compactor       compactor.Config   `yaml:"compactor"`
	Ruler           ruler.Config       `yaml:"ruler"`
	// Auth finds each request's caller, tenant and rights.
	Auth   auth.Config   `yaml:"auth"`
	Limits limits.Limits `yaml:"limits"`

	// TenantLimits overrides Limits field by field for single tenants.
	TenantLimits map[string]yaml.Node `yaml:"tenant_limits"`
	// RuntimeConfig overrides TenantLimits again, from a file that may
	// change while the process runs.
	RuntimeConfig limits.RuntimeConfig `yaml:"runtime_config"`
}

// QuerierConfig configures the PromQL engine and which source a querier
// asks for which part of a query.
type QuerierConfig struct {
	engine.Config `yaml:",inline"`
	Storage       queryable.Config `yaml:",inline"`
	API           api.Config       `yaml:",inline"`
}

// StoreGatewayConfig configures the store-gateway and its ring.
type StoreGatewayConfig struct {
	storegateway.Config `yaml:",inline"`
	ReplicationFactor   int `yaml:"replication_factor"`
}

// ServerConfig configures the HTTP server.
type ServerConfig struct {
	HTTPListenAddress string `yaml:"http_listen_address"`
	HTTPListenPort    int    `yaml:"http_listen_port"`
	GRPCListenPort    int    `yaml:"grpc_listen_port"`
	// GRPCMaxRecvMsgSize and GRPCMaxSendMsgSize bound one gRPC message
	// either way; the clients' limits should match them.
	GRPCMaxRecvMsgSize int `yaml:"grpc_max_recv_msg_size_bytes"`
	GRPCMaxSendMsgSize int `yaml:"grpc_max_send_msg_size_bytes"`
	// A client that sends or reads slowly holds a connection and its
	// buffers only this long.
	HTTPReadTimeout  time.Duration `yaml:"http_server_read_timeout"`
	HTTPWriteTimeout time.Duration `yaml:"http_server_write_timeout"`
	HTTPIdleTimeout  time.Duration `yaml:"http_server_idle_timeout"`
	// Operator endpoints (flush, compactor run, store-gateway sync, ring
	// pages, pprof) on their own address, or not at all.
	OperatorListenAddress     string `yaml:"operator_listen_address"`
	OperatorEndpointsDisabled bool   `yaml:"operator_endpoints_disabled"`
}

// RegisterFlags registers every flag of the process with its default.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Target, "target", TargetAll, "Comma-separated components to run: "+strings.Join(knownTargets(), ", ")+".")
	f.StringVar(&c.DataDir, "data.dir", "./data", "Directory for everything the process stores on disk.")
	f.BoolVar(&c.MultitenancyEnabled, "auth.multitenancy-enabled", false, "With -auth.type=trust, take the tenant from the X-Scope-OrgID header as sent. When false, every request belongs to tenant \"anonymous\". Every other -auth.type turns it on.")
	c.Auth.RegisterFlags(f)
	f.StringVar(&c.Server.HTTPListenAddress, "server.http-listen-address", "", "Address the HTTP server listens on; empty means all addresses.")
	f.IntVar(&c.Server.HTTPListenPort, "server.http-listen-port", 9009, "Port the HTTP server listens on; 0 picks a free one.")
	f.IntVar(&c.Server.GRPCListenPort, "server.grpc-listen-port", 9095, "Port the gRPC server (ingester push) listens on, on the HTTP listen address; 0 picks a free one.")
	host, _ := os.Hostname()
	c.Ring.RegisterFlags(f, host)
	f.DurationVar(&c.Server.HTTPReadTimeout, "server.http-read-timeout", time.Minute, "Longest time to read a request, body included; a client trickling its body is cut off.")
	f.DurationVar(&c.Server.HTTPWriteTimeout, "server.http-write-timeout", 10*time.Minute, "Longest time from a request's headers to the end of its answer; keep it above -querier.timeout.")
	f.DurationVar(&c.Server.HTTPIdleTimeout, "server.http-idle-timeout", 2*time.Minute, "How long a kept-alive connection may wait for its next request.")
	f.StringVar(&c.Server.OperatorListenAddress, "server.operator-listen-address", "", "host:port of a separate HTTP server for the operator endpoints (flush, compactor run, store-gateway sync, ring pages, pprof), to keep them off the port clients reach; empty serves them on the HTTP port.")
	f.BoolVar(&c.Server.OperatorEndpointsDisabled, "server.operator-endpoints-disabled", false, "Serve no operator endpoint at all.")
	f.IntVar(&c.Server.GRPCMaxRecvMsgSize, "server.grpc-max-recv-msg-size-bytes", rpc.DefaultMaxMsgSize, "Largest gRPC message, in bytes, the gRPC server takes (a push from a distributor).")
	f.IntVar(&c.Server.GRPCMaxSendMsgSize, "server.grpc-max-send-msg-size-bytes", rpc.DefaultMaxMsgSize, "Largest gRPC message, in bytes, the gRPC server sends (one frame of a read).")
	c.IngesterClient.RegisterFlagsWithPrefix(f, "ingester.client", "ingester")
	c.StoreGatewayClient.RegisterFlagsWithPrefix(f, "store-gateway.client", "store-gateway")
	c.InternalGRPCTLS.RegisterFlags(f)
	c.Memberlist.RegisterFlags(f)
	c.Log.RegisterFlags(f)
	c.Profiling.RegisterFlags(f)
	c.Distributor.RegisterFlags(f)
	c.Ingester.RegisterFlags(f)
	c.Querier.Config.RegisterFlags(f)
	c.Querier.Storage.RegisterFlags(f)
	c.Querier.API.RegisterFlags(f)
	c.QueryFrontend.RegisterFlags(f)
	c.Bucket.RegisterFlags(f)
	c.StoreGateway.Config.RegisterFlags(f)
	f.IntVar(&c.StoreGateway.ReplicationFactor, "store-gateway.replication-factor", 3, "How many store-gateways hold each block (fewer if there are fewer); a query tries the others when one fails.")
	c.Compactor.RegisterFlags(f)
	c.Ruler.RegisterFlags(f)
	c.Limits.RegisterFlags(f)
	c.RuntimeConfig.RegisterFlags(f)
}

// configFileArg returns the value of -config.file in args, parsed exactly
// as the flags will be, on a throwaway configuration.
func configFileArg(args []string) (string, error) {
	fs := flag.NewFlagSet("isobar", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the real parse reports errors
	var file string
	fs.StringVar(&file, "config.file", "", "")
	(&Config{}).RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	return file, nil
}

// Validate checks the whole configuration.
func (c *Config) Validate() error {
	targets, err := parseTargets(c.Target)
	if err != nil {
		return err
	}
	if !slices.Contains(targets, TargetAll) {
		if c.Ring.KVStore.Store == ring.StoreInMemory {
			return fmt.Errorf("-target=%s runs part of a cluster, whose members must share the ring: set -ring.store=memberlist (with -memberlist.join) or consul or etcd", c.Target)
		}
		for _, t := range []string{TargetIngester, TargetStoreGateway, TargetCompactor} {
			if slices.Contains(targets, t) && c.Ring.InstanceAddr == "" {
				return fmt.Errorf("a %s in a cluster needs -ring.instance-addr: the address the other members dial", t)
			}
		}
	}
	if c.Server.GRPCMaxRecvMsgSize <= 0 || c.Server.GRPCMaxSendMsgSize <= 0 {
		return errors.New("-server.grpc-max-recv-msg-size-bytes and -server.grpc-max-send-msg-size-bytes must be positive")
	}
	if c.DataDir == "" {
		return errors.New("-data.dir must not be empty")
	}
	if err := c.validateInternalAuth(targets); err != nil {
		return err
	}
	if c.StoreGateway.ReplicationFactor <= 0 {
		return fmt.Errorf("-store-gateway.replication-factor must be positive, is %d", c.StoreGateway.ReplicationFactor)
	}
	return errors.Join(c.IngesterClient.Validate("ingester.client"), c.StoreGatewayClient.Validate("store-gateway.client"), c.InternalGRPCTLS.Validate(), c.Log.Validate(), c.Ring.Validate(), c.Distributor.Validate(), c.Ingester.Validate(),
		c.Querier.Config.Validate(), c.Querier.Storage.Validate(), c.QueryFrontend.Validate(), c.Ruler.Validate(), c.Bucket.Validate(), c.StoreGateway.Config.Validate(),
		c.Compactor.Validate(), c.Limits.Validate(), c.Auth.Validate())
}

// validateInternalAuth asks for the cluster's internal secret where a
// process sends HTTP requests to another that authenticates them.
func (c *Config) validateInternalAuth(targets []string) error {
	if !c.Auth.Enabled() || c.Auth.InternalSecretFile != "" || slices.Contains(targets, TargetAll) {
		return nil
	}
	if slices.Contains(targets, TargetQueryFrontend) && !slices.Contains(targets, TargetQuerier) {
		return fmt.Errorf("-auth.type=%s: a query-frontend whose queriers run elsewhere needs -auth.internal-secret-file (the same file as theirs) to reach them", c.Auth.Type)
	}
	if slices.Contains(targets, TargetRuler) {
		return fmt.Errorf("-auth.type=%s: a ruler of a cluster needs -auth.internal-secret-file (the same file as the other processes') to reach the other rulers and the query-frontend", c.Auth.Type)
	}
	return nil
}

// Load builds the configuration from the defaults, then the YAML file named
// by -config.file, then the flags given on the command line, each overriding
// the one before. The flags are parsed once, after the file: flags that
// collect values (-memberlist.bind-addr, -memberlist.join) would otherwise
// hold each value twice.
func Load(args []string) (*Config, error) {
	cfg := &Config{}
	fs := flag.NewFlagSet("isobar", flag.ContinueOnError)
	var configFile string
	fs.StringVar(&configFile, "config.file", "", "YAML configuration file. Flags given on the command line override it.")
	cfg.RegisterFlags(fs)
	file, err := configFileArg(args)
	if err != nil {
		return nil, err
	}
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read config file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // an empty file means all defaults
			return nil, fmt.Errorf("parse config file %s: %w", file, err)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg.Ingester.Dir = filepath.Join(cfg.DataDir, "tsdb")
	cfg.StoreGateway.Dir = filepath.Join(cfg.DataDir, "store-gateway")
	cfg.Compactor.Dir = filepath.Join(cfg.DataDir, "compactor")
	if cfg.Bucket.Filesystem.Dir == "" {
		cfg.Bucket.Filesystem.Dir = filepath.Join(cfg.DataDir, "bucket")
	}
	cfg.Memberlist.Codecs = []codec.Codec{dskitring.GetCodec(), hatracker.Codec{}}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return cfg, nil
}
