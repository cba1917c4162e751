package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

// Options for a control plane.
type Options struct {
	// ControllerManager also starts kube-controller-manager with the deployment, replicaset,
	// statefulset and cronjob controllers, so that workloads get their ReplicaSets, Jobs and
	// Pods (no scheduler, no kubelet: the Pods stay Pending, which is all an admission test
	// needs).
	ControllerManager bool
	// Log receives the output of kube-controller-manager when set (it is captured either way).
	Log io.Writer
	// APIServerFlags are extra kube-apiserver flags, name without "--" to value, e.g.
	// {"feature-gates": "PodLifecycleSleepAction=false"} (test/versions).
	APIServerFlags map[string]string
}

// ControlPlane is etcd + kube-apiserver (envtest) and, optionally, kube-controller-manager.
type ControlPlane struct {
	Env *envtest.Environment
	// Config is the admin user's REST config (group system:masters).
	Config *rest.Config
	// Clientset is built from Config.
	Clientset kubernetes.Interface
	// BinDir holds kube-apiserver, kube-controller-manager, kubectl and etcd.
	BinDir string
	// Dir is a scratch directory removed by Stop.
	Dir string
	// KubeconfigPath is an admin kubeconfig file for kubectl.
	KubeconfigPath string
	// CertDir holds tls.crt and tls.key, a serving certificate for 127.0.0.1 and localhost
	// that envtest generated; CAData is what a webhook configuration's caBundle needs.
	CertDir string
	CAData  []byte
	// ControllerManager is nil unless Options.ControllerManager.
	ControllerManager *Process

	pids []int
	dirs []string
}

// Start starts a control plane. Stop it with Stop (also on failure paths).
func Start(opts Options) (cp *ControlPlane, err error) {
	binDir, err := K8sBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "harness-cp-")
	if err != nil {
		return nil, err
	}
	cp = &ControlPlane{BinDir: binDir, Dir: dir}
	defer func() {
		if err != nil {
			_ = cp.Stop()
			cp = nil
		}
	}()
	cp.Env = &envtest.Environment{
		BinaryAssetsDirectory: binDir,
		// Two shared cores and concurrent test packages: envtest's 20 s default is too tight.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			LocalServingHost: "127.0.0.1",
		},
	}
	if len(opts.APIServerFlags) > 0 {
		args := cp.Env.ControlPlane.GetAPIServer().Configure()
		for k, v := range opts.APIServerFlags {
			args.Set(k, v)
		}
	}
	// envtest does not expose the pids of etcd and kube-apiserver: register whatever children
	// appear while it starts them, so the watchdog covers a test killed during Start too.
	startDone := make(chan struct{})
	watcherDone := make(chan []int)
	go func() {
		var pids []int
		for {
			added, _ := watchChildren()
			pids = append(pids, added...)
			select {
			case <-startDone:
				added, _ = watchChildren()
				// Keep only the long-running ones: a short-lived helper's pid could be
				// reused by an unrelated process, which the watchdog must never signal.
				var live []int
				for _, pid := range append(pids, added...) {
					if isLiveChild(pid) {
						live = append(live, pid)
					} else {
						unwatch(pid)
					}
				}
				watcherDone <- live
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	cfg, err := cp.Env.Start()
	close(startDone)
	cp.pids = <-watcherDone
	cp.dirs = []string{dir, cp.Env.WebhookInstallOptions.LocalServingCertDir}
	if api := cp.Env.ControlPlane.APIServer; api != nil {
		cp.dirs = append(cp.dirs, api.CertDir)
	}
	if etcd := cp.Env.ControlPlane.Etcd; etcd != nil {
		cp.dirs = append(cp.dirs, etcd.DataDir)
	}
	watchDirs(cp.dirs...)
	if err != nil {
		return cp, fmt.Errorf("harness: start kube-apiserver and etcd: %w", err)
	}
	cp.Config = cfg
	cp.CertDir = cp.Env.WebhookInstallOptions.LocalServingCertDir
	cp.CAData = cp.Env.WebhookInstallOptions.LocalServingCAData
	if cp.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return cp, err
	}
	cp.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err = os.WriteFile(cp.KubeconfigPath, cp.Env.KubeConfig, 0o600); err != nil {
		return cp, err
	}
	if opts.ControllerManager {
		if err = cp.startControllerManager(opts.Log); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// NewControlPlane starts a control plane for a test and stops it in t.Cleanup.
func NewControlPlane(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	cp, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && cp.ControllerManager != nil {
			t.Logf("kube-controller-manager output (last 8 KiB):\n%s", tail(cp.ControllerManager.Logs(), 8<<10))
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return cp
}

func (cp *ControlPlane) startControllerManager(log io.Writer) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	certDir := filepath.Join(cp.Dir, "kcm-certs")
	args := []string{
		"--kubeconfig=" + cp.KubeconfigPath,
		// No --authentication-kubeconfig: envtest's apiserver has no request-header CA, and
		// delegated authentication would log an error every few seconds about it. /healthz is
		// always allowed, which is all the harness reads.
		"--controllers=deployment,replicaset,statefulset,cronjob",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--v=1",
	}
	p, err := StartProcess("kube-controller-manager", filepath.Join(cp.BinDir, "kube-controller-manager"), args, nil, log)
	if err != nil {
		return err
	}
	cp.ControllerManager = p
	client := &http.Client{
		Timeout: 2 * time.Second,
		// Its serving certificate is self-signed in --cert-dir; only liveness matters here.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback health probe
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.Exited():
			return fmt.Errorf("kube-controller-manager exited: %w\n%s", p.ExitErr(), tail(p.Logs(), 8<<10))
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-controller-manager not healthy within 90s:\n%s", tail(p.Logs(), 8<<10))
}

// Stop stops kube-controller-manager, kube-apiserver and etcd and removes the scratch files.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.ControllerManager != nil {
		errs = append(errs, cp.ControllerManager.Stop(15*time.Second))
	}
	if cp.Env != nil {
		errs = append(errs, cp.Env.Stop())
	}
	unwatchAll(cp.pids)
	forgetDirs(cp.dirs...)
	if cp.Dir != "" {
		errs = append(errs, os.RemoveAll(cp.Dir))
	}
	return errors.Join(errs...)
}

// KubectlPath is the kubectl built with the control plane.
func (cp *ControlPlane) KubectlPath() string { return filepath.Join(cp.BinDir, "kubectl") }

// Kubectl runs kubectl against the control plane as admin and returns stdout and stderr
// (kubectl prints admission warnings on stderr).
func (cp *ControlPlane) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, cp.KubectlPath(), append([]string{"--kubeconfig=" + cp.KubeconfigPath}, args...)...)
	cmd.Stdin = stdin
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, e.String())
	}
	return o.String(), e.String(), err
}

// RESTConfig returns a copy of the admin config, safe to modify (e.g. its WarningHandler).
func (cp *ControlPlane) RESTConfig() *rest.Config { return rest.CopyConfig(cp.Config) }

// CreateNamespace creates a namespace, opted in to injection when optIn. It tolerates an
// existing one and then just sets the label as asked.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, name string, optIn bool) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if optIn {
		ns.Labels = map[string]string{annotations.LabelInjection: annotations.InjectionEnabled}
	}
	_, err := cp.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return cp.SetNamespaceOptIn(ctx, name, optIn)
	}
	return err
}

// SetNamespaceOptIn labels (or unlabels) an existing namespace.
func (cp *ControlPlane) SetNamespaceOptIn(ctx context.Context, name string, optIn bool) error {
	ns, err := cp.Clientset.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	if optIn {
		ns.Labels[annotations.LabelInjection] = annotations.InjectionEnabled
	} else {
		delete(ns.Labels, annotations.LabelInjection)
	}
	_, err = cp.Clientset.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	return err
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// WaitForPods waits until at least n pods match selector in namespace and returns them.
func (cp *ControlPlane) WaitForPods(ctx context.Context, namespace, selector string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		list, err := cp.Clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(list.Items) >= n {
			return list.Items, nil
		}
		select {
		case <-ctx.Done():
			got := 0
			if list != nil {
				got = len(list.Items)
			}
			msg := fmt.Sprintf("%d pods matching %q in %s within %s, want %d", got, selector, namespace, timeout, n)
			if err != nil {
				return nil, fmt.Errorf("%s (last error: %w)", msg, err)
			}
			return nil, errors.New(msg)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
