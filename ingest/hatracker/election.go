package hatracker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/grafana/dskit/kv/memberlist"
)

// Election is the elected replica of one cluster, as the key-value store
// holds it.
type Election struct {
	Replica string `json:"replica"`
	// ReceivedAt is when the elected replica last sent, as last recorded
	// (milliseconds since the epoch); ElectedAt when it was elected.
	ReceivedAt int64 `json:"received_at"`
	ElectedAt  int64 `json:"elected_at"`
}

// olderThan orders the records of one cluster: the later record wins,
// and of two written at the same instant, the replica named first.
func (e Election) olderThan(o Election) bool {
	if e.ReceivedAt != o.ReceivedAt {
		return e.ReceivedAt < o.ReceivedAt
	}
	return e.Replica > o.Replica
}

var _ memberlist.Mergeable = (*Election)(nil)

// Merge keeps the later of the two records (memberlist.Mergeable): gossip
// from any distributor converges on the same one.
func (e *Election) Merge(other memberlist.Mergeable, _ bool) (memberlist.Mergeable, error) {
	if other == nil {
		return nil, nil
	}
	o, ok := other.(*Election)
	if !ok {
		return nil, fmt.Errorf("merge an HA election with a %T", other)
	}
	if o == nil || !e.olderThan(*o) {
		return nil, nil
	}
	*e = *o
	return e.Clone(), nil
}

// MergeContent names the record's content: its replica.
func (e *Election) MergeContent() []string { return []string{e.Replica} }

// RemoveTombstones does nothing: elections are never deleted.
func (e *Election) RemoveTombstones(time.Time) (total, removed int) { return 0, 0 }

// Clone copies the record.
func (e *Election) Clone() memberlist.Mergeable {
	c := *e
	return &c
}

// Codec encodes elections for the key-value store; memberlist must know it.
type Codec struct{}

// CodecID names the codec in gossip.
func (Codec) CodecID() string { return "isobarHAElection" }

// Decode decodes an election.
func (Codec) Decode(b []byte) (any, error) {
	var e Election
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode HA election: %w", err)
	}
	return &e, nil
}

// Encode encodes an election.
func (Codec) Encode(v any) ([]byte, error) {
	e, ok := v.(*Election)
	if !ok {
		return nil, fmt.Errorf("encode a %T as an HA election", v)
	}
	return json.Marshal(e)
}
