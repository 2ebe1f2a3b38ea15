package k8slab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Close removes the lab: everything Down removes.
func (l *Lab) Close() error {
	return teardown(context.Background(), l.Dir, l.state, l.Bins)
}

// Down removes the lab whose state is in dir (make lab-down). A dir
// without a lab is not an error.
func Down(ctx context.Context, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lab state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("read lab state: %w", err)
	}
	bins, _ := FindBinaries() // what is found is enough to remove the lab
	return teardown(ctx, dir, st, bins)
}

// teardown removes, in order: the node agents (kube-proxy, flanneld,
// kubelet), the pods (crictl rmp: the CNI plugins release their addresses
// and namespaces), containerd and its shims and anything left in the lab's
// cgroups, the control plane, mounts under dir, the namespaces, the
// underlay bridge, the cgroups, the files kubelet and friends put outside
// dir, and dir itself; and it restores the sysctls kubelet changed. It
// goes on after an error and returns them all.
func teardown(ctx context.Context, dir string, st state, bins Binaries) error {
	var errs []error
	stopNamed := func(prefixes ...string) {
		for _, p := range slices.Backward(st.Procs) {
			for _, pre := range prefixes {
				if strings.HasPrefix(p.Name, pre) {
					stopPID(p.PID, p.Exe, 10*time.Second)
				}
			}
		}
	}
	stopNamed("kube-proxy-", "flanneld-", "kubelet-")
	for _, sock := range st.Sockets {
		if bins.Crictl == "" {
			break
		}
		if _, err := os.Stat(sock); err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, bins.Crictl, "--runtime-endpoint", "unix://"+sock, "--timeout", "20s", "rmp", "--all", "--force").CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove pods of %s: %w: %s", sock, err, strings.TrimSpace(string(out))))
		}
	}
	stopNamed("containerd-")
	// Shims outlive containerd; they name its socket in -address.
	for _, pid := range pidsMatching(func(args []string) bool {
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && slices.Contains(st.Sockets, args[i+1]) {
				return true
			}
		}
		return false
	}) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	killCgroups(st.Cgroups)
	stopNamed("kube-apiserver", "etcd")
	for _, p := range st.Procs {
		if p.alive() {
			errs = append(errs, fmt.Errorf("stop %s (pid %d): still running", p.Name, p.PID))
		}
	}

	// Pod namespaces the CNI DEL did not remove, then mounts left under dir
	// (overlay rootfs, shm) and the node namespaces.
	for _, name := range netnsNames() {
		if strings.HasPrefix(name, "cni-") && !slices.Contains(st.NetnsBefore, name) || slices.Contains(st.Netns, name) {
			unmount(netnsPath(name))
			if err := os.Remove(netnsPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove netns %s: %w", name, err))
			}
		}
	}
	for _, m := range mountsUnder(dir) {
		unmount(m)
	}
	// A veth goes with its peer's namespace, but only once the last
	// process in it is gone: delete the root ends, then the bridge.
	for _, dev := range append(slices.Clone(st.Veths), st.Bridge) {
		if dev == "" {
			continue
		}
		if out, err := exec.CommandContext(ctx, "ip", "link", "del", dev).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("delete link %s: %w: %s", dev, err, strings.TrimSpace(string(out))))
		}
	}
	for _, root := range st.Cgroups {
		for _, m := range cgroupMounts() {
			if err := removeCgroup(filepath.Join(m, root)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for key, val := range st.Sysctls {
		p := "/proc/sys/" + key
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != val {
			if err := os.WriteFile(p, []byte(val), 0); err != nil {
				errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", key, val, err))
			}
		}
	}
	// Deepest first: /run/containerd/s before /run/containerd.
	paths := slices.Sorted(mapsKeys(st.Paths))
	for _, p := range slices.Backward(paths) {
		before := st.Paths[p]
		if before == nil { // the lab made it
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
			continue
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if !slices.Contains(before, e.Name()) && !slices.Contains(paths, filepath.Join(p, e.Name())) {
				if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
					errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(p, e.Name()), err))
				}
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// killCgroups SIGKILLs every process left in the cgroup roots (containers
// whose shim is gone), in every hierarchy.
func killCgroups(roots []string) {
	for _, root := range roots {
		for _, m := range cgroupMounts() {
			filepath.WalkDir(filepath.Join(m, root), func(path string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
	}
}

// removeCgroup removes a cgroup directory tree, children first (cgroup
// directories go with rmdir; their files cannot be removed). Processes
// take a moment to leave a cgroup after they die.
func removeCgroup(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	for _, d := range slices.Backward(dirs) {
		var err error
		for range 50 {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// mountsUnder lists mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			ms = append(ms, f[4])
		}
	}
	slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) })
	return ms
}

func unmount(path string) {
	for syscall.Unmount(path, syscall.MNT_DETACH) == nil {
	}
}
