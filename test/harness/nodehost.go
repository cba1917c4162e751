package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// HostSnapshot is what a real node could leave behind on the host, read from the host's own
// namespaces: the check behind the rule that a node test leaves the machine as it found it.
type HostSnapshot struct {
	// Mounts: "mountpoint fstype source" of every mount in the test's (the host's) mount
	// namespace.
	Mounts []string
	// Links: network devices of the host's network namespace.
	Links []string
	// NetNS: names under /run/netns.
	NetNS []string
	// Cgroups: the top-level cgroups of every v1 hierarchy and of the unified one.
	Cgroups []string
	// Rules: iptables-save and ip6tables-save of the host (comment lines dropped: they carry a
	// date).
	Rules []string
	// Sysctls: the host values of every setting the kubelet, kube-proxy or a CNI plugin may set.
	Sysctls map[string]string
	// Paths: which of the places a kubelet or containerd writes by default exist.
	Paths map[string]bool
}

// nodeSysctls are the settings the kubelet (protectKernelDefaults: false), kube-proxy and the
// bridge plugin touch. The net.* ones are per network namespace on this kernel, so the node's
// own copies vanish with its namespace; the host's must stay as they were all the same.
var nodeSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

// nodeDefaultPaths are where a kubelet, containerd, runc and the CNI plugins write unless told
// otherwise. The node's mount namespace covers /run, /var/lib and /var/log with its own
// directories; containerd's opt plugin is pointed into the node's directory.
var nodeDefaultPaths = []string{
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/pods", "/var/log/containers",
	"/run/containerd", "/run/netns", "/opt/containerd", "/etc/cni/net.d", "/etc/kubernetes",
}

// TakeHostSnapshot reads the host's state.
func TakeHostSnapshot() (*HostSnapshot, error) {
	s := &HostSnapshot{Sysctls: map[string]string{}, Paths: map[string]bool{}}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 || len(f) < 5 {
			continue
		}
		s.Mounts = append(s.Mounts, f[4]+" "+f[sep+1]+" "+f[sep+2])
	}
	if ents, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, e := range ents {
			s.Links = append(s.Links, e.Name())
		}
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			s.NetNS = append(s.NetNS, e.Name())
		}
	}
	for _, h := range cgroupHierarchies() {
		ents, err := os.ReadDir(filepath.Join("/sys/fs/cgroup", h))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				s.Cgroups = append(s.Cgroups, h+"/"+e.Name())
			}
		}
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		out, err := exec.Command(tool).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tool, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				// Counters change with traffic: keep the rule, not its [packets:bytes].
				if i := strings.Index(l, " ["); strings.HasPrefix(l, ":") && i > 0 {
					l = l[:i]
				}
				s.Rules = append(s.Rules, tool+": "+l)
			}
		}
	}
	for _, k := range nodeSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range nodeDefaultPaths {
		_, err := os.Lstat(p)
		s.Paths[p] = err == nil
	}
	for _, l := range [][]string{s.Mounts, s.Links, s.NetNS, s.Cgroups, s.Rules} {
		sort.Strings(l)
	}
	return s, nil
}

// Diff lists what differs from before, one line per difference ("+" appeared, "-" vanished).
func (s *HostSnapshot) Diff(before *HostSnapshot) []string {
	var d []string
	set := func(kind string, old, cur []string) {
		o, c := map[string]int{}, map[string]int{}
		for _, x := range old {
			o[x]++
		}
		for _, x := range cur {
			c[x]++
		}
		for x, n := range c {
			if n > o[x] {
				d = append(d, fmt.Sprintf("%s +%s", kind, x))
			}
		}
		for x, n := range o {
			if n > c[x] {
				d = append(d, fmt.Sprintf("%s -%s", kind, x))
			}
		}
	}
	set("mount", before.Mounts, s.Mounts)
	set("link", before.Links, s.Links)
	set("netns", before.NetNS, s.NetNS)
	set("cgroup", before.Cgroups, s.Cgroups)
	set("rule", before.Rules, s.Rules)
	for k, v := range before.Sysctls {
		if s.Sysctls[k] != v {
			d = append(d, fmt.Sprintf("sysctl %s: %s -> %s", k, v, s.Sysctls[k]))
		}
	}
	for p, had := range before.Paths {
		if s.Paths[p] != had {
			d = append(d, fmt.Sprintf("path %s: existed %t -> %t", p, had, s.Paths[p]))
		}
	}
	sort.Strings(d)
	return d
}

// Summary is a one-line account of what the snapshot covers (for logs and the docs).
func (s *HostSnapshot) Summary() string {
	return fmt.Sprintf("%d mounts, %d links, %d named netns, %d top-level cgroups, %d iptables lines, %d sysctls, %d default paths",
		len(s.Mounts), len(s.Links), len(s.NetNS), len(s.Cgroups), len(s.Rules), len(s.Sysctls), len(s.Paths))
}

// cgroupHierarchies are the directories under /sys/fs/cgroup that are cgroup mounts: on these
// machines the v1 controllers, the named systemd hierarchy and the (controller-less) unified one.
func cgroupHierarchies() []string {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var hs []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || !strings.HasPrefix(f[4], "/sys/fs/cgroup/") {
			continue
		}
		isCg := false
		for _, x := range f[5:] {
			if x == "cgroup" || x == "cgroup2" {
				isCg = true
			}
		}
		h := strings.TrimPrefix(f[4], "/sys/fs/cgroup/")
		if isCg && !strings.Contains(h, "/") && !seen[h] {
			seen[h] = true
			hs = append(hs, h)
		}
	}
	sort.Strings(hs)
	return hs
}
