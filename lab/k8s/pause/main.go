// Command pause is the lab's pod sandbox process: it holds the pod's
// namespaces, reaps the children it inherits, and exits on SIGINT or
// SIGTERM. lab/k8s/build.sh builds it static (CGO_ENABLED=0) and
// internal/k8slab packs it into the sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
