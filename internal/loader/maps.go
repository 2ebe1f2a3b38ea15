package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/pathtrace/pathtrace/internal/bpf"
)

// sharedMaps are the maps the programs of every object share
// (bpf/include/common.h: the ring buffer, the lost counter, the packets
// followed and their hint, the connections followed, their hint and
// counters, the per-CPU scratch and table frames), and the
// ones only the kprobe programs have (their per-CPU return stacks). They
// are created once per tracer, from the tracepoint and kprobe objects, and
// handed to every program loaded; TestObjectMaps checks that no object has
// a map this list lacks.
type sharedMaps struct {
	bpf.TracepointMaps
	kprobe kprobeMaps
}

// kprobeMaps are the maps of the kprobe object alone.
type kprobeMaps struct {
	NfStack   *ebpf.Map `ebpf:"nf_stack"`
	IpvsStack *ebpf.Map `ebpf:"ipvs_stack"`
}

// create makes the maps from the objects' specs (the ring buffer's size
// as s.tp asks); the kprobe object's only where it is loaded.
func (m *sharedMaps) create(s *specs) error {
	if err := s.tp.LoadAndAssign(&m.TracepointMaps, nil); err != nil {
		return fmt.Errorf("create maps: %w", err)
	}
	if s.kprobe == nil {
		return nil
	}
	if err := s.kprobe.LoadAndAssign(&m.kprobe, nil); err != nil {
		return fmt.Errorf("create kprobe maps: %w", err)
	}
	return nil
}

// replacements are the maps a program of spec is loaded with: the shared
// ones it has, by name.
func (m *sharedMaps) replacements(spec *ebpf.CollectionSpec) map[string]*ebpf.Map {
	all := map[string]*ebpf.Map{
		"events":          m.Events,
		"lost":            m.Lost,
		"pt_scratch":      m.PtScratch,
		"table_stack":     m.TableStack,
		"tracked":         m.Tracked,
		"tracked_hint":    m.TrackedHint,
		"conns":           m.Conns,
		"conns_hint":      m.ConnsHint,
		"conn_stats":      m.ConnStats,
		"pt_filter_pkt":   m.PtFilterPkt,
		"pt_filter_depth": m.PtFilterDepth,
		"nf_stack":        m.kprobe.NfStack,
		"ipvs_stack":      m.kprobe.IpvsStack,
	}
	r := make(map[string]*ebpf.Map, len(spec.Maps))
	for name := range spec.Maps {
		if mp, ok := all[name]; ok {
			r[name] = mp
		}
	}
	return r
}

func (m *sharedMaps) close() error {
	var errs []error
	for _, mp := range []**ebpf.Map{&m.Events, &m.Lost, &m.PtScratch, &m.TableStack, &m.Tracked, &m.TrackedHint, &m.Conns, &m.ConnsHint, &m.ConnStats, &m.PtFilterPkt, &m.PtFilterDepth, &m.kprobe.NfStack, &m.kprobe.IpvsStack} {
		if *mp != nil {
			errs = append(errs, (*mp).Close())
			*mp = nil
		}
	}
	return errors.Join(errs...)
}
