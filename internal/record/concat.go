package record

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unsafe"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/decode"
)

var netnsOff = int(unsafe.Offsetof(bpf.TracepointEvent{}.Netns))

// Concat writes to file one recording of the records of seeds, one seed
// after the other, as if one trace had seen them all: each seed's times
// follow the seed before's (past the stitcher's idle time), its skb
// addresses are moved apart, and its network namespaces become the first
// seed's of the same name. Names, nodes and node reports are the union,
// the first seed's winning (a later seed's nodes that saw no event, and so
// have no name, are left out); lost counts add up. It is for tests that need
// a trace of several recorded exchanges, like the demo's.
func Concat(file string, seeds ...string) error {
	if len(seeds) == 0 {
		return errors.New("concat recordings: no seed")
	}
	var (
		all     [][]byte
		out     Meta
		reports = map[string]json.RawMessage{}
		inodeOf = map[string]uint32{} // by name, the inode it has in the output
		cursor  uint64                // where the next seed's first record goes
		d       decode.Decoder
		ev      decode.Event
		ne      = binary.NativeEndian
	)
	for k, seed := range seeds {
		recs, meta, err := ReadAll(seed)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return fmt.Errorf("concat recordings: %s holds no records", seed)
		}
		remap := map[uint32]uint32{}
		for ino, name := range meta.Netns {
			if to, ok := inodeOf[name]; ok {
				remap[ino] = to
			} else {
				inodeOf[name] = ino
				remap[ino] = ino
			}
		}
		mapIno := func(ino uint32) uint32 {
			if to, ok := remap[ino]; ok {
				return to
			}
			return ino
		}
		if err := d.Decode(recs[0], &ev); err != nil {
			return err
		}
		first := ev.TS
		if k == 0 {
			out = meta
			out.Netns, out.Nodes = map[uint32]string{}, nil
			out.DropReasons, out.Symbols = maps.Clone(meta.DropReasons), maps.Clone(meta.Symbols)
			out.Lost, out.LostPerCPU, out.Missed = 0, nil, 0
			cursor = first
			if out.DropReasons == nil {
				out.DropReasons = map[uint32]string{}
			}
			if out.Symbols == nil {
				out.Symbols = map[uint64]string{}
			}
		}
		for ino, name := range meta.Netns {
			if _, ok := out.Netns[mapIno(ino)]; !ok {
				out.Netns[mapIno(ino)] = name
			}
		}
		// A later seed's node without a name saw no event: its inode
		// means nothing in the output.
		unnamed := func(ino uint32) bool { _, ok := meta.Netns[ino]; return k > 0 && !ok }
		for _, ino := range meta.Nodes {
			if unnamed(ino) {
				continue
			}
			if to := mapIno(ino); !slices.Contains(out.Nodes, to) {
				out.Nodes = append(out.Nodes, to)
			}
		}
		for c, name := range meta.DropReasons {
			if _, ok := out.DropReasons[c]; !ok {
				out.DropReasons[c] = name
			}
		}
		for a, name := range meta.Symbols {
			if _, ok := out.Symbols[a]; !ok {
				out.Symbols[a] = name
			}
		}
		if len(meta.Reports) > 0 {
			var rs map[string]json.RawMessage
			if err := json.Unmarshal(meta.Reports, &rs); err != nil {
				return fmt.Errorf("concat recordings: node reports of %s: %w", seed, err)
			}
			for key, r := range rs {
				ino, err := strconv.ParseUint(key, 10, 32)
				if err != nil || unnamed(uint32(ino)) {
					continue
				}
				to := strconv.FormatUint(uint64(mapIno(uint32(ino))), 10)
				if _, ok := reports[to]; !ok {
					reports[to] = r
				}
			}
		}
		out.Lost += meta.Lost
		out.Missed += meta.Missed
		for i, n := range meta.LostPerCPU {
			for len(out.LostPerCPU) <= i {
				out.LostPerCPU = append(out.LostPerCPU, 0)
			}
			out.LostPerCPU[i] += n
		}
		var last uint64
		for _, rec := range recs {
			ts := ne.Uint64(rec[tsOff:])
			ne.PutUint64(rec[tsOff:], ts-first+cursor)
			ne.PutUint64(rec[skbOff:], ne.Uint64(rec[skbOff:])+uint64(k)<<36)
			ne.PutUint32(rec[netnsOff:], mapIno(ne.Uint32(rec[netnsOff:])))
			last = max(last, ts-first+cursor)
		}
		cursor = last + 2_000_000_000
		all = append(all, recs...)
	}
	var err error
	if out.Reports, err = json.Marshal(reports); err != nil {
		return fmt.Errorf("concat recordings: %w", err)
	}
	return writeRecords(file, out, all, "concatenated")
}
