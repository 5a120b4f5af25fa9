// Package benchseries builds the write requests the push-path benchmarks
// send: libvirt interface series of a private cloud, 12 labels each.
package benchseries

import (
	"fmt"

	"github.com/prometheus/prometheus/prompb"
)

// Libvirt returns n series of one sample each (value 1 at timestamp 1).
func Libvirt(n int) *prompb.WriteRequest {
	wr := &prompb.WriteRequest{}
	for i := range n {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "libvirt_domain_interface_stats_receive_bytes_total"}, {Name: "az", Value: "az1"},
				{Name: "domain", Value: fmt.Sprintf("instance-%08x", i)}, {Name: "flavor", Value: "m1.large"},
				{Name: "hypervisor", Value: fmt.Sprintf("cmp-r1a-%04d.dc1.example", i/40)}, {Name: "instance", Value: "10.2.4.21:9177"},
				{Name: "instance_uuid", Value: fmt.Sprintf("3f2b8c1e-6a4d-4e8f-9b7a-%012d", i)}, {Name: "job", Value: "libvirt"},
				{Name: "project_id", Value: "4c8e2f1a9b7d4e6f8a0b1c2d3e4f5a6b"}, {Name: "region", Value: "region-one"},
				{Name: "target_device", Value: fmt.Sprintf("tap%08x-6a", i)},
			},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1}},
		})
	}
	return wr
}
