package stitch

// Paths are emitted in the order of their first hop, each with the next ID,
// so that packets print in the order they were first seen, numbered 1, 2,
// 3, ... without gaps. A completed path waits for every path that started
// before it and is still being followed: at most the idle timeout (Config
// .Idle) after the last event of such a path, plus the grace. Paths that
// wait are bounded like the active ones: past MaxActive paths, or past
// MaxHeldHops hops of room, the oldest are emitted before their grace ends,
// and a path still followed that they wait for is completed early (counted
// in Stats.Evicted).

// enqueue inserts t, just started, in start order (after the paths that
// started at the same time). Events come nearly in time order, so the walk
// from the back is short.
func (s *Stitcher) enqueue(t *track) {
	at := s.queue.qprev
	for at != &s.queue && at.path.Mono > t.path.Mono {
		at = at.qprev
	}
	t.qprev, t.qnext = at, at.qnext
	at.qnext.qprev = t
	at.qnext = t
}

func (s *Stitcher) dequeue(t *track) {
	t.qprev.qnext, t.qnext.qprev = t.qnext, t.qprev
	t.qprev, t.qnext = nil, nil
}

// wait records that t completed and waits for its turn.
func (s *Stitcher) wait(t *track) {
	t.done = true
	s.waiting++
	s.waitHops += cap(t.path.Hops)
}

// unblock emits the oldest paths, completing them early where still
// followed, while too many completed ones wait (for their turn or their
// grace); keep is never completed (the path of the event being added).
func (s *Stitcher) unblock(now uint64, keep *track) {
	for s.waiting > s.cfg.MaxActive || s.waitHops > s.cfg.MaxHeldHops {
		head := s.queue.qnext
		if head == &s.queue || head == keep {
			return
		}
		if !head.done {
			s.stats.Evicted++
			s.complete(head, now)
			continue // a path only freed is gone: look again
		}
		s.emitHead(head)
	}
}

// emitUpTo emits, in start order, the completed paths that ended at or
// before cutoff and have no earlier-started path before them still
// waiting or being followed.
func (s *Stitcher) emitUpTo(cutoff uint64) error {
	for t := s.queue.qnext; t != &s.queue && t.done && t.final <= cutoff; t = s.queue.qnext {
		s.emitHead(t)
	}
	return s.err
}

// emitHead emits t, the first path of the queue, completed, with the next
// ID; after an error from emit, paths are dropped.
func (s *Stitcher) emitHead(t *track) {
	s.dequeue(t)
	s.waiting--
	s.waitHops -= cap(t.path.Hops)
	emitted := s.err == nil
	if emitted {
		s.stats.Paths++
		t.path.ID = s.stats.Paths
		s.err = s.emit(t.path)
	}
	if t.quiet || t.lateBy != nil {
		s.emitted(t)
	}
	s.recycle(t, !emitted || s.cfg.Recycle)
}
