package ruler

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	promnotifier "github.com/prometheus/prometheus/notifier"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// alertmanager is one -ruler.alertmanager-url: how to find its addresses
// and what to send them.
type alertmanager struct {
	resolve      string // "", "dns" (A/AAAA records) or "dnssrv" (SRV records)
	scheme, host string // host is host:port, or the SRV name
	path         string
}

// parseAlertmanagerURL reads http(s)://host:port[/prefix], with dns+ or
// dnssrv+ before the scheme for names resolved at every poll.
func parseAlertmanagerURL(s string) (alertmanager, error) {
	var am alertmanager
	if resolve, rest, ok := strings.Cut(s, "+"); ok && (resolve == "dns" || resolve == "dnssrv") {
		am.resolve, s = resolve, rest
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return am, fmt.Errorf("-ruler.alertmanager-url %q: want http(s)://host:port[/path], optionally after dns+ or dnssrv+", s)
	}
	am.scheme, am.host, am.path = u.Scheme, u.Host, strings.TrimSuffix(u.Path, "/")
	if am.resolve == "dns" {
		if _, _, err := net.SplitHostPort(am.host); err != nil {
			return am, fmt.Errorf("-ruler.alertmanager-url %q: dns+ needs a port", s)
		}
	}
	return am, nil
}

// addresses resolves the Alertmanager's addresses now.
func (am alertmanager) addresses(ctx context.Context) ([]string, error) {
	switch am.resolve {
	case "dns":
		host, port, _ := net.SplitHostPort(am.host)
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(ips))
		for i, ip := range ips {
			out[i] = net.JoinHostPort(ip, port)
		}
		return out, nil
	case "dnssrv":
		_, srvs, err := net.DefaultResolver.LookupSRV(ctx, "", "", am.host)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(srvs))
		for i, s := range srvs {
			out[i] = net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))
		}
		return out, nil
	}
	return []string{am.host}, nil
}

// notifier sends one tenant's alerts to the Alertmanagers; with none
// configured it drops them.
type notifier struct {
	m      *promnotifier.Manager
	ams    []alertmanager
	every  time.Duration
	logger *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newNotifier(id string, cfg Config, logger *slog.Logger) (*notifier, error) {
	n := &notifier{every: cfg.PollInterval, logger: logger.With("tenant", id)}
	if len(cfg.AlertmanagerURLs) == 0 {
		return n, nil
	}
	opts := &promnotifier.Options{QueueCapacity: cfg.NotificationQueueCapacity}
	if cfg.AlertmanagerSendTenant {
		opts.Do = func(ctx context.Context, client *http.Client, req *http.Request) (*http.Response, error) {
			req.Header.Set(tenant.HeaderName, id)
			return client.Do(req.WithContext(ctx))
		}
	}
	conf := &config.Config{}
	for _, u := range cfg.AlertmanagerURLs {
		am, err := parseAlertmanagerURL(u)
		if err != nil {
			return nil, err
		}
		n.ams = append(n.ams, am)
		amc := config.DefaultAlertmanagerConfig
		amc.Scheme, amc.PathPrefix, amc.Timeout = am.scheme, am.path, model.Duration(cfg.NotificationTimeout)
		conf.AlertingConfig.AlertmanagerConfigs = append(conf.AlertingConfig.AlertmanagerConfigs, &amc)
	}
	n.m = promnotifier.NewManager(opts, model.UTF8Validation, n.logger)
	if err := n.m.ApplyConfig(conf); err != nil {
		return nil, fmt.Errorf("configure the notifier: %w", err)
	}
	return n, nil
}

// run starts sending, and resolving the Alertmanagers' addresses at every
// poll.
func (n *notifier) run() {
	if n.m == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	tsets := make(chan map[string][]*targetgroup.Group)
	n.wg.Go(func() { n.m.Run(tsets) })
	n.wg.Go(func() {
		for {
			groups := map[string][]*targetgroup.Group{}
			for i, am := range n.ams {
				key := fmt.Sprintf("config-%d", i) // the notifier's name of the i-th configuration
				addrs, err := am.addresses(ctx)
				if err != nil {
					n.logger.Warn("resolve an Alertmanager", "host", am.host, "err", err)
				}
				g := &targetgroup.Group{Source: key}
				for _, a := range addrs {
					g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
				}
				groups[key] = []*targetgroup.Group{g}
			}
			select {
			case tsets <- groups:
			case <-ctx.Done():
				return
			}
			select {
			case <-time.After(n.every):
			case <-ctx.Done():
				return
			}
		}
	})
}

// Send queues alerts for the Alertmanagers (rules.Sender).
func (n *notifier) Send(alerts ...*promnotifier.Alert) {
	if n.m != nil {
		n.m.Send(alerts...)
	}
}

func (n *notifier) stop() {
	if n.m == nil {
		return
	}
	n.cancel()
	n.m.Stop()
	n.wg.Wait()
}
