package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isobar-tsdb/isobar/pkg/auth"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
)

// Server is the process's HTTP server, a service that listens while the
// other components start, so /ready and /metrics answer during WAL replay.
type Server struct {
	services.Service

	cfg    ServerConfig
	mux    *http.ServeMux
	logger *slog.Logger
	srv    *http.Server
	lis    net.Listener
	addr   atomic.Pointer[string] // set once listening; read from other goroutines

	grpc    *grpc.Server
	grpcLis net.Listener

	// Operator endpoints are served by mux, or by their own server on
	// -server.operator-listen-address.
	opMux  *http.ServeMux
	opSrv  *http.Server
	opLis  net.Listener
	opAddr atomic.Pointer[string]

	// gate authenticates the API's callers and the operator endpoints'.
	gate     *auth.Gate
	duration *prometheus.HistogramVec
	// crossOrigin refuses state-changing requests a browser sends for
	// another site's page: operators' actions cannot be triggered by a
	// page an operator happens to visit.
	crossOrigin *http.CrossOriginProtection
}

// newServer returns the process's servers; creds, if not nil, secure its
// gRPC server (mutual TLS); gate admits the HTTP requests.
func newServer(cfg ServerConfig, creds credentials.TransportCredentials, gate *auth.Gate, logger *slog.Logger, reg *prometheus.Registry) *Server {
	s := &Server{
		cfg:         cfg,
		gate:        gate,
		crossOrigin: http.NewCrossOriginProtection(),
		mux:         http.NewServeMux(),
		logger:      logger.With("component", "server"),
		duration: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "isobar_request_duration_seconds",
			Help:                            "Time to answer HTTP requests, by route, method and status code.",
			Buckets:                         prometheus.DefBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"method", "route", "status_code"}),
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	s.opMux = s.mux
	if cfg.OperatorListenAddress != "" {
		s.opMux = http.NewServeMux()
		s.opSrv = &http.Server{
			Handler:           s.instrument(s.opMux),
			ReadHeaderTimeout: 30 * time.Second,
			ReadTimeout:       cfg.HTTPReadTimeout,
			WriteTimeout:      cfg.HTTPWriteTimeout,
			IdleTimeout:       cfg.HTTPIdleTimeout,
		}
	}
	s.HandleOperator("/debug/pprof/", http.HandlerFunc(pprof.Index))
	s.HandleOperator("/debug/pprof/cmdline", http.HandlerFunc(redactedCmdline))
	s.HandleOperator("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	s.HandleOperator("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	s.HandleOperator("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	s.srv = &http.Server{
		Handler:           s.withTenant(s.instrument(s.mux)),
		ReadHeaderTimeout: 30 * time.Second,
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
	}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(cfg.GRPCMaxRecvMsgSize), grpc.MaxSendMsgSize(cfg.GRPCMaxSendMsgSize),
		grpc.ChainUnaryInterceptor(rpc.ServerTenantInterceptor), grpc.ChainStreamInterceptor(rpc.ServerTenantStreamInterceptor)}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(opts...)
	grpc_health_v1.RegisterHealthServer(s.grpc, health.NewServer()) // distributors' client pools check it
	s.Service = services.NewBasicService(s.starting, s.running, s.stopping)
	return s
}

func (s *Server) starting(context.Context) error {
	addr := net.JoinHostPort(s.cfg.HTTPListenAddress, strconv.Itoa(s.cfg.HTTPListenPort))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	grpcAddr := net.JoinHostPort(s.cfg.HTTPListenAddress, strconv.Itoa(s.cfg.GRPCListenPort))
	grpcLis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("listen on %s: %w", grpcAddr, err)
	}
	if s.opSrv != nil {
		opLis, err := net.Listen("tcp", s.cfg.OperatorListenAddress)
		if err != nil {
			_, _ = lis.Close(), grpcLis.Close()
			return fmt.Errorf("listen on %s (-server.operator-listen-address): %w", s.cfg.OperatorListenAddress, err)
		}
		s.opLis = opLis
		opBound := opLis.Addr().String()
		s.opAddr.Store(&opBound)
		s.logger.Info("operator HTTP server listening", "addr", opBound)
	}
	s.lis, s.grpcLis = lis, grpcLis
	bound := lis.Addr().String()
	s.addr.Store(&bound)
	s.logger.Info("HTTP server listening", "addr", bound)
	s.logger.Info("gRPC server listening", "addr", grpcLis.Addr().String())
	return nil
}

func (s *Server) running(ctx context.Context) error {
	errc := make(chan error, 3)
	go func() { errc <- fmt.Errorf("serve HTTP: %w", s.srv.Serve(s.lis)) }()
	go func() { errc <- fmt.Errorf("serve gRPC: %w", s.grpc.Serve(s.grpcLis)) }()
	if s.opSrv != nil {
		go func() { errc <- fmt.Errorf("serve the operator endpoints: %w", s.opSrv.Serve(s.opLis)) }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func (s *Server) stopping(_ error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	if s.opSrv != nil {
		if err := s.opSrv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shut down the operator HTTP server: %w", err)
		}
	}
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down HTTP server: %w", err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	return nil
}

// HandleOperator registers an operator's endpoint (an action, a page
// whose forms change state, profiles), refusing cross-site browser
// requests; on the operator listen address if there is one, nowhere if
// operator endpoints are off.
func (s *Server) HandleOperator(pattern string, h http.Handler) {
	if s.cfg.OperatorEndpointsDisabled {
		return
	}
	s.opMux.Handle(pattern, s.crossOrigin.Handler(s.gate.Admin(h)))
}

// OperatorAddr is the address of the operator endpoints' own server, once
// listening; empty when they share the HTTP server.
func (s *Server) OperatorAddr() string {
	if a := s.opAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// redactedCmdline serves the command line as pprof's cmdline does, with
// the values of flags that hold secrets replaced.
func redactedCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprint(w, strings.Join(redactArgs(os.Args), "\x00"))
}

// redactArgs replaces the values of flags whose names say they hold a
// secret (secret, password, token), given as -flag=value or -flag value.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	secret := func(arg string) bool {
		name := strings.ToLower(strings.TrimLeft(arg, "-"))
		return strings.Contains(name, "secret") || strings.Contains(name, "password") || strings.Contains(name, "token")
	}
	for i := 1; i < len(out); i++ {
		arg := out[i]
		if !strings.HasPrefix(arg, "-") || arg == "--" {
			continue
		}
		if name, _, ok := strings.Cut(arg, "="); ok {
			if secret(name) {
				out[i] = name + "=<redacted>"
			}
			continue
		}
		if secret(arg) && i+1 < len(out) {
			out[i+1] = "<redacted>"
			i++
		}
	}
	return out
}

// Addr is the address the server listens on, once it is running.
func (s *Server) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// withTenant admits the callers of the API paths and resolves their
// tenant.
func (s *Server) withTenant(next http.Handler) http.Handler {
	return onAPIPaths(s.gate.Tenant(neededRights, next), next)
}

// onAPIPaths sends the API paths' requests to withTenant and the others to
// next. Operational endpoints and the build info, which Grafana asks
// before it knows a tenant, need no tenant.
func onAPIPaths(withTenant, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if (strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/prometheus/") || strings.HasPrefix(p, "/otlp/")) &&
			!strings.HasSuffix(p, "/status/buildinfo") {
			withTenant.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// neededRights is what a request of the API needs on its tenant.
func neededRights(r *http.Request) auth.Rights {
	switch p := r.URL.Path; {
	case p == "/api/v1/push" || p == "/api/v1/write" || p == "/otlp/v1/metrics":
		return auth.Write
	case strings.Contains(p, "/config/v1/rules") && r.Method != http.MethodGet && r.Method != http.MethodHead:
		return auth.ManageRules
	}
	return auth.Read
}

// instrument records every request's duration by the route that served it.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "other"
		}
		s.duration.WithLabelValues(r.Method, route, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming responses streaming.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
