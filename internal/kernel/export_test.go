package kernel

// Len is the number of symbols, for tests.
func (s *Symbols) Len() int { return len(s.addrs) }

// Addr is the address of the symbol named name, for tests.
func (s *Symbols) Addr(name string) (uint64, bool) {
	start := uint32(0)
	for i, end := range s.ends {
		if s.names[start:end] == name {
			return s.addrs[i], true
		}
		start = end
	}
	return 0, false
}
