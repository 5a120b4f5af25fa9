package workload

import "github.com/prometheus/prometheus/prompb"

// valueKind selects the per-step value function of a metric family.
type valueKind uint8

const (
	// kindCounter is a monotonically increasing float counter.
	kindCounter valueKind = iota
	// kindCounterInt is a monotonically increasing integer counter.
	kindCounterInt
	// kindGauge is a float gauge that wanders around a per-series base.
	kindGauge
	// kindGaugeInt is an integer gauge that wanders around a per-series base.
	kindGaugeInt
	// kindPercent is an integer gauge clamped to [0, 100].
	kindPercent
	// kindConst is a constant equal to the family scale (info-style metrics).
	kindConst
	// kindConstInt is a per-series constant integer around the family scale
	// (sizes, capacities).
	kindConstInt
)

// family describes one metric family: its name, metadata and value shape.
type family struct {
	name  string
	job   string
	help  string
	unit  string
	kind  valueKind
	scale float64
}

// metricType maps the value shape to the remote-write metadata type.
func (f *family) metricType() prompb.MetricMetadata_MetricType {
	switch f.kind {
	case kindCounter, kindCounterInt:
		return prompb.MetricMetadata_COUNTER
	default:
		return prompb.MetricMetadata_GAUGE
	}
}

const (
	gib = 1 << 30
	mib = 1 << 20
)

// Job names, also the values of the job label.
const (
	jobNode    = "node"
	jobLibvirt = "libvirt"
	jobOVS     = "openvswitch"
	jobDCGM    = "dcgm-exporter"
	jobHAProxy = "haproxy"
)

// families is the static, read-only metric family table. Family ids are
// indexes into it and are named by the f* constants below; keep both in the
// same order.
var families = [...]family{
	// node exporter
	{"node_cpu_seconds_total", jobNode, "Seconds the CPUs spent in each mode.", "seconds", kindCounter, 0.4},
	{"node_memory_MemTotal_bytes", jobNode, "Memory information field MemTotal_bytes.", "bytes", kindConstInt, 512 * gib},
	{"node_memory_MemFree_bytes", jobNode, "Memory information field MemFree_bytes.", "bytes", kindGaugeInt, 96 * gib},
	{"node_memory_MemAvailable_bytes", jobNode, "Memory information field MemAvailable_bytes.", "bytes", kindGaugeInt, 128 * gib},
	{"node_memory_Buffers_bytes", jobNode, "Memory information field Buffers_bytes.", "bytes", kindGaugeInt, 2 * gib},
	{"node_memory_Cached_bytes", jobNode, "Memory information field Cached_bytes.", "bytes", kindGaugeInt, 24 * gib},
	{"node_memory_Dirty_bytes", jobNode, "Memory information field Dirty_bytes.", "bytes", kindGaugeInt, 64 * mib},
	{"node_memory_HugePages_Free", jobNode, "Memory information field HugePages_Free.", "", kindGaugeInt, 40000},
	{"node_load1", jobNode, "1m load average.", "", kindGauge, 12},
	{"node_load5", jobNode, "5m load average.", "", kindGauge, 12},
	{"node_load15", jobNode, "15m load average.", "", kindGauge, 12},
	{"node_context_switches_total", jobNode, "Total number of context switches.", "", kindCounterInt, 250000},
	{"node_network_receive_bytes_total", jobNode, "Network device statistic receive_bytes.", "bytes", kindCounterInt, 40 * mib},
	{"node_network_transmit_bytes_total", jobNode, "Network device statistic transmit_bytes.", "bytes", kindCounterInt, 35 * mib},
	{"node_network_receive_packets_total", jobNode, "Network device statistic receive_packets.", "", kindCounterInt, 40000},
	{"node_network_transmit_packets_total", jobNode, "Network device statistic transmit_packets.", "", kindCounterInt, 36000},
	{"node_network_receive_drop_total", jobNode, "Network device statistic receive_drop.", "", kindCounterInt, 0.5},
	{"node_disk_read_bytes_total", jobNode, "The total number of bytes read successfully.", "bytes", kindCounterInt, 20 * mib},
	{"node_disk_written_bytes_total", jobNode, "The total number of bytes written successfully.", "bytes", kindCounterInt, 30 * mib},
	{"node_disk_reads_completed_total", jobNode, "The total number of reads completed successfully.", "", kindCounterInt, 900},
	{"node_disk_writes_completed_total", jobNode, "The total number of writes completed successfully.", "", kindCounterInt, 1500},
	{"node_disk_io_time_seconds_total", jobNode, "Total seconds spent doing I/Os.", "seconds", kindCounter, 0.3},
	{"node_filesystem_avail_bytes", jobNode, "Filesystem space available to non-root users in bytes.", "bytes", kindGaugeInt, 300 * gib},
	{"node_filesystem_size_bytes", jobNode, "Filesystem size in bytes.", "bytes", kindConstInt, 900 * gib},
	// libvirt exporter
	{"libvirt_domain_info_vstate", jobLibvirt, "Virtual domain state. 1: running.", "", kindConst, 1},
	{"libvirt_domain_info_maximum_memory_bytes", jobLibvirt, "Maximum allowed memory of the domain, in bytes.", "bytes", kindConstInt, 16 * gib},
	{"libvirt_domain_info_memory_usage_bytes", jobLibvirt, "Memory usage of the domain, in bytes.", "bytes", kindGaugeInt, 8 * gib},
	{"libvirt_domain_info_cpu_time_seconds_total", jobLibvirt, "Amount of CPU time used by the domain, in seconds.", "seconds", kindCounter, 1.5},
	{"libvirt_domain_vcpu_time_seconds_total", jobLibvirt, "Amount of CPU time used by the domain's VCPU, in seconds.", "seconds", kindCounter, 0.4},
	{"libvirt_domain_block_stats_read_bytes_total", jobLibvirt, "Number of bytes read from a block device, in bytes.", "bytes", kindCounterInt, 2 * mib},
	{"libvirt_domain_block_stats_write_bytes_total", jobLibvirt, "Number of bytes written to a block device, in bytes.", "bytes", kindCounterInt, 3 * mib},
	{"libvirt_domain_block_stats_read_requests_total", jobLibvirt, "Number of read requests from a block device.", "", kindCounterInt, 80},
	{"libvirt_domain_block_stats_write_requests_total", jobLibvirt, "Number of write requests to a block device.", "", kindCounterInt, 150},
	{"libvirt_domain_interface_stats_receive_bytes_total", jobLibvirt, "Number of bytes received on a network interface, in bytes.", "bytes", kindCounterInt, 1 * mib},
	{"libvirt_domain_interface_stats_transmit_bytes_total", jobLibvirt, "Number of bytes transmitted on a network interface, in bytes.", "bytes", kindCounterInt, 800 * 1024},
	{"libvirt_domain_interface_stats_receive_packets_total", jobLibvirt, "Number of packets received on a network interface.", "", kindCounterInt, 900},
	{"libvirt_domain_interface_stats_transmit_packets_total", jobLibvirt, "Number of packets transmitted on a network interface.", "", kindCounterInt, 800},
	{"libvirt_domain_interface_stats_receive_drops_total", jobLibvirt, "Number of packet receive drops on a network interface.", "", kindCounterInt, 0.05},
	// Open vSwitch exporter
	{"ovs_interface_rx_bytes_total", jobOVS, "The number of bytes received by the interface.", "bytes", kindCounterInt, 1 * mib},
	{"ovs_interface_tx_bytes_total", jobOVS, "The number of bytes transmitted by the interface.", "bytes", kindCounterInt, 800 * 1024},
	{"ovs_interface_rx_packets_total", jobOVS, "The number of packets received by the interface.", "", kindCounterInt, 900},
	{"ovs_interface_tx_packets_total", jobOVS, "The number of packets transmitted by the interface.", "", kindCounterInt, 800},
	{"ovs_interface_rx_dropped_total", jobOVS, "The number of input packets dropped by the interface.", "", kindCounterInt, 0.05},
	{"ovs_interface_tx_dropped_total", jobOVS, "The number of output packets dropped by the interface.", "", kindCounterInt, 0.02},
	{"ovs_interface_rx_errors_total", jobOVS, "The number of input errors on the interface.", "", kindCounterInt, 0.01},
	{"ovs_interface_link_state", jobOVS, "The link state of the interface. 1: up.", "", kindConst, 1},
	// NVIDIA DCGM exporter
	{"DCGM_FI_DEV_GPU_UTIL", jobDCGM, "GPU utilization (in %).", "", kindPercent, 55},
	{"DCGM_FI_DEV_MEM_COPY_UTIL", jobDCGM, "Memory utilization (in %).", "", kindPercent, 30},
	{"DCGM_FI_DEV_FB_USED", jobDCGM, "Framebuffer memory used (in MiB).", "", kindGaugeInt, 40000},
	{"DCGM_FI_DEV_FB_FREE", jobDCGM, "Framebuffer memory free (in MiB).", "", kindGaugeInt, 40000},
	{"DCGM_FI_DEV_POWER_USAGE", jobDCGM, "Power draw (in W).", "", kindGauge, 350},
	{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", jobDCGM, "Total energy consumption since boot (in mJ).", "", kindCounterInt, 350000},
	{"DCGM_FI_DEV_SM_CLOCK", jobDCGM, "SM clock frequency (in MHz).", "", kindGaugeInt, 1700},
	{"DCGM_FI_DEV_MEM_CLOCK", jobDCGM, "Memory clock frequency (in MHz).", "", kindGaugeInt, 2600},
	{"DCGM_FI_DEV_GPU_TEMP", jobDCGM, "GPU temperature (in C).", "", kindGaugeInt, 60},
	{"DCGM_FI_DEV_MEMORY_TEMP", jobDCGM, "Memory temperature (in C).", "", kindGaugeInt, 60},
	{"DCGM_FI_DEV_XID_ERRORS", jobDCGM, "Value of the last XID error encountered.", "", kindConst, 0},
	{"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", jobDCGM, "Total number of PCIe retries.", "", kindCounterInt, 0.01},
	{"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", jobDCGM, "Ratio of cycles the tensor (HMMA) pipe is active.", "", kindGauge, 0.3},
	// HAProxy built-in exporter
	{"haproxy_frontend_current_sessions", jobHAProxy, "Number of current sessions on the frontend.", "", kindGaugeInt, 300},
	{"haproxy_frontend_bytes_in_total", jobHAProxy, "Total number of request bytes since process started.", "bytes", kindCounterInt, 2 * mib},
	{"haproxy_frontend_bytes_out_total", jobHAProxy, "Total number of response bytes since process started.", "bytes", kindCounterInt, 8 * mib},
	{"haproxy_frontend_http_requests_total", jobHAProxy, "Total number of HTTP requests processed by this object since the worker process started.", "", kindCounterInt, 400},
	{"haproxy_backend_http_responses_total", jobHAProxy, "Total number of HTTP responses.", "", kindCounterInt, 60},
	{"haproxy_backend_current_queue", jobHAProxy, "Number of current queued connections.", "", kindGaugeInt, 2},
	{"haproxy_backend_response_time_average_seconds", jobHAProxy, "Avg. response time for last 1024 successful connections.", "seconds", kindGauge, 0.08},
	{"haproxy_backend_bytes_in_total", jobHAProxy, "Total number of request bytes since process started.", "bytes", kindCounterInt, 2 * mib},
	{"haproxy_backend_bytes_out_total", jobHAProxy, "Total number of response bytes since process started.", "bytes", kindCounterInt, 8 * mib},
	{"haproxy_server_bytes_in_total", jobHAProxy, "Total number of request bytes since process started.", "bytes", kindCounterInt, 700 * 1024},
	{"haproxy_server_bytes_out_total", jobHAProxy, "Total number of response bytes since process started.", "bytes", kindCounterInt, 3 * mib},
	{"haproxy_server_current_sessions", jobHAProxy, "Number of current sessions on the frontend, backend or server.", "", kindGaugeInt, 100},
	{"haproxy_server_status", jobHAProxy, "Current status of the service, per state label value.", "", kindConst, 1},
	{"haproxy_server_check_failures_total", jobHAProxy, "Total number of failed individual health checks per server/backend, since the worker process started.", "", kindCounterInt, 0.01},
}

// Family ids, in the order of the families table.
const (
	fNodeCPU = iota
	fNodeMemTotal
	fNodeMemFree
	fNodeMemAvailable
	fNodeMemBuffers
	fNodeMemCached
	fNodeMemDirty
	fNodeHugePagesFree
	fNodeLoad1
	fNodeLoad5
	fNodeLoad15
	fNodeContextSwitches
	fNodeNetRxBytes
	fNodeNetTxBytes
	fNodeNetRxPackets
	fNodeNetTxPackets
	fNodeNetRxDrop
	fNodeDiskReadBytes
	fNodeDiskWrittenBytes
	fNodeDiskReads
	fNodeDiskWrites
	fNodeDiskIOTime
	fNodeFSAvail
	fNodeFSSize
	fLibvirtVstate
	fLibvirtMaxMem
	fLibvirtMemUsage
	fLibvirtCPUTime
	fLibvirtVCPUTime
	fLibvirtBlockReadBytes
	fLibvirtBlockWriteBytes
	fLibvirtBlockReadReqs
	fLibvirtBlockWriteReqs
	fLibvirtIfRxBytes
	fLibvirtIfTxBytes
	fLibvirtIfRxPackets
	fLibvirtIfTxPackets
	fLibvirtIfRxDrops
	fOVSRxBytes
	fOVSTxBytes
	fOVSRxPackets
	fOVSTxPackets
	fOVSRxDropped
	fOVSTxDropped
	fOVSRxErrors
	fOVSLinkState
	fDCGMGPUUtil
	fDCGMMemCopyUtil
	fDCGMFBUsed
	fDCGMFBFree
	fDCGMPower
	fDCGMEnergy
	fDCGMSMClock
	fDCGMMemClock
	fDCGMGPUTemp
	fDCGMMemTemp
	fDCGMXIDErrors
	fDCGMPCIeReplay
	fDCGMTensorActive
	fHAFrontendSessions
	fHAFrontendBytesIn
	fHAFrontendBytesOut
	fHAFrontendRequests
	fHABackendResponses
	fHABackendQueue
	fHABackendRespTime
	fHABackendBytesIn
	fHABackendBytesOut
	fHAServerBytesIn
	fHAServerBytesOut
	fHAServerSessions
	fHAServerStatus
	fHAServerCheckFailures
	numFamilies
)

// Compile-time check that the id list and the table have the same length.
var _ [numFamilies]struct{} = [len(families)]struct{}{}
