// Command pause is the real node's sandbox process (the pause image): it holds a pod's
// namespaces, reaps orphaned children when it is PID 1, and exits on SIGINT or SIGTERM, as
// Kubernetes' own pause does. A static Go binary, so the image needs no C toolchain and no
// registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
