package workload

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Topology constants. Hosts are numbered k = 0, 1, 2, ...; host k is a load
// balancer when k%16 == 2, a GPU host when k%8 == 1 and a compute hypervisor
// otherwise, so even a small workload contains every kind of host early on.
const (
	hostsPerAZ   = 400
	azsPerRegion = 3
	hostsPerRack = 20
	gpusPerHost  = 8
)

// Ports the exporters listen on; part of the instance label.
const (
	portNode    = ":9100"
	portLibvirt = ":9177"
	portOVS     = ":9475"
	portDCGM    = ":9400"
	portHAProxy = ":8405"
)

// label is a name/value pair while building.
type label struct{ name, value string }

// flavor is a Nova flavor: the size of a VM.
type flavor struct {
	name         string
	vcpus, disks int
}

// builder generates series in topology order until it has the target count.
type builder struct {
	rng      *rand.Rand
	target   int
	scratch  []label
	enc      []byte
	pairIdx  map[string]uint32
	vmSeq    int
	projects []string

	pairs    []byte
	pairOff  []uint32
	refs     []uint32
	start    []uint32
	labelLen []uint32
	family   []uint16
}

// host is one physical machine and the target labels shared by its series.
type host struct {
	index            int
	name, short, az  string
	common, withRack []label // region, az, cluster, env (+ rack)
}

func newBuilder(target int, rng *rand.Rand) *builder {
	return &builder{
		rng:     rng,
		target:  target,
		pairIdx: make(map[string]uint32),
		pairOff: []uint32{0},
		start:   make([]uint32, 1, target+1),
	}
}

func (b *builder) full() bool { return len(b.family) >= b.target }

// with returns a new slice holding base followed by extra.
func with(base []label, extra ...label) []label {
	return slices.Concat(base, extra)
}

// add appends one series of family fam with the given labels plus __name__.
// It is a no-op once the target count is reached.
func (b *builder) add(fam int, base []label, extra ...label) {
	if b.full() {
		return
	}
	ls := append(b.scratch[:0], label{"__name__", families[fam].name})
	ls = append(ls, base...)
	ls = append(ls, extra...)
	slices.SortFunc(ls, func(x, y label) int { return strings.Compare(x.name, y.name) })
	b.scratch = ls
	total := 0
	for _, l := range ls {
		id := b.intern(l)
		b.refs = append(b.refs, id)
		total += int(b.pairOff[id+1] - b.pairOff[id])
	}
	b.start = append(b.start, uint32(len(b.refs)))
	b.labelLen = append(b.labelLen, uint32(total))
	b.family = append(b.family, uint16(fam))
}

// intern returns the id of the protobuf encoding of l as a
// TimeSeries.labels field, adding it to the pair arena if new.
func (b *builder) intern(l label) uint32 {
	inner := 2 + uvarintLen(uint64(len(l.name))) + len(l.name) + uvarintLen(uint64(len(l.value))) + len(l.value)
	e := append(b.enc[:0], tagLabels)
	e = binary.AppendUvarint(e, uint64(inner))
	e = append(e, tagLabelName)
	e = binary.AppendUvarint(e, uint64(len(l.name)))
	e = append(e, l.name...)
	e = append(e, tagLabelValue)
	e = binary.AppendUvarint(e, uint64(len(l.value)))
	e = append(e, l.value...)
	b.enc = e
	if id, ok := b.pairIdx[string(e)]; ok {
		return id
	}
	id := uint32(len(b.pairOff) - 1)
	b.pairs = append(b.pairs, e...)
	b.pairOff = append(b.pairOff, uint32(len(b.pairs)))
	b.pairIdx[string(e)] = id
	return id
}

// run generates hosts until the target series count is reached.
func (b *builder) run() {
	for k := 0; !b.full(); k++ {
		switch {
		case k%16 == 2:
			b.lbHost(b.newHost(k, "lb"))
		case k%8 == 1:
			b.gpuHost(b.newHost(k, "gpu"))
		default:
			b.computeHost(b.newHost(k, "cmp"))
		}
	}
}

func (b *builder) newHost(k int, prefix string) *host {
	region := k/(hostsPerAZ*azsPerRegion) + 1
	az := fmt.Sprintf("r%d%c", region, 'a'+(k/hostsPerAZ)%azsPerRegion)
	local := k%hostsPerAZ + 1
	short := fmt.Sprintf("%s-%s-%04d", prefix, az, local)
	common := []label{
		{"region", "r" + strconv.Itoa(region)},
		{"az", az},
		{"cluster", fmt.Sprintf("openstack-r%d-prod", region)},
		{"env", "production"},
	}
	return &host{
		index:    k,
		name:     fmt.Sprintf("%s.dc%d.example", short, region),
		short:    short,
		az:       az,
		common:   common,
		withRack: with(common, label{"rack", fmt.Sprintf("%s-k%02d", az, (local-1)/hostsPerRack+1)}),
	}
}

func (b *builder) computeHost(h *host) {
	b.nodeExporter(h, []int{32, 48, 64}[b.rng.IntN(3)], true)
	b.ovsHost(h)
	vms := 12 + b.rng.IntN(37)
	for v := 0; v < vms && !b.full(); v++ {
		b.vm(h, computeFlavors[b.rng.IntN(len(computeFlavors))])
	}
}

func (b *builder) gpuHost(h *host) {
	b.nodeExporter(h, 96, true)
	models := []string{"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S"}
	model := models[b.rng.IntN(len(models))]
	k8s := b.rng.IntN(2) == 0
	base := with(h.common, label{"instance", h.name + portDCGM}, label{"job", jobDCGM})
	for g := range gpusPerHost {
		if b.full() {
			return
		}
		ls := with(base,
			label{"gpu", strconv.Itoa(g)},
			label{"UUID", "GPU-" + b.uuid()},
			label{"device", "nvidia" + strconv.Itoa(g)},
			label{"modelName", model},
			label{"Hostname", h.short},
		)
		if k8s && b.rng.IntN(4) != 0 {
			ls = append(ls, label{"namespace", gpuNamespaces[b.rng.IntN(len(gpuNamespaces))]}, label{"pod", b.podName()})
		}
		for f := fDCGMGPUUtil; f <= fDCGMTensorActive; f++ {
			b.add(f, ls)
		}
	}
	if k8s {
		return
	}
	// A GPU hypervisor passes its GPUs through to a few large VMs.
	b.ovsHost(h)
	vms := 2 + b.rng.IntN(5)
	for v := 0; v < vms && !b.full(); v++ {
		b.vm(h, gpuFlavors[b.rng.IntN(len(gpuFlavors))])
	}
}

func (b *builder) lbHost(h *host) {
	b.nodeExporter(h, 16, false)
	base := with(h.withRack, label{"instance", h.name + portHAProxy}, label{"job", jobHAProxy})
	proxies := b.rng.Perm(len(haproxyProxies))[:10+b.rng.IntN(7)]
	for _, p := range proxies {
		if b.full() {
			return
		}
		pb := with(base, label{"proxy", haproxyProxies[p]})
		for f := fHAFrontendSessions; f <= fHAFrontendRequests; f++ {
			b.add(f, pb)
		}
		for _, code := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
			b.add(fHABackendResponses, pb, label{"code", code})
		}
		for f := fHABackendQueue; f <= fHABackendBytesOut; f++ {
			b.add(f, pb)
		}
		servers := 3
		if b.rng.IntN(4) == 0 {
			servers = 5
		}
		for s := range servers {
			sl := with(pb, label{"server", fmt.Sprintf("ctl-%s-%02d", h.az, s+1)})
			for f := fHAServerBytesIn; f <= fHAServerCheckFailures; f++ {
				b.add(f, sl)
			}
		}
	}
}

// nodeExporter adds the node exporter series of a host with the given
// number of logical CPUs.
func (b *builder) nodeExporter(h *host, cpus int, hypervisor bool) {
	base := with(h.withRack, label{"instance", h.name + portNode}, label{"job", jobNode})
	if hypervisor {
		base = append(base, label{"hypervisor", h.name})
	}
	for cpu := 0; cpu < cpus && !b.full(); cpu++ {
		c := label{"cpu", strconv.Itoa(cpu)}
		for _, mode := range []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"} {
			b.add(fNodeCPU, base, c, label{"mode", mode})
		}
	}
	for f := fNodeMemTotal; f <= fNodeContextSwitches; f++ {
		b.add(f, base)
	}
	devices := []string{"eno1", "eno2", "bond0"}
	if hypervisor {
		devices = append(devices, "br-ex", "vxlan_sys_4789", "ovs-system")
	}
	for _, d := range devices {
		for f := fNodeNetRxBytes; f <= fNodeNetRxDrop; f++ {
			b.add(f, base, label{"device", d})
		}
	}
	for _, d := range []string{"sda", "sdb", "nvme0n1", "nvme1n1"}[:2+b.rng.IntN(3)] {
		for f := fNodeDiskReadBytes; f <= fNodeDiskIOTime; f++ {
			b.add(f, base, label{"device", d})
		}
	}
	for _, fs := range [][3]string{
		{"/dev/md0", "ext4", "/"},
		{"/dev/md1", "ext4", "/boot"},
		{"/dev/nvme0n1p1", "xfs", "/var/lib/nova/instances"},
	} {
		fl := []label{{"device", fs[0]}, {"fstype", fs[1]}, {"mountpoint", fs[2]}}
		b.add(fNodeFSAvail, base, fl...)
		b.add(fNodeFSSize, base, fl...)
	}
}

// ovsHost adds the Open vSwitch series of a hypervisor's infrastructure
// ports: bridges, patch ports, the uplink bond and VXLAN tunnels to peers.
func (b *builder) ovsHost(h *host) {
	ports := [][2]string{
		{"br-int", "br-int"}, {"br-int", "patch-tun"}, {"br-int", "int-br-ex"},
		{"br-ex", "br-ex"}, {"br-ex", "phy-br-ex"}, {"br-ex", "bond0"},
		{"br-tun", "br-tun"}, {"br-tun", "patch-int"},
	}
	for j := range 4 + b.rng.IntN(9) {
		peer := (h.index + 1 + 37*j) & 0xffffff
		ports = append(ports, [2]string{"br-tun", fmt.Sprintf("vxlan-0a%06x", peer)})
	}
	for _, p := range ports {
		if b.full() {
			return
		}
		b.ovsPort(h, p[0], p[1])
	}
}

func (b *builder) ovsPort(h *host, bridge, port string) {
	ls := with(h.withRack,
		label{"instance", h.name + portOVS},
		label{"job", jobOVS},
		label{"hypervisor", h.name},
		label{"bridge", bridge},
		label{"port", port},
		label{"interface", port},
	)
	for f := fOVSRxBytes; f <= fOVSLinkState; f++ {
		b.add(f, ls)
	}
}

// vm adds the libvirt series of one VM and the Open vSwitch series of its
// ports.
func (b *builder) vm(h *host, fl flavor) {
	b.vmSeq++
	base := with(h.withRack,
		label{"instance", h.name + portLibvirt},
		label{"job", jobLibvirt},
		label{"hypervisor", h.name},
		label{"domain", fmt.Sprintf("instance-%08x", b.vmSeq)},
		label{"instance_uuid", b.uuid()},
		label{"project_id", b.project()},
		label{"flavor", fl.name},
	)
	for f := fLibvirtVstate; f <= fLibvirtCPUTime; f++ {
		b.add(f, base)
	}
	for v := range fl.vcpus {
		b.add(fLibvirtVCPUTime, base, label{"vcpu", strconv.Itoa(v)})
	}
	for d := range fl.disks {
		dev := label{"target_device", "vd" + string(rune('a'+d))}
		for f := fLibvirtBlockReadBytes; f <= fLibvirtBlockWriteReqs; f++ {
			b.add(f, base, dev)
		}
	}
	nics := 1
	if b.rng.IntN(10) < 3 {
		nics = 2
	}
	for range nics {
		tap := "tap" + b.uuid()[:11]
		for f := fLibvirtIfRxBytes; f <= fLibvirtIfRxDrops; f++ {
			b.add(f, base, label{"target_device", tap})
		}
		b.ovsPort(h, "br-int", tap)
	}
}

// uuid returns a random version 4 UUID string.
func (b *builder) uuid() string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], b.rng.Uint64())
	binary.BigEndian.PutUint64(u[8:], b.rng.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// project returns a project id: usually an existing project, skewed towards
// the first ones (a few large tenants), sometimes a new one.
func (b *builder) project() string {
	if len(b.projects) == 0 || b.rng.IntN(8) == 0 {
		b.projects = append(b.projects, fmt.Sprintf("%016x%016x", b.rng.Uint64(), b.rng.Uint64()))
		return b.projects[len(b.projects)-1]
	}
	u := b.rng.Float64()
	return b.projects[int(float64(len(b.projects))*math.Pow(u, 3))]
}

// podName returns a Kubernetes deployment pod name.
func (b *builder) podName() string {
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	var suffix [5]byte
	for i := range suffix {
		suffix[i] = alnum[b.rng.IntN(len(alnum))]
	}
	return fmt.Sprintf("%s-%08x%02x-%s", gpuWorkloads[b.rng.IntN(len(gpuWorkloads))],
		b.rng.Uint32(), b.rng.IntN(256), suffix[:])
}

// Read-only value pools.
var (
	computeFlavors = [...]flavor{
		{"m1.small", 1, 1}, {"m1.medium", 2, 1}, {"m1.large", 4, 1}, {"m1.xlarge", 8, 2},
		{"c1.2xlarge", 8, 1}, {"c1.4xlarge", 16, 2}, {"r1.xlarge", 4, 2}, {"r1.2xlarge", 8, 2},
	}
	gpuFlavors     = [...]flavor{{"g1.8xlarge.gpu1", 32, 2}, {"g1.16xlarge.gpu2", 64, 2}}
	gpuNamespaces  = [...]string{"ml-training", "inference", "research-nlp", "batch-jobs"}
	gpuWorkloads   = [...]string{"llm-finetune", "vllm-serving", "triton-inference", "ray-worker", "jupyter-notebook"}
	haproxyProxies = [...]string{
		"nova_api", "nova_metadata", "nova_novncproxy", "neutron_server", "keystone_internal",
		"keystone_external", "glance_api", "cinder_api", "placement_api", "heat_api",
		"octavia_api", "horizon", "barbican_api", "designate_api", "swift_proxy_server",
		"magnum_api", "grafana_server", "prometheus_server",
	}
)
