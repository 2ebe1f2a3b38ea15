package diagnose

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// FuzzReports feeds node reports as a recording holds them (JSON by netns
// inode) through doctor's decoding and the advisor: damaged reports cost
// facts, never a panic.
func FuzzReports(f *testing.F) {
	r, err := doctor.Collect(context.Background(), doctor.Options{Netns: "node1", FS: nodeFS(), Net: &fakeNet{links: flannelLinks(),
		ipvs: &doctor.IPVS{Available: true, Services: 1, VirtualServices: []doctor.VirtualService{{Protocol: "TCP", Address: "10.96.0.10:80", Scheduler: "rr"}}}}})
	if err != nil {
		f.Fatal(err)
	}
	fresh, err := json.Marshal(map[uint32]*doctor.Report{inoNode1: r})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fresh)
	old := *r
	old.Facts = nil
	v1, _ := json.Marshal(map[uint32]*doctor.Report{inoNode1: &old})
	f.Add(v1)
	f.Add(bytes.Replace(v1, []byte(`"value":"0 (off)"`), []byte(`"value":""`), 1))
	f.Add(bytes.Replace(fresh, []byte(`"state":"present","value":1`), []byte(`"state":"present"`), 1))
	f.Add([]byte(`{"4026531840":{"facts":{"conntrack":{"count":{"state":"present","value":5},"max":{"state":"present","value":0}}}}}`))
	kp, err := doctor.Collect(context.Background(), doctor.Options{Netns: "node1", FS: nodeFS(), Net: &fakeNet{links: flannelLinks(), rules: kubeProxyRules()}})
	if err != nil {
		f.Fatal(err)
	}
	withRules, _ := json.Marshal(map[uint32]*doctor.Report{inoNode1: kp})
	f.Add(withRules)
	withServices, _ := json.Marshal(serviceReports(f))
	f.Add(withServices)
	// The reports of the committed recordings, made on a real kernel.
	files, _ := filepath.Glob("../../testdata/pcaps/*.pcapng")
	for _, file := range files {
		rec, err := record.OpenFile(file) // the reports are in its header
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(rec.Meta().Reports))
		rec.Close()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reports, _, err := doctor.DecodeReports(data)
		if err != nil {
			return
		}
		a, s := New(reports), NewServices(reports)
		for _, inode := range slices.Sorted(maps.Keys(reports)) {
			for _, p := range pathsThrough(inode) {
				s.Annotate(p)
				a.Annotate(p)
			}
		}
	})
}

// pathsThrough are paths through the node of inode that make the advisor
// read every fact: drops for each reason it explains, bridged and
// encapsulated packets, an IPVS hop without its scheduler.
func pathsThrough(inode uint32) []*stitch.Path {
	at := func(kind hop.Kind, dev string, l uint32) stitch.Hop {
		return mkHop(kind, "node", inode, dev, l)
	}
	var ps []*stitch.Path
	rx := at(hop.Rx, "vethaaaa", 1400)
	for _, reason := range []string{"IP_RPFILTER", "IP_INADDRERRORS", "IP_INNOROUTES", "PKT_TOO_BIG", "NO_SOCKET", "NOT_SPECIFIED", "NETFILTER_DROP", "VXLAN_INVALID_HDR"} {
		for _, hook := range []hop.Hook{hop.NoHook, hop.Prerouting, hop.Forward} {
			d := dropped(at(hop.NoKind, "flannel.1", 1400), reason)
			d.Hook = hook
			ps = append(ps, path(rx, nf(at(hop.NoKind, "cni0", 1400), hop.Prerouting, "cni0", "cni0"), at(hop.Tx, "flannel.1", 1414), d))
		}
	}
	ps = append(ps, path(rx, at(hop.Tx, "vethbbbb", 1414)))
	enc := at(hop.Tx, "eth0", 1500)
	enc.Outer = vxlan
	ps = append(ps, path(rx, at(hop.Tx, "flannel.1", 1464), enc))
	ipvs := at(hop.IPVS, "cni0", 60)
	ipvs.IPVS = &stitch.IPVS{Service: netip.MustParseAddrPort("10.96.0.10:80"), RealServer: server}
	ps = append(ps, path(rx, ipvs))
	// Packets to Services without endpoints, and the errors answering them.
	for _, hook := range []hop.Hook{hop.Forward, hop.Input} {
		for _, dst := range []netip.AddrPort{noSvc, nodePortSv} {
			p := synTo(dst, 6, hook, "NETFILTER_DROP")
			for i := range p.Hops {
				p.Hops[i].NetnsInode = inode
			}
			ps = append(ps, p)
			q := portUnreachable(dst.Addr(), quoted(6, dst))
			q.Hops[0].NetnsInode = inode
			ps = append(ps, q)
		}
	}
	return ps
}
