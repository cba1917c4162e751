package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Worker is a node beside the first: its own kubelet (registered as Name), containerd (its own
// root, state and socket: a kubelet removes containers it does not know), kube-proxy, CNI
// range, and network and mount namespaces. Its network namespace is joined to the first node's
// by a veth pair whose first end is a port of the first node's bridge (node0), so all nodes
// share the 10.99.0.0/24 segment; each node routes the other nodes' pod ranges through their
// node address. Nothing in the segment has a way out: the first node's default route goes to
// node0, the worker's to its end of the pair, and an address outside is never answered.
type Worker struct {
	// Name is the Node object's name (pgl-node-b for the first worker).
	Name string
	// IP is its InternalIP on the shared segment.
	IP string
	// PodCIDR is its bridge plugin's range.
	PodCIDR string
	// Dir holds its configuration, containerd's root and state, and its /var/lib and /var/log.
	Dir string

	n          *Node
	index      int
	holder     *Process
	netnsIno   uint64
	mntnsIno   uint64
	cgroupRoot string
}

func workerName(i int) string    { return fmt.Sprintf("pgl-node-%c", 'a'+i) }
func workerIP(i int) string      { return fmt.Sprintf("10.99.0.%d", 1+i) }
func workerPodCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }

func newWorker(n *Node, i int) *Worker {
	name := workerName(i)
	return &Worker{Name: name, IP: workerIP(i), PodCIDR: workerPodCIDR(i), Dir: filepath.Join(n.Dir, name),
		n: n, index: i, cgroupRoot: n.cgroupRoot + "/" + name}
}

func (w *Worker) start(images []string) error {
	n := w.n
	for _, d := range []string{"varlib", "varlog", "containerd/root", "containerd/state", "cni", "opt"} {
		if err := os.MkdirAll(filepath.Join(w.Dir, d), 0o755); err != nil {
			return err
		}
	}
	// The worker's pods go under pgln-<id>/<name>, so that the node's clean-up finds them as
	// it finds the first node's; its daemons join the node's system cgroup.
	for _, h := range cgroupHierarchies() {
		if err := makeCgroup(h, w.cgroupRoot); err != nil {
			return err
		}
	}
	if err := w.startHolder(); err != nil {
		return err
	}
	if err := w.link(); err != nil {
		return err
	}
	server := "https://" + NodeIP + ":" + strconv.Itoa(apiPort)
	kubeletKC := filepath.Join(w.Dir, "kubelet.kubeconfig")
	if err := n.writeKubeconfig(kubeletKC, server, "node-"+w.Name); err != nil {
		return err
	}
	proxyKC := filepath.Join(w.Dir, "admin.kubeconfig")
	if err := n.writeKubeconfig(proxyKC, server, "admin"); err != nil {
		return err
	}
	files := nodeFiles(nodeConf{dir: w.Dir, pki: filepath.Join(n.Dir, "pki"), servingCert: "kubelet-serving-" + w.Name,
		name: w.Name, podCIDR: w.PodCIDR, cgroupRoot: w.cgroupRoot, proxyKubeconfig: proxyKC})
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(w.Dir, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	if err := w.startComponent("containerd-"+w.Name, "containerd", "--config="+filepath.Join(w.Dir, "containerd.toml")); err != nil {
		return err
	}
	if err := w.waitContainerd(30 * time.Second); err != nil {
		return err
	}
	for _, img := range images {
		if err := w.ImportImage(img); err != nil {
			return err
		}
	}
	if err := w.startComponent("kubelet-"+w.Name, filepath.Join(n.BinDir, "kubelet"),
		"--config="+filepath.Join(w.Dir, "kubelet.yaml"), "--kubeconfig="+kubeletKC,
		"--root-dir=/var/lib/kubelet", "--node-ip="+w.IP, "--hostname-override="+w.Name, "--v=1"); err != nil {
		return err
	}
	return w.startComponent("kube-proxy-"+w.Name, filepath.Join(n.BinDir, "kube-proxy"),
		"--config="+filepath.Join(w.Dir, "kube-proxy.yaml"), "--v=1")
}

// startHolder is Node.startHolder for the worker, without the bridge: its link to the
// segment is the veth pair that link adds.
func (w *Worker) startHolder() error {
	ready := filepath.Join(w.Dir, "ns-ready")
	inner := fmt.Sprintf(`set -e
mount -t tmpfs -o mode=0755 node-run /run
mount --bind %[1]s/varlib /var/lib
mount --bind %[1]s/varlog /var/log
ip link set lo up
echo ok > %[2]s
exec sleep infinity`, w.Dir, ready)
	p, err := w.n.startNamespaces("node-namespaces-"+w.Name, inner, ready)
	if err != nil {
		return err
	}
	w.holder = p
	pid := strconv.Itoa(p.Pid())
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/ns/net", &st); err != nil {
		return err
	}
	w.netnsIno = st.Ino
	if err := unix.Stat("/proc/"+pid+"/ns/mnt", &st); err != nil {
		return err
	}
	w.mntnsIno = st.Ino
	return nil
}

// link joins the worker to the segment and adds the routes between the pod ranges. Forwarding
// is switched on in both namespaces (the bridge plugin would do it only with the first pod);
// those sysctls are the namespaces' own and vanish with them.
func (w *Worker) link() error {
	n := w.n
	peer := fmt.Sprintf("pgl-%c", 'a'+w.index)
	type step struct {
		in   *Process // the holder whose namespaces run it
		args []string
	}
	a, b := n.holder, w.holder
	steps := []step{
		{a, []string{"ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(b.Pid())}},
		{a, []string{"ip", "link", "set", peer, "master", "node0"}},
		{a, []string{"ip", "link", "set", peer, "up"}},
		{a, []string{"ip", "route", "add", w.PodCIDR, "via", w.IP}},
		{a, []string{"sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}},
		{b, []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", w.IP, NodeIPPrefix), "dev", "eth0"}},
		{b, []string{"ip", "link", "set", "eth0", "up"}},
		{b, []string{"ip", "route", "add", "default", "dev", "eth0"}},
		{b, []string{"ip", "route", "add", PodCIDR, "via", NodeIP}},
		{b, []string{"sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}},
	}
	for _, o := range n.Workers {
		if o != w {
			steps = append(steps, step{o.holder, []string{"ip", "route", "add", w.PodCIDR, "via", w.IP}},
				step{b, []string{"ip", "route", "add", o.PodCIDR, "via", o.IP}})
		}
	}
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(s.in.Pid()), "--net", "--mount", "--"}, s.args...)...).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("linking %s: %s: %w: %s", w.Name, strings.Join(s.args, " "), err, out)
		}
	}
	return nil
}

func (w *Worker) startComponent(name, path string, args ...string) error {
	p, err := w.n.execIn(w.holder, name, path, args...)
	if err != nil {
		return err
	}
	w.n.Processes = append(w.n.Processes, p)
	return nil
}

// Run runs a command inside the worker's namespaces to its end and returns its combined output.
func (w *Worker) Run(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(w.holder.Pid()), "--net", "--mount", "--", path}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s on %s: %w: %s", path, strings.Join(args, " "), w.Name, err, out)
	}
	return string(out), nil
}

// Ctr runs ctr against the worker's containerd, in its k8s.io namespace.
func (w *Worker) Ctr(ctx context.Context, args ...string) (string, error) {
	return w.Run(ctx, "ctr", append([]string{"--address", filepath.Join(w.Dir, "containerd.sock"), "--namespace", "k8s.io"}, args...)...)
}

// ImportImage imports a docker-archive tarball into the worker's containerd.
func (w *Worker) ImportImage(tarball string) error { return importImage(w.Ctr, tarball) }

func (w *Worker) waitContainerd(timeout time.Duration) error {
	return waitContainerd(w.n.proc("containerd-"+w.Name), w.Ctr, timeout)
}

// CtrOn runs ctr against the containerd of the node named nodeName (the first node or a worker).
func (n *Node) CtrOn(ctx context.Context, nodeName string, args ...string) (string, error) {
	for _, w := range n.Workers {
		if w.Name == nodeName {
			return w.Ctr(ctx, args...)
		}
	}
	if nodeName != NodeName {
		return "", fmt.Errorf("no node %q (have %v)", nodeName, n.NodeNames())
	}
	return n.Ctr(ctx, args...)
}

// makeCgroup creates the cgroup sub in hierarchy h; a new v1 cpuset is given its parent's CPUs
// and memory nodes, without which it accepts no task.
func makeCgroup(h, sub string) error {
	d := filepath.Join("/sys/fs/cgroup", h, sub)
	if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create cgroup %s: %w", d, err)
	}
	if h == "cpuset" {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
				return fmt.Errorf("%s/%s: %w", d, f, err)
			}
		}
	}
	return nil
}

// WorkersFromEnv is the number of workers that PGL_NODES asks for (make run-node NODES=2, make
// test-node NODES=2: the node count, the first node included); def when it is unset.
func WorkersFromEnv(def int) (int, error) {
	v := os.Getenv("PGL_NODES")
	if v == "" {
		return def, nil
	}
	nodes, err := strconv.Atoi(v)
	if err != nil || nodes < 1 || nodes > 9 {
		return 0, fmt.Errorf("PGL_NODES=%q (NODES): want a node count from 1 to 9", v)
	}
	return nodes - 1, nil
}
