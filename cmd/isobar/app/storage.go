package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isobar-tsdb/isobar/pkg/ring"
	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/querier/queryable"
	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/compactor"
	"github.com/isobar-tsdb/isobar/tsdb/storegateway"
)

// localStoreGateway: with -target=all the querier reads blocks through the
// store-gateway of its own process, with no serialisation.
func (a *App) localStoreGateway() bool { return slices.Contains(a.targets, TargetAll) }

// ringed reports whether the process is part of a cluster, whose members
// share work through rings; -target=all does everything itself.
func (a *App) ringed() bool { return !slices.Contains(a.targets, TargetAll) }

// ensureDataDir creates -data.dir, where lifecyclers keep their tokens.
func (a *App) ensureDataDir() error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create -data.dir: %w", err)
	}
	return nil
}

func (a *App) bucket(component string) (bucket.Bucket, error) {
	b, err := bucket.New(a.cfg.Bucket, component, a.logger, a.reg)
	if err != nil {
		return nil, fmt.Errorf("bucket of the %s: %w", component, err)
	}
	return b, nil
}

// postAction serves an operator's action: POST runs it, 204 when done.
func postAction(run func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := run(r.Context()); err != nil {
			http.Error(w, err.Error(), rpc.CauseOf(err).HTTPStatus())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// initStoreGatewayRing watches the store-gateways and shows them at
// /store-gateway/ring.
func (a *App) initStoreGatewayRing() (services.Service, error) {
	r, err := ring.NewClient(a.cfg.Ring, ring.StoreGateways, a.cfg.StoreGateway.ReplicationFactor, a.ringStore, a.logger, prometheus.WrapRegistererWithPrefix("isobar_", a.reg))
	if err != nil {
		return nil, err
	}
	a.server.HandleOperator("/store-gateway/ring", r)
	a.storeGatewayRing = r
	return r, nil
}

// memberOf returns whether this instance is among the replicas of token.
func memberOf(r *dskitring.Ring, token uint32, op dskitring.Operation, instanceID string) (bool, error) {
	rs, err := r.Get(token, op, nil, nil, nil)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(rs.Instances, func(in dskitring.InstanceDesc) bool { return in.Id == instanceID }), nil
}

// blocksSync is the ring operation of choosing the blocks to hold: a
// store-gateway that is joining or leaving still holds its share.
var blocksSync = dskitring.NewOp([]dskitring.InstanceState{dskitring.JOINING, dskitring.ACTIVE, dskitring.LEAVING}, nil)

func (a *App) initStoreGateway() (services.Service, error) {
	bkt, err := a.bucket("store-gateway")
	if err != nil {
		return nil, err
	}
	var (
		opts storegateway.Options
		lc   services.Service
	)
	id := a.cfg.Ring.InstanceID
	if a.ringed() {
		if err := a.ensureDataDir(); err != nil {
			return nil, err
		}
		ringCfg := a.cfg.Ring
		ringCfg.InstancePort = a.cfg.Server.GRPCListenPort
		l, err := ring.NewLifecycler(ringCfg, ring.StoreGateways, a.ringStore, filepath.Join(a.cfg.DataDir, "store-gateway-tokens"), a.logger, prometheus.WrapRegistererWithPrefix("isobar_", a.reg))
		if err != nil {
			return nil, err
		}
		lc = l
		r := a.storeGatewayRing
		opts.OwnsBlock = func(tenantID string, block ulid.ULID) (bool, error) {
			return memberOf(r, ring.BlockToken(tenantID, block.String()), blocksSync, id)
		}
	}
	sg, err := storegateway.New(a.cfg.StoreGateway.Config, bkt, opts, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	rpc.RegisterStoreGatewayServer(a.server.grpc, sg)
	a.server.HandleOperator("POST /store-gateway/sync", postAction(sg.SyncOnce))
	a.storeGateway = sg
	if lc == nil {
		return sg, nil
	}
	return a.joinThen(lc, a.storeGatewayRing, id, sg), nil
}

// joinThen returns a service that puts the instance in a ring with lc,
// waits until the ring client r sees it, and then runs svc; stopping
// stops svc, then leaves the ring.
func (a *App) joinThen(lc services.Service, r *dskitring.Ring, instanceID string, svc services.Service) services.Service {
	// The children run until stopping stops them, not for as long as the
	// context of starting.
	startChild := func(ctx context.Context, s services.Service) error {
		if err := s.StartAsync(context.Background()); err != nil {
			return err
		}
		return s.AwaitRunning(ctx)
	}
	starting := func(ctx context.Context) error {
		if err := startChild(ctx, lc); err != nil {
			return fmt.Errorf("join the ring: %w", err)
		}
		deadline := time.Now().Add(time.Minute)
		for !r.HasInstance(instanceID) {
			if time.Now().After(deadline) {
				return fmt.Errorf("this instance (%s) did not appear in the ring within a minute", instanceID)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		return startChild(ctx, svc)
	}
	watcher := services.NewFailureWatcher()
	watcher.WatchService(svc)
	watcher.WatchService(lc)
	running := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watcher.Chan():
			return err
		}
	}
	stopping := func(error) error {
		err := services.StopAndAwaitTerminated(context.Background(), svc)
		if lerr := services.StopAndAwaitTerminated(context.Background(), lc); lerr != nil && err == nil {
			err = lerr
		}
		return err
	}
	return services.NewBasicService(starting, running, stopping)
}

func (a *App) initCompactor() (services.Service, error) {
	bkt, err := a.bucket("compactor")
	if err != nil {
		return nil, err
	}
	opts := compactor.Options{Retention: func(tenantID string) time.Duration {
		return time.Duration(a.cfg.Compactor.RetentionPeriod)
	}}
	var lc services.Service
	var r *dskitring.Ring
	id := a.cfg.Ring.InstanceID
	if a.ringed() {
		// Compactors share the tenants: each tenant belongs to one of them.
		if err := a.ensureDataDir(); err != nil {
			return nil, err
		}
		ringCfg := a.cfg.Ring
		ringCfg.InstancePort = a.cfg.Server.GRPCListenPort
		reg := prometheus.WrapRegistererWithPrefix("isobar_", a.reg)
		l, err := ring.NewLifecycler(ringCfg, ring.Compactors, a.ringStore, filepath.Join(a.cfg.DataDir, "compactor-tokens"), a.logger, reg)
		if err != nil {
			return nil, err
		}
		if r, err = ring.NewClient(a.cfg.Ring, ring.Compactors, 1, a.ringStore, a.logger, reg); err != nil {
			return nil, err
		}
		lc = services.NewIdleService(func(ctx context.Context) error {
			// Both run until stopped below.
			if err := services.StartAndAwaitRunning(context.Background(), r); err != nil {
				return err
			}
			return services.StartAndAwaitRunning(context.Background(), l)
		}, func(error) error {
			err := services.StopAndAwaitTerminated(context.Background(), l)
			if rerr := services.StopAndAwaitTerminated(context.Background(), r); rerr != nil && err == nil {
				err = rerr
			}
			return err
		})
		a.server.HandleOperator("/compactor/ring", r)
		opts.OwnsTenant = func(tenantID string) (bool, error) {
			return ringOwner(r, ring.BlockToken(tenantID, "")) == id, nil
		}
	}
	c, err := compactor.New(a.cfg.Compactor, bkt, opts, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	a.server.HandleOperator("POST /compactor/run", postAction(c.RunOnce))
	if lc == nil {
		return c, nil
	}
	return a.joinThen(lc, r, id, c), nil
}

// activeOnly is the ring operation of owning work alone (a compactor's
// tenant, a ruler's group): only ACTIVE instances take it.
var activeOnly = dskitring.NewOp([]dskitring.InstanceState{dskitring.ACTIVE}, nil)

// ringOwner is the instance that owns the work at token alone: the first
// healthy ACTIVE instance from the token on, so that the work of one that
// died moves on once it misses the heartbeat timeout, not only when it is
// forgotten (a ring lookup of one replica would name the dead one, and the
// work would wait for it). "" when no instance is healthy.
func ringOwner(r *dskitring.Ring, token uint32) string {
	rs, err := r.GetWithOptions(token, activeOnly, dskitring.WithReplicationFactor(r.InstancesCount()))
	if err != nil || len(rs.Instances) == 0 {
		return ""
	}
	return rs.Instances[0].Id
}

// blocksQueryable is what the querier reads the bucket through.
func (a *App) blocksQueryable() (*queryable.Blocks, error) {
	bkt, err := a.bucket("querier")
	if err != nil {
		return nil, err
	}
	finder := queryable.NewBucketIndexFinder(bkt, a.cfg.Querier.Storage.BucketIndexMaxAge, a.cfg.Querier.Storage.BucketIndexMaxStale)
	if a.localStoreGateway() {
		return queryable.NewBlocks(finder, queryable.LocalStore(a.storeGateway)), nil
	}
	pool := rpc.NewStoreGatewayPool(TargetQuerier, a.storeGatewayRing, a.cfg.StoreGatewayClient, a.logger, a.reg)
	a.storeGatewayPool = pool
	return queryable.NewBlocks(finder, queryable.NewRingStores(a.storeGatewayRing, pool)), nil
}
