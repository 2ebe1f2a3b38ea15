package trace

import "fmt"

// names implements stitch.Names from lookup functions and tables.
type names struct {
	netns   func(uint32) string
	nodes   map[uint32]bool
	reasons map[uint32]string
	symbol  func(uint64) string // nil: no symbols
}

func (n *names) Symbol(addr uint64) string {
	if n.symbol == nil {
		return ""
	}
	return n.symbol(addr)
}

func (n *names) Netns(inode uint32) string {
	if n.netns == nil {
		return fmt.Sprintf("netns:%d", inode)
	}
	return n.netns(inode)
}

func (n *names) IsNode(inode uint32) bool { return n.nodes[inode] }

func (n *names) DropReason(code uint32) string {
	if s, ok := n.reasons[code]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", code)
}
