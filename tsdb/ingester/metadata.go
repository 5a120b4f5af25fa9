package ingester

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/metadata"

	"github.com/isobar-tsdb/isobar/pkg/rpc"
	"github.com/isobar-tsdb/isobar/pkg/rwproto"
)

// maxMetadataPerFamily bounds how many differing descriptions of one metric
// family a tenant keeps.
const maxMetadataPerFamily = 10

// metadataStore keeps the metric metadata senders send, in memory: senders
// send it again every minute, so it comes back soon after a restart.
//
// Keys are copies: the request's strings point into a pooled buffer. An
// existing entry is refreshed through its pointer, never by assigning the
// key again, because assigning an existing string key replaces the stored
// key with the new (borrowed) one.
type metadataStore struct {
	mu       sync.Mutex
	families map[string]map[metadata.Metadata]*time.Time
}

func newMetadataStore() *metadataStore {
	return &metadataStore{families: map[string]map[metadata.Metadata]*time.Time{}}
}

// add keeps ms, up to maxFamilies metric families (0: no limit), and
// returns how many of them it dropped for the limit.
func (s *metadataStore) add(ms []rwproto.Metadata, now time.Time, maxFamilies int) (dropped int) {
	if len(ms) == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		md := metadata.Metadata{Type: rpc.FromMetricType(m.Type), Help: m.Help, Unit: m.Unit}
		fam, ok := s.families[m.MetricFamilyName]
		if !ok {
			if maxFamilies > 0 && len(s.families) >= maxFamilies {
				dropped++
				continue
			}
			fam = map[metadata.Metadata]*time.Time{}
			s.families[strings.Clone(m.MetricFamilyName)] = fam
		}
		if seen, ok := fam[md]; ok {
			*seen = now
			continue
		}
		if len(fam) >= maxMetadataPerFamily {
			continue
		}
		md.Help, md.Unit = strings.Clone(md.Help), strings.Clone(md.Unit)
		seen := now
		fam[md] = &seen
	}
	return dropped
}

// purge forgets metadata not sent since before.
func (s *metadataStore) purge(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, fam := range s.families {
		for md, seen := range fam {
			if seen.Before(before) {
				delete(fam, md)
			}
		}
		if len(fam) == 0 {
			delete(s.families, name)
		}
	}
}

// get returns metadata by family, limited as the Prometheus API limits it.
func (s *metadataStore) get(metric string, limit, limitPerMetric int) map[string][]metadata.Metadata {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]metadata.Metadata{}
	for name, fam := range s.families {
		if metric != "" && name != metric {
			continue
		}
		if limit > 0 && len(out) >= limit {
			break
		}
		for md := range fam {
			if limitPerMetric > 0 && len(out[name]) >= limitPerMetric {
				break
			}
			out[name] = append(out[name], md)
		}
	}
	return out
}
