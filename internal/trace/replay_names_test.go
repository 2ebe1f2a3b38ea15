package trace

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/record/recordtest"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestReplayPodNames replays the demo topology's ClusterIP recording with
// Kubernetes names added to it, as a live trace with a source stores
// them: the client's SYN to the ClusterIP names the client and, behind
// the DNAT, the server; --pod and --service select by the stored names.
func TestReplayPodNames(t *testing.T) {
	src := filepath.Join(pcapDir, "clusterip.pcapng")
	file := filepath.Join(t.TempDir(), "named.pcapng")
	names := k8s.Names{
		Source: "apiserver https://192.0.2.1:6443",
		Pods: []k8s.Pod{
			{Namespace: "default", Name: "client", IPs: []netip.Addr{topology.ClientIP}},
			{Namespace: "default", Name: "server", IPs: []netip.Addr{topology.ServerIP}},
		},
		Services: []k8s.Service{{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{topology.ClusterIP.Addr()}, Endpoints: []netip.Addr{topology.ServerIP}}},
	}
	js, err := json.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	recordtest.Rewrite(t, src, file, func(m *record.Meta) { m.Kubernetes = js })

	syn := func(opts ReplayOptions) *stitch.Path {
		t.Helper()
		out := &keep{}
		if _, err := Replay(context.Background(), file, opts, out); err != nil {
			t.Fatalf("replay %+v: %v", opts.Select, err)
		}
		for _, p := range out.paths {
			if p.Src.Addr() == topology.ClientIP && p.Dst == topology.ClusterIP && p.TCPFlags == 0x02 {
				return p
			}
		}
		t.Fatalf("replay %+v: no SYN to the ClusterIP among %d paths", opts.Select, len(out.paths))
		return nil
	}
	for _, opts := range []ReplayOptions{{}, {Select: k8s.Selection{Pods: []string{"default/client"}}}, {Select: k8s.Selection{Services: []string{"default/web"}}}} {
		p := syn(opts)
		if p.SrcPod != "default/client" || p.DstPod != "default/server" {
			t.Errorf("replay %+v: SYN from %q to %q, want default/client → default/server", opts.Select, p.SrcPod, p.DstPod)
		}
	}
	// A pod the recording does not name, and a recording without names.
	_, err = Replay(context.Background(), file, ReplayOptions{Select: k8s.Selection{Pods: []string{"default/gone"}}}, &keep{})
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Errorf("--pod default/gone: %v, want an input error", err)
	}
	_, err = Replay(context.Background(), src, ReplayOptions{Select: k8s.Selection{Pods: []string{"default/client"}}}, &keep{})
	if !errors.As(err, &ie) {
		t.Errorf("--pod on a recording without names: %v, want an input error", err)
	}
}

// keep is a renderer that keeps copies of the paths.
type keep struct{ paths []*stitch.Path }

func (k *keep) Render(p *stitch.Path) error { k.paths = append(k.paths, p.Clone()); return nil }
func (k *keep) Close() error                { return nil }

// TestReplayPodNamesRefreshed replays a recording whose Kubernetes names
// changed during the trace (a refresh that learned the server pod): paths
// that started before the change are named from the names at the start,
// the others from the new ones.
func TestReplayPodNamesRefreshed(t *testing.T) {
	src := filepath.Join(pcapDir, "clusterip.pcapng")
	all := &keep{}
	if _, err := Replay(context.Background(), src, ReplayOptions{}, all); err != nil {
		t.Fatal(err)
	}
	if len(all.paths) < 2 {
		t.Fatalf("%d paths", len(all.paths))
	}
	from := all.paths[1].Mono // the second packet on
	client := k8s.Pod{Namespace: "default", Name: "client", IPs: []netip.Addr{topology.ClientIP}}
	server := k8s.Pod{Namespace: "default", Name: "server", IPs: []netip.Addr{topology.ServerIP}}
	start, _ := json.Marshal(k8s.Names{Pods: []k8s.Pod{client}})
	later, _ := json.Marshal(k8s.Names{Pods: []k8s.Pod{client, server}})

	recs, meta, err := record.ReadAll(src)
	if err != nil {
		t.Fatal(err)
	}
	meta.Kubernetes = start
	file := filepath.Join(t.TempDir(), "refreshed.pcapng")
	w, err := record.Create(file, meta)
	if err != nil {
		t.Fatal(err)
	}
	var d decode.Decoder
	var ev decode.Event
	added := false
	for _, rec := range recs {
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		if !added && ev.TS >= from {
			if err := w.AddKubernetes(from, later); err != nil {
				t.Fatal(err)
			}
			added = true
		}
		if err := w.Write(rec, &ev, "copied"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(meta); err != nil {
		t.Fatal(err)
	}

	out := &keep{}
	if _, err := Replay(context.Background(), file, ReplayOptions{}, out); err != nil {
		t.Fatal(err)
	}
	var before, after int
	for _, p := range out.paths {
		named := p.SrcPod == "default/server" || p.DstPod == "default/server"
		switch {
		case p.Mono < from && named:
			t.Errorf("packet #%d, from before the refresh, names the server: %s → %s", p.ID, p.SrcPod, p.DstPod)
		case p.Mono < from:
			before++
		case named:
			after++
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("%d paths before the refresh without the server, %d after with it; want some of each", before, after)
	}
}
