package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test binary killed outright (go test -timeout, SIGKILL, a crash) runs no cleanup; the
// watchdog must still stop etcd, kube-apiserver, kube-controller-manager and the webhook's
// stand-ins and remove their scratch directories. The child is this test binary re-executed.
func TestWatchdogCleansUpAfterKill(t *testing.T) {
	if os.Getenv("HARNESS_WATCHDOG_CHILD") == "1" {
		watchdogChild()
		return
	}
	if testing.Short() {
		t.Skip("starts a real control plane")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchdogCleansUpAfterKill$", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), "HARNESS_WATCHDOG_CHILD=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var pids []int
	var dirs []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "PIDS "); ok {
			for _, f := range strings.Fields(rest) {
				n, _ := strconv.Atoi(f)
				pids = append(pids, n)
			}
		}
		if rest, ok := strings.CutPrefix(line, "DIRS "); ok {
			dirs = strings.Fields(rest)
			break
		}
	}
	if len(pids) < 3 || len(dirs) < 3 {
		t.Fatalf("child reported pids %v dirs %v", pids, dirs)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("pid %d not running before the kill", pid)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var alive []int
		for _, pid := range pids {
			// Those are not our children: once killed they are reaped by init, so a failed
			// signal 0 means gone.
			if syscall.Kill(pid, 0) == nil {
				alive = append(alive, pid)
			}
		}
		var left []string
		for _, d := range dirs {
			if _, err := os.Stat(d); err == nil {
				left = append(left, d)
			}
		}
		if len(alive) == 0 && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range alive {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("20s after the kill: processes alive %v, directories left %v", alive, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func watchdogChild() {
	cp, err := Start(Options{ControllerManager: true})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	pids := append([]int(nil), cp.pids...)
	pids = append(pids, cp.ControllerManager.Pid())
	var sb strings.Builder
	for _, p := range pids {
		fmt.Fprintf(&sb, " %d", p)
	}
	fmt.Println("PIDS" + sb.String())
	fmt.Println("DIRS " + strings.Join(cp.dirs, " "))
	select {} // killed by the parent
}
