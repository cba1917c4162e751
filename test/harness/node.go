package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The real node's addresses. The whole cluster - etcd, kube-apiserver, the controllers, the
// scheduler, containerd, the kubelet, kube-proxy and every pod - lives in one network
// namespace that the harness creates and that has no link to anything outside it: a bridge
// without ports (node0; the kernel has no dummy driver and loads no modules) carries the node's
// address and the default route, so a packet for any address outside the namespace is dropped
// there instead of leaving. Each node has its own namespace, so
// concurrent nodes may use the same ranges. The host reaches the API server through a TCP
// forwarder on its own loopback (see Node.KubeconfigPath) and nothing else.
const (
	// NodeIP is the node's InternalIP, the API server's advertised address and the kubelet's.
	NodeIP = "10.99.0.1"
	// NodeIPPrefix is the prefix length on node0.
	NodeIPPrefix = 24
	// PodCIDR is the bridge plugin's range on the node (host-local IPAM).
	PodCIDR = "10.244.0.0/24"
	// ClusterCIDR is what kube-proxy treats as pod traffic.
	ClusterCIDR = "10.244.0.0/16"
	// ServiceCIDR is the API server's --service-cluster-ip-range.
	ServiceCIDR = "10.96.0.0/16"
	// KubernetesServiceIP is the ClusterIP of default/kubernetes (the first of ServiceCIDR).
	KubernetesServiceIP = "10.96.0.1"
	// NodeName is the Node object's name.
	NodeName = "pgl-node"
	// PauseImage is the sandbox image, imported from a static pause binary (no registry here).
	PauseImage = "registry.k8s.io/pause:3.10"
	// apiPort and the other ports are inside the node's namespace: fixed, no collisions.
	apiPort = 6443
)

// NodeOptions for StartNode.
type NodeOptions struct {
	// LogDir, when set, receives one <component>.log per process as well (make run-node).
	LogDir string
	// Progress receives one line per start-up step when set.
	Progress io.Writer
	// Images are docker-archive tarballs imported into containerd before the kubelet starts,
	// besides the pause image.
	Images []string
	// Workers is the number of nodes beside the first (0: one node, what runs fastest). Each
	// worker is a kubelet with its own containerd, kube-proxy, network and mount namespace and
	// pod range (see Worker); the control plane stays on the first node.
	Workers int
}

// Node is a one-node Kubernetes cluster that runs pods for real: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd (Debian's, with runc and the CNI
// plugins), the kubelet and kube-proxy, all in a network and a mount namespace of their own and
// in cgroups of their own, so that stopping them leaves nothing behind (Stop checks).
type Node struct {
	// ID makes the node's names unique: cgroup pgln-<ID>, directory /tmp/pgln-<ID>.
	ID string
	// Dir is the node's scratch directory (removed by Stop).
	Dir string
	// BinDir holds the Kubernetes binaries.
	BinDir string
	// KubeconfigPath is an admin kubeconfig whose server is the host-loopback forwarder.
	KubeconfigPath string
	// Config is the admin REST config (same server); Clientset is built from it.
	Config    *rest.Config
	Clientset kubernetes.Interface
	// Before is the host as it was before the node started; Stop compares against it.
	Before *HostSnapshot
	// Processes are the node's components in start order, the workers' included.
	Processes []*Process
	// Workers are the nodes beside this one (NodeOptions.Workers), in order.
	Workers []*Worker
	// SharedDir is a host directory that every node's mount namespace sees at the same path
	// (it is outside what each node covers with its own): a hostPath volume there is what a
	// network volume is to a real cluster, mountable by a pod on any node.
	SharedDir string

	opts       NodeOptions
	start      time.Time
	holder     *Process
	netnsFD    int
	netnsIno   uint64
	mntnsIno   uint64
	cgroupRoot string
	cgProcs    []string
	forwarder  net.Listener
	fwWG       sync.WaitGroup
	cleanupSh  string
	lock       *os.File
	logFiles   []*os.File
	stopped    bool
	// dials are the DialContext calls in flight: each holds an OS thread inside the node's
	// network namespace until connect returns (a SYN to a pod IP that went away waits for
	// minutes), so Stop cancels them and waits before it compares the host.
	dials      sync.WaitGroup
	dialCtx    context.Context
	dialCancel context.CancelFunc
}

// NodeSupported says why a real node cannot run here, or nil when it can: it needs root,
// cgroup v1 controllers, and Debian's containerd, runc, CNI plugins and iptables (`make
// test-node` installs those) besides unshare, nsenter and ip.
func NodeSupported() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the kubelet and containerd create cgroups, mounts and network namespaces): run as root")
	}
	hs := cgroupHierarchies()
	have := map[string]bool{}
	for _, h := range hs {
		have[h] = true
	}
	for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer"} {
		if !have[c] {
			missing = append(missing, "the cgroup v1 hierarchy /sys/fs/cgroup/"+c)
		}
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-restore", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (make test-node installs containerd, runc, containernetworking-plugins and iptables from Debian)")
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, "the CNI plugin "+filepath.Join(cniBinDir, p)+" (Debian's containernetworking-plugins)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a real node cannot run here; missing:\n  - %s", strings.Join(missing, "\n  - "))
	}
	return nil
}

const cniBinDir = "/usr/lib/cni"

// nodeLockName is an abstract unix socket whose binding serialises real nodes on a host: no
// file to leave behind, and the kernel releases it when the last holder exits. The watchdog
// inherits it, so it is released only once the clean-up is over, even after a crash.
const nodeLockName = "@pgl-real-node-lock"

func lockHost(waiting func()) (*os.File, error) {
	announced := false
	for {
		l, err := net.Listen("unix", nodeLockName)
		if err == nil {
			f, ferr := l.(*net.UnixListener).File()
			_ = l.Close() // the duplicate in f keeps the binding
			return f, ferr
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("host lock %s: %w", nodeLockName, err)
		}
		if !announced {
			waiting()
			announced = true
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// NewNode starts a node for a test, skipping the test when the machine cannot run one, and
// stops it in t.Cleanup, failing the test when anything of the node remains on the host.
func NewNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	if err := NodeSupported(); err != nil {
		if os.Getenv("PGL_REQUIRE_NODE") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	n, err := StartNode(opts)
	if n != nil {
		t.Cleanup(func() {
			if t.Failed() {
				for _, p := range n.Processes {
					t.Logf("%s output (last 6 KiB):\n%s", p.Name, tail(p.Logs(), 6<<10))
				}
			}
			if err := n.Stop(); err != nil {
				t.Errorf("stopping the node: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// StartNode starts a node. Stop it with Stop, also when StartNode returns an error with a
// non-nil Node.
func StartNode(opts NodeOptions) (n *Node, err error) {
	if err := NodeSupported(); err != nil {
		return nil, err
	}
	n = &Node{opts: opts, start: time.Now(), netnsFD: -1}
	n.step("Kubernetes binaries (kubelet, kube-scheduler, kube-proxy built on first use) ...")
	if n.BinDir, err = NodeBinDir(); err != nil {
		return nil, err
	}
	images, err := nodeImages()
	if err != nil {
		return nil, err
	}
	// One node at a time per host: the kubelet changes global sysctls, and a second node's
	// "before" snapshot must not see the first one's values.
	if n.lock, err = lockHost(func() { n.step("waiting for another real node on this host to stop ...") }); err != nil {
		return nil, err
	}
	if n.Before, err = TakeHostSnapshot(); err != nil {
		_ = n.lock.Close()
		return nil, err
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	n.ID = hex.EncodeToString(b)
	// Short: containerd's socket path must stay under 108 bytes.
	n.Dir = "/tmp/pgln-" + n.ID
	n.cgroupRoot = "pgln-" + n.ID
	n.SharedDir = filepath.Join(n.Dir, "shared")
	for _, d := range []string{"pki", "varlib", "varlog", "containerd/root", "containerd/state", "cni", "opt", "etcd", "shared"} {
		if err = os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err = n.writeCleanupScript(); err != nil {
		return n, err
	}
	if err = n.makeCgroups(); err != nil {
		return n, err
	}
	n.step("network and mount namespace %s (node address %s/%d, pods %s, services %s) ...", n.cgroupRoot, NodeIP, NodeIPPrefix, PodCIDR, ServiceCIDR)
	if err = n.startHolder(); err != nil {
		return n, err
	}
	if err = n.writeConfigs(); err != nil {
		return n, err
	}
	if err = n.startForwarder(); err != nil {
		return n, err
	}

	if err = n.startAPIServer(); err != nil {
		return n, err
	}

	pki := func(f string) string { return filepath.Join(n.Dir, "pki", f) }
	n.step("kube-controller-manager, kube-scheduler ...")
	admin := filepath.Join(n.Dir, "admin-inner.kubeconfig")
	if err = n.startComponent("kube-controller-manager", filepath.Join(n.BinDir, "kube-controller-manager"),
		"--kubeconfig="+admin, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257",
		"--cert-dir="+filepath.Join(n.Dir, "kcm-certs"),
		"--service-account-private-key-file="+pki("sa.key"), "--root-ca-file="+pki("ca.crt"),
		"--use-service-account-credentials=false", "--v=1"); err != nil {
		return n, err
	}
	if err = n.startComponent("kube-scheduler", filepath.Join(n.BinDir, "kube-scheduler"),
		"--kubeconfig="+admin, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259",
		"--cert-dir="+filepath.Join(n.Dir, "scheduler-certs"), "--v=1"); err != nil {
		return n, err
	}

	n.step("containerd, images ...")
	if err = n.startComponent("containerd", "containerd", "--config="+filepath.Join(n.Dir, "containerd.toml")); err != nil {
		return n, err
	}
	if err = n.waitContainerd(30 * time.Second); err != nil {
		return n, err
	}
	for _, img := range append(images, opts.Images...) {
		if err = n.ImportImage(img); err != nil {
			return n, err
		}
	}

	n.step("kubelet, kube-proxy ...")
	if err = n.startComponent("kubelet", filepath.Join(n.BinDir, "kubelet"),
		"--config="+filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig="+filepath.Join(n.Dir, "kubelet.kubeconfig"),
		"--root-dir=/var/lib/kubelet", "--node-ip="+NodeIP, "--hostname-override="+NodeName, "--v=1"); err != nil {
		return n, err
	}
	if err = n.startComponent("kube-proxy", filepath.Join(n.BinDir, "kube-proxy"),
		"--config="+filepath.Join(n.Dir, "kube-proxy.yaml"), "--v=1"); err != nil {
		return n, err
	}
	for i := 1; i <= opts.Workers; i++ {
		w := newWorker(n, i)
		n.Workers = append(n.Workers, w)
		n.step("worker %s: namespaces (address %s, pods %s), containerd, images, kubelet, kube-proxy ...", w.Name, w.IP, w.PodCIDR)
		if err = w.start(append(images, opts.Images...)); err != nil {
			return n, err
		}
	}
	for _, name := range n.NodeNames() {
		if err = n.waitNodeReady(name, 2*time.Minute); err != nil {
			return n, err
		}
		n.step("node %s Ready", name)
	}
	return n, nil
}

// startAPIServer starts etcd and kube-apiserver inside the node's namespaces and connects the
// admin client through the forwarder.
func (n *Node) startAPIServer() (err error) {
	pki := func(f string) string { return filepath.Join(n.Dir, "pki", f) }
	n.step("etcd, kube-apiserver ...")
	if err = n.startComponent("etcd", filepath.Join(n.BinDir, "etcd"),
		"--name=node", "--data-dir="+filepath.Join(n.Dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=node=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	if err = n.waitHTTP("etcd", "http://127.0.0.1:2379/health", 60*time.Second); err != nil {
		return err
	}
	if err = n.startComponent("kube-apiserver", filepath.Join(n.BinDir, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port="+strconv.Itoa(apiPort), "--advertise-address="+NodeIP,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--cert-dir="+filepath.Join(n.Dir, "apiserver-certs"),
		"--tls-cert-file="+pki("apiserver.crt"), "--tls-private-key-file="+pki("apiserver.key"),
		"--client-ca-file="+pki("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki("sa.pub"), "--service-account-signing-key-file="+pki("sa.key"),
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate="+pki("apiserver-kubelet-client.crt"), "--kubelet-client-key="+pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+pki("ca.crt"),
		// The default tries the hostname first: a DNS lookup that has nowhere to go.
		"--kubelet-preferred-address-types=InternalIP",
		// Webhook calls go to an endpoint's pod IP, chosen by the API server itself.
		"--enable-aggregator-routing=true",
		"--allow-privileged=true", "--profiling=false", "--v=1"); err != nil {
		return err
	}
	if err = n.waitHTTP("kube-apiserver", fmt.Sprintf("https://127.0.0.1:%d/readyz", apiPort), 2*time.Minute); err != nil {
		return err
	}
	if n.Config, err = clientcmd.BuildConfigFromFlags("", n.KubeconfigPath); err != nil {
		return err
	}
	if n.Clientset, err = kubernetes.NewForConfig(n.Config); err != nil {
		return err
	}

	return nil
}

func (n *Node) step(format string, a ...any) {
	if n.opts.Progress != nil {
		fmt.Fprintf(n.opts.Progress, "[%5.1fs] %s\n", time.Since(n.start).Seconds(), fmt.Sprintf(format, a...))
	}
}

// makeCgroups creates pgln-<id> and pgln-<id>/system in every hierarchy: the node's daemons
// run in system, the kubelet puts the pods under pgln-<id> (its cgroupRoot), so that every
// process of the node, containers and shims included, can be found and killed from there.
func (n *Node) makeCgroups() error {
	for _, h := range cgroupHierarchies() {
		for _, sub := range []string{n.cgroupRoot, n.cgroupRoot + "/system"} {
			if err := makeCgroup(h, sub); err != nil {
				return err
			}
		}
		n.cgProcs = append(n.cgProcs, filepath.Join("/sys/fs/cgroup", h, n.cgroupRoot, "system", "cgroup.procs"))
	}
	return nil
}

// writeCleanupScript writes the script that kills every process in the node's cgroups,
// removes the cgroups, restores the host sysctls that the kubelet changes and removes the
// directory. Stop runs it after the graceful stops; a watchdog runs it if the test process
// dies first (go test -timeout, SIGKILL).
func (n *Node) writeCleanupScript() error {
	var restore strings.Builder
	for k, v := range n.Before.Sysctls {
		if strings.HasPrefix(k, "net/") {
			continue // per network namespace: the node's copies vanish with it
		}
		fmt.Fprintf(&restore, "[ \"$(cat /proc/sys/%s)\" = %q ] || echo %q > /proc/sys/%s\n", k, v, v, k)
	}
	script := fmt.Sprintf(`#!/bin/sh
# Generated by the test harness: tears down real node %[1]s.
roots=$(ls -d /sys/fs/cgroup/*/%[1]s 2>/dev/null)
for i in $(seq 1 50); do
  pids=$(for r in $roots; do find "$r" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
  [ -z "$pids" ] && break
  kill -9 $pids 2>/dev/null
  sleep 0.2
done
for r in $roots; do
  for i in $(seq 1 25); do
    find "$r" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$r" ] || break
    sleep 0.2
  done
done
%[2]s
# Mounts of the node live in its own mount namespace; these are a safety net only.
grep -o ' %[3]s[^ ]*' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
rm -rf %[3]s
`, n.cgroupRoot, restore.String(), n.Dir)
	n.cleanupSh = filepath.Join(os.TempDir(), "pgln-"+n.ID+"-cleanup.sh")
	if err := os.WriteFile(n.cleanupSh, []byte(script), 0o700); err != nil {
		return err
	}
	// The watchdog: waits for this process to die, then cleans up.
	wd := exec.Command("/bin/sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 1; done; sh "$2"; rm -f "$2"`,
		"node-watchdog", strconv.Itoa(os.Getpid()), n.cleanupSh)
	wd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	wd.ExtraFiles = []*os.File{n.lock} // holds the host lock until the clean-up is done
	if err := wd.Start(); err != nil {
		return err
	}
	go func() { _ = wd.Wait() }()
	watchdogs.Store(n.ID, wd.Process)
	return nil
}

var watchdogs sync.Map

// startHolder starts the process that owns the node's network and mount namespaces. It joins
// the node's cgroups first, so that the clean-up finds it; inside the new namespaces it covers
// /run, /var/lib and /var/log with the node's own directories (where containerd, runc, the CNI
// plugins and the kubelet write by default), brings up lo and a port-less bridge with the node's
// address and the default route, and then sleeps. When it and every process that entered its
// namespaces are gone, the namespaces and every mount in them vanish.
func (n *Node) startHolder() error {
	ready := filepath.Join(n.Dir, "ns-ready")
	inner := fmt.Sprintf(`set -e
mount -t tmpfs -o mode=0755 node-run /run
mount --bind %[1]s/varlib /var/lib
mount --bind %[1]s/varlog /var/log
ip link set lo up
ip link add node0 type bridge
ip addr add %[2]s/%[3]d dev node0
ip link set node0 up
ip route add default dev node0
echo ok > %[4]s
exec sleep infinity`, n.Dir, NodeIP, NodeIPPrefix, ready)
	p, err := n.startNamespaces("node-namespaces", inner, ready)
	if err != nil {
		return err
	}
	n.holder = p
	pid := strconv.Itoa(p.Pid())
	fd, err := unix.Open("/proc/"+pid+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	n.netnsFD = fd
	n.dialCtx, n.dialCancel = context.WithCancel(context.Background())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	n.netnsIno = st.Ino
	if err := unix.Stat("/proc/"+pid+"/ns/mnt", &st); err != nil {
		return err
	}
	n.mntnsIno = st.Ino
	return nil
}

// startNamespaces starts a holder: it joins the node's cgroups, enters new network and mount
// namespaces, runs inner there (which writes the file ready when it is done) and sleeps.
func (n *Node) startNamespaces(name, inner, ready string) (*Process, error) {
	outer := `for f in $PGLN_CGROUP_PROCS; do echo $$ > "$f"; done
exec unshare --net --mount --propagation private /bin/sh -c "$1"`
	p, err := StartProcess(name, "/bin/sh", []string{"-c", outer, "node-namespaces", inner},
		[]string{"PGLN_CGROUP_PROCS=" + strings.Join(n.cgProcs, " ")}, n.logFile(name))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return p, nil
		}
		select {
		case <-p.Exited():
			return nil, fmt.Errorf("%s: creating the namespaces failed: %w\n%s", name, p.ExitErr(), p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: the namespaces not ready within 15s:\n%s", name, p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startComponent runs path with args inside the node's namespaces and cgroups.
func (n *Node) startComponent(name, path string, args ...string) error {
	p, err := n.Exec(name, path, args...)
	if err != nil {
		return err
	}
	n.Processes = append(n.Processes, p)
	return nil
}

// Exec starts path with args inside the node's namespaces and system cgroup, as a Process the
// caller stops (the node's clean-up kills it in any case).
func (n *Node) Exec(name, path string, args ...string) (*Process, error) {
	return n.execIn(n.holder, name, path, args...)
}

// execIn starts path inside the namespaces of holder (the first node's or a worker's) and the
// node's system cgroup.
func (n *Node) execIn(holder *Process, name, path string, args ...string) (*Process, error) {
	wrapper := `for f in $PGLN_CGROUP_PROCS; do echo $$ > "$f"; done
exec nsenter -t "$PGLN_HOLDER" --net --mount -- "$@"`
	return StartProcess(name, "/bin/sh", append([]string{"-c", wrapper, name, path}, args...),
		[]string{"PGLN_CGROUP_PROCS=" + strings.Join(n.cgProcs, " "), "PGLN_HOLDER=" + strconv.Itoa(holder.Pid())},
		n.logFile(name))
}

// Run runs a command inside the node's namespaces to its end and returns its combined output.
func (n *Node) Run(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(n.holder.Pid()), "--net", "--mount", "--", path}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (n *Node) logFile(name string) io.Writer {
	if n.opts.LogDir == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(n.opts.LogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil
	}
	n.logFiles = append(n.logFiles, f)
	return f
}

// DialContext dials addr from inside the node's network namespace: the socket is created on
// an OS thread that entered the namespace, and the thread goes back to its own namespace before
// it is released. It must not simply end (a locked thread that ends is destroyed): a child that
// this process started with Pdeathsig from that thread earlier would get the signal.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	if n.dialCtx == nil {
		return nil, errors.New("the node is not started")
	}
	if n.dialCtx.Err() != nil {
		return nil, errors.New("the node is stopping")
	}
	// A request's Transport may leave a dial running after the request has ended; the node's
	// own context ends every dial when the node stops.
	ctx, cancel := context.WithCancel(ctx)
	stopDial := context.AfterFunc(n.dialCtx, cancel)
	n.dials.Add(1)
	go func() {
		defer n.dials.Done()
		defer cancel()
		defer stopDial()
		runtime.LockOSThread()
		own, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer unix.Close(own)
		if err := unix.Setns(n.netnsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("enter the node's network namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
		// Only a thread back in its own namespace may run other goroutines; if going back
		// fails, the thread stays locked and ends with this goroutine.
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.c, r.err
}

// HTTPClient is a client whose connections start inside the node's network namespace: it
// reaches pod IPs, ClusterIPs and the node's address like a process on the node.
func (n *Node) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:     n.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // health probes inside the test's namespace
	}}
}

// startForwarder listens on a free port of the host's loopback and forwards each connection to
// the API server inside the node's namespace: the only way in from the host.
func (n *Node) startForwarder() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.forwarder = l
	n.fwWG.Add(1)
	go func() {
		defer n.fwWG.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				up, err := n.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", apiPort))
				cancel()
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	server := "https://" + l.Addr().String()
	n.KubeconfigPath = filepath.Join(n.Dir, "admin.kubeconfig")
	return n.writeKubeconfig(n.KubeconfigPath, server, "admin")
}

func (n *Node) writeKubeconfig(path, server, cert string) error {
	pki := filepath.Join(n.Dir, "pki")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: %s
    certificate-authority: %s/ca.crt
users:
- name: %s
  user:
    client-certificate: %s/%s.crt
    client-key: %s/%s.key
contexts:
- name: node
  context: {cluster: node, user: %s}
current-context: node
`, server, pki, cert, pki, cert, pki, cert, cert)
	return os.WriteFile(path, []byte(kc), 0o600)
}

func (n *Node) writeConfigs() error {
	p, err := newNodePKI(filepath.Join(n.Dir, "pki"))
	if err != nil {
		return err
	}
	ip := net.ParseIP(NodeIP)
	loop := net.IPv4(127, 0, 0, 1)
	for _, c := range []struct {
		name, cn string
		orgs     []string
		ips      []net.IP
		dns      []string
	}{
		{"apiserver", "kube-apiserver", nil, []net.IP{loop, ip, net.ParseIP(KubernetesServiceIP)},
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"kubelet-serving", NodeName, nil, []net.IP{loop, ip}, []string{NodeName}},
		{"admin", "admin", []string{"system:masters"}, nil, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil},
		{"node", "system:node:" + NodeName, []string{"system:nodes"}, nil, nil},
	} {
		if err := p.issue(c.name, c.cn, c.orgs, c.ips, c.dns); err != nil {
			return err
		}
	}
	for i := 1; i <= n.opts.Workers; i++ {
		name, wip := workerName(i), net.ParseIP(workerIP(i))
		if err := p.issue("kubelet-serving-"+name, name, nil, []net.IP{loop, wip}, []string{name}); err != nil {
			return err
		}
		if err := p.issue("node-"+name, "system:node:"+name, []string{"system:nodes"}, nil, nil); err != nil {
			return err
		}
	}
	inner := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := n.writeKubeconfig(filepath.Join(n.Dir, "admin-inner.kubeconfig"), inner, "admin"); err != nil {
		return err
	}
	if err := n.writeKubeconfig(filepath.Join(n.Dir, "kubelet.kubeconfig"), inner, "node"); err != nil {
		return err
	}
	files := nodeFiles(nodeConf{dir: n.Dir, pki: filepath.Join(n.Dir, "pki"), servingCert: "kubelet-serving",
		name: NodeName, podCIDR: PodCIDR, cgroupRoot: n.cgroupRoot, proxyKubeconfig: filepath.Join(n.Dir, "admin-inner.kubeconfig")})
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// nodeConf is what differs between the nodes' containerd, CNI, kubelet and kube-proxy files.
type nodeConf struct {
	dir, pki, servingCert, name, podCIDR, cgroupRoot, proxyKubeconfig string
}

// nodeFiles are a node's configuration files, by path relative to its directory.
func nodeFiles(c nodeConf) map[string]string {
	return map[string]string{
		"containerd.toml": fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "%[1]s/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[2]s"
  # The VM lacks CAP_SYS_RESOURCE: negative OOM scores cannot be set.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "%[3]s"
    conf_dir = "%[1]s/cni"
`, c.dir, PauseImage, cniBinDir),
		"cni/10-bridge.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "pgl-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "%s"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
`, c.podCIDR),
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 only on these machines; containerd 1.6 has no RuntimeConfig, so the driver is set here.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%[2]s
containerRuntimeEndpoint: unix://%[1]s/containerd.sock
imageServiceEndpoint: unix://%[1]s/containerd.sock
failSwapOn: false
# false lets the kubelet set vm.overcommit_memory, kernel.panic, kernel.panic_on_oops and the
# kernel.keys limits on the host (true refuses to start): the clean-up restores them.
protectKernelDefaults: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
address: 0.0.0.0
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: %[3]s/%[4]s.crt
tlsPrivateKeyFile: %[3]s/%[4]s.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: %[3]s/ca.crt}}
authorization: {mode: AlwaysAllow}
podLogsDir: /var/log/pods
# Images are imported by hand, there is no registry: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%%, imagefs.available: 1%%}
# No cluster DNS and no host resolver in pods: nothing leaves the namespace.
resolvConf: ""
shutdownGracePeriod: 0s
registerNode: true
`, c.dir, c.cgroupRoot, c.pki, c.servingCert),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# 0 leaves the host's conntrack table size and timeouts alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, c.proxyKubeconfig, c.name, ClusterCIDR),
	}
}

func (n *Node) waitHTTP(name, url string, timeout time.Duration) error {
	client := n.HTTPClient(2 * time.Second)
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p := n.proc(name); p != nil {
			select {
			case <-p.Exited():
				return fmt.Errorf("%s exited: %w\n%s", name, p.ExitErr(), tail(p.Logs(), 8<<10))
			default:
			}
		}
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := ""
	if p := n.proc(name); p != nil {
		out = tail(p.Logs(), 8<<10)
	}
	return fmt.Errorf("%s not healthy within %s (last: %s):\n%s", name, timeout, last, out)
}

func (n *Node) proc(name string) *Process {
	for _, p := range n.Processes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (n *Node) waitContainerd(timeout time.Duration) error {
	return waitContainerd(n.proc("containerd"), n.Ctr, timeout)
}

// waitContainerd waits until ctr answers a containerd's version.
func waitContainerd(p *Process, ctr func(context.Context, ...string) (string, error), timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := ctr(ctx, "version")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %w\n%s", p.Name, timeout, err, tail(p.Logs(), 8<<10))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Ctr runs containerd's ctr against the node's containerd, in its k8s.io namespace.
func (n *Node) Ctr(ctx context.Context, args ...string) (string, error) {
	return n.Run(ctx, "ctr", append([]string{"--address", filepath.Join(n.Dir, "containerd.sock"), "--namespace", "k8s.io"}, args...)...)
}

// ImportImage imports a docker-archive tarball into the node's containerd, where the kubelet
// finds it (no registry: pods use IfNotPresent or Never).
func (n *Node) ImportImage(tarball string) error { return importImage(n.Ctr, tarball) }

func importImage(ctr func(context.Context, ...string) (string, error), tarball string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := ctr(ctx, "images", "import", "--no-unpack=false", tarball)
	return err
}

// NodeNames are the Node objects' names: this node's, then the workers'.
func (n *Node) NodeNames() []string {
	names := []string{NodeName}
	for _, w := range n.Workers {
		names = append(names, w.Name)
	}
	return names
}

func (n *Node) waitNodeReady(nodeName string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		for _, p := range n.Processes {
			name := p.Name
			select {
			case <-p.Exited():
				return fmt.Errorf("%s exited: %w\n%s", name, p.ExitErr(), tail(p.Logs(), 8<<10))
			default:
			}
		}
		node, err := n.Clientset.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err == nil {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return nil
					}
					last = c.Reason + ": " + c.Message
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			kubelet := "kubelet"
			if nodeName != NodeName {
				kubelet += "-" + nodeName
			}
			return fmt.Errorf("node %s not Ready within %s (last: %s)\n%s:\n%s", nodeName, timeout, last, kubelet, tail(n.proc(kubelet).Logs(), 8<<10))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Stop stops the node's components, kills whatever remains in its cgroups
// (containers, shims), removes the cgroups and the directory, restores the host sysctls that
// the kubelet changed, and then compares the host with the snapshot taken before the start:
// any difference, and any process still in the node's namespaces, is an error.
func (n *Node) Stop() error {
	if n.stopped {
		return nil
	}
	n.stopped = true
	var errs []error
	if n.dialCancel != nil {
		n.dialCancel()
		n.dials.Wait()
	}
	if n.forwarder != nil {
		_ = n.forwarder.Close()
	}
	// The kubelet first (it would restart containers), then the pods: their connections to
	// the API server (watches of the webhook's rotator, for example) would hold up its
	// graceful shutdown. Then the rest in reverse order.
	first := []string{"kube-proxy", "kubelet"}
	for _, w := range n.Workers {
		first = append(first, "kube-proxy-"+w.Name, "kubelet-"+w.Name)
	}
	for _, name := range first {
		if p := n.proc(name); p != nil {
			if err := p.Stop(20 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := n.killPods(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	for i := len(n.Processes) - 1; i >= 0; i-- {
		if err := n.Processes[i].Stop(20 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range n.logFiles {
		_ = f.Close()
	}
	if n.netnsFD >= 0 {
		_ = unix.Close(n.netnsFD)
		n.netnsFD = -1
	}
	if n.cleanupSh != "" {
		out, err := exec.Command("/bin/sh", n.cleanupSh).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("clean-up script: %w: %s", err, out))
		}
		_ = os.Remove(n.cleanupSh)
	}
	if wd, ok := watchdogs.LoadAndDelete(n.ID); ok {
		// Its process group: the shell and its current `sleep`, which shares the host lock.
		_ = syscall.Kill(-wd.(*os.Process).Pid, syscall.SIGKILL)
	}
	holders := []*Process{n.holder}
	for _, w := range n.Workers {
		holders = append(holders, w.holder)
	}
	for _, h := range holders {
		if h == nil {
			continue
		}
		select {
		case <-h.Exited():
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("the namespace holder %s survived the clean-up", h.Name))
		}
	}
	if n.Before != nil {
		if left := n.Leftovers(); len(left) > 0 {
			errs = append(errs, fmt.Errorf("the node left this on the host:\n  %s", strings.Join(left, "\n  ")))
		}
	}
	if n.lock != nil {
		_ = n.lock.Close()
	}
	return errors.Join(errs...)
}

// killPods SIGKILLs every process in the node's cgroups outside its system cgroup (the pods'
// containers and sandboxes) until none is left.
func (n *Node) killPods(timeout time.Duration) error {
	root := filepath.Join("/sys/fs/cgroup", "pids", n.cgroupRoot)
	deadline := time.Now().Add(timeout)
	for {
		var pids []int
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return nil //nolint:nilerr // a cgroup removed while walking
			}
			if d.IsDir() && path == filepath.Join(root, "system") {
				return filepath.SkipDir
			}
			if d.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids = append(pids, pid)
					}
				}
			}
			return nil
		})
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod processes %v survive SIGKILL", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Leftovers compares the host with the snapshot taken before the node started and looks for
// any process still in the node's namespaces or cgroups; empty means the host is as it was.
// The node's namespaces are freed asynchronously by the kernel once their last user is gone,
// so it retries for a few seconds.
func (n *Node) Leftovers() []string {
	var left []string
	for i := 0; i < 25; i++ {
		left = nil
		after, err := TakeHostSnapshot()
		if err != nil {
			return []string{err.Error()}
		}
		left = append(left, after.Diff(n.Before)...)
		left = append(left, n.processesLeft()...)
		for _, h := range cgroupHierarchies() {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, n.cgroupRoot)); err == nil {
				left = append(left, "cgroup "+h+"/"+n.cgroupRoot)
			}
		}
		if _, err := os.Stat(n.Dir); err == nil {
			left = append(left, "directory "+n.Dir)
		}
		if len(left) == 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return left
}

// processesLeft lists processes whose network or mount namespace is the node's.
func (n *Node) processesLeft() []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []string{err.Error()}
	}
	var left []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		type nsID struct {
			kind string
			ino  uint64
		}
		all := []nsID{{"net", n.netnsIno}, {"mnt", n.mntnsIno}}
		for _, w := range n.Workers {
			all = append(all, nsID{"net", w.netnsIno}, nsID{"mnt", w.mntnsIno})
		}
		for _, ns := range all {
			if ns.ino == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat("/proc/"+e.Name()+"/ns/"+ns.kind, &st) == nil && st.Ino == ns.ino {
				cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				left = append(left, fmt.Sprintf("process %s in the node's %s namespace: %s", e.Name(), ns.kind, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
			}
		}
	}
	return left
}

// ChartNamespace is where the node tests and `make run-node` install the chart.
const ChartNamespace = "pushgateway-lifecycle-system"

// Helm runs bin/helm against the node as admin, with helm's own state in dir, and returns its
// combined output.
func (n *Node) Helm(ctx context.Context, dir string, args ...string) (string, error) {
	path, err := HelmPath()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, append(args, "--kubeconfig="+n.KubeconfigPath)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(dir, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "config"), "HELM_DATA_HOME="+filepath.Join(dir, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// InstallChart installs charts/pushgateway-lifecycle as ChartReleaseName into ChartNamespace
// with the chart's defaults (its default image reference is what WebhookImage imports) plus
// extra helm arguments, and waits until it is ready.
func (n *Node) InstallChart(ctx context.Context, helmDir string, extra ...string) (string, error) {
	chart, err := ChartDir()
	if err != nil {
		return "", err
	}
	args := append([]string{"install", ChartReleaseName, chart, "--namespace", ChartNamespace, "--create-namespace", "--wait", "--timeout", "4m"}, extra...)
	return n.Helm(ctx, helmDir, args...)
}
