package topology

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// createNamedNetns creates a network namespace bound at /run/netns/name, like `ip netns add`,
// and returns a handle to it. The calling goroutine's thread is back in its own namespace when it
// returns. It fails if the name is taken.
func createNamedNetns(name string) (_ netns.NsHandle, err error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return netns.None(), fmt.Errorf("create %s: %w", netnsDir, err)
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return netns.None(), fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()

	runtime.LockOSThread()
	origin, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("get current netns: %w", err)
	}
	defer origin.Close()

	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("unshare netns: %w", err)
	}
	// The thread is now in the new namespace: bind it, then go back.
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	h := netns.None()
	mountErr := unix.Mount(self, path, "none", unix.MS_BIND, "")
	if mountErr == nil {
		h, err = netns.GetFromPath(path)
	}
	if setErr := netns.Set(origin); setErr != nil {
		// Leave the thread locked: it dies with the goroutine instead of serving others in the
		// wrong namespace.
		if mountErr == nil {
			unix.Unmount(path, unix.MNT_DETACH)
		}
		if h.IsOpen() {
			h.Close()
		}
		return netns.None(), fmt.Errorf("restore netns: %w", setErr)
	}
	runtime.UnlockOSThread()
	if mountErr != nil {
		return netns.None(), fmt.Errorf("bind netns to %s: %w", path, mountErr)
	}
	if err != nil {
		unix.Unmount(path, unix.MNT_DETACH)
		return netns.None(), fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}

// deleteNamedNetns undoes createNamedNetns, like `ip netns delete`. A missing name is not an
// error. The namespace itself goes away when the last handle to it is closed.
func deleteNamedNetns(name string) error {
	path := filepath.Join(netnsDir, name)
	var errs []error
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
	}
	return errors.Join(errs...)
}

// doInNetns runs fn on a locked OS thread switched into ns. If switching back fails, the
// thread stays locked so it is discarded when the goroutine ends. Sockets created by fn stay
// in ns; goroutines started by fn do not run in ns.
func doInNetns(ns netns.NsHandle, fn func() error) (err error) {
	runtime.LockOSThread()
	origin, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer origin.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	defer func() {
		if setErr := netns.Set(origin); setErr != nil {
			err = errors.Join(err, fmt.Errorf("restore netns: %w", setErr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}
