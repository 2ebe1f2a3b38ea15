package doctor

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Collect builds the report for the namespace in opts.Netns. Facts that
// cannot be read become "unknown" items; Collect fails only when the
// namespace cannot be entered or ctx is done.
func Collect(ctx context.Context, opts Options) (*Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &collector{fsys: opts.FS, net: opts.Net}
	live := c.fsys == nil || c.net == nil
	if c.fsys == nil {
		c.fsys = liveFS{}
	}
	if c.net == nil {
		c.net = liveNet{}
	}
	r := &Report{SchemaVersion: SchemaVersion, Netns: opts.Netns}
	run := func() error { return c.collect(ctx, r) }
	var err error
	if live {
		err = inNetns(opts.Netns, run)
	} else {
		err = run()
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

type collector struct {
	fsys fs.FS
	net  NetSource

	release string
	config  kernel.Config
	links   []Link
	linkErr error
}

func (c *collector) collect(ctx context.Context, r *Report) error {
	c.release = c.readTrim("proc/sys/kernel/osrelease")
	r.Kernel = c.release
	c.config = kernel.LoadConfig(c.fsys, c.release)
	c.links, c.linkErr = c.net.Links()

	r.Network = c.network()
	if err := ctx.Err(); err != nil {
		return err
	}
	kp, kpItems := c.kubeProxy()
	r.KubeProxy = kp
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Facts = c.facts(r.Network)
	r.Sections = []Section{
		{ID: SectionKernel, Title: "Kernel and tracing", Items: c.kernelItems()},
		{ID: SectionBackends, Title: "BPF backends"},
		{ID: SectionModules, Title: "Kernel modules", Items: c.moduleItems()},
		{ID: SectionSysctls, Title: "Sysctls (in the inspected netns)", Items: sysctlItems(r.Facts, kp.Mode)},
		{ID: SectionKubeProxy, Title: "kube-proxy", Items: kpItems},
		{ID: SectionNetwork, Title: "Overlay and bridge devices", Items: c.networkItems(r.Network)},
	}
	return ctx.Err()
}

// read returns the file's content and whether it could be read.
func (c *collector) read(name string) ([]byte, error) {
	return fs.ReadFile(c.fsys, name)
}

func (c *collector) readTrim(name string) string {
	b, err := c.read(name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (c *collector) exists(name string) bool {
	_, err := fs.Stat(c.fsys, name)
	return err == nil
}

func (c *collector) linkByIndex(idx int) *Link {
	for i := range c.links {
		if c.links[i].Index == idx {
			return &c.links[i]
		}
	}
	return nil
}

func (c *collector) linkByName(name string) *Link {
	for i := range c.links {
		if c.links[i].Name == name {
			return &c.links[i]
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
