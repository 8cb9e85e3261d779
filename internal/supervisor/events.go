package supervisor

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
)

// maxNumbered bounds the numbered event log: beyond it, the events the
// agents have forgotten are forgotten too.
const maxNumbered = 100_000

// eventKey tells events apart: the lab's log is merged from every node at
// each read, so the same event comes again and again.
type eventKey struct {
	t               int64
	node, kind, msg string
}

func keyOf(e control.Event) eventKey {
	return eventKey{e.Time.UnixNano(), e.Node, e.Kind, e.Msg}
}

// numberedLog numbers the lab's events in the order the supervisor first
// sees them, and keeps them: an event that a later read misses (its
// agent answered too late, or is frozen) stays, and a client that asks
// for the events after the last number it got never misses one nor gets
// one twice, however the reads interleave.
type numberedLog struct {
	mu   sync.Mutex
	next uint64
	seq  map[eventKey]uint64
	log  []control.Event // by number
}

// add numbers the events of evs not seen before, sets the number of each
// and keeps the new ones. evs is a whole read of the lab's log, oldest
// first: new events are numbered in that order.
func (l *numberedLog) add(evs []control.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seq == nil {
		l.seq = map[eventKey]uint64{}
	}
	for i := range evs {
		k := keyOf(evs[i])
		n, ok := l.seq[k]
		if !ok {
			l.next++
			n = l.next
			l.seq[k] = n
			e := evs[i]
			e.Seq = n
			l.log = append(l.log, e)
		}
		evs[i].Seq = n
	}
	if len(l.log) > maxNumbered && len(evs) > 0 {
		l.forgetBefore(evs[0].Time)
	}
}

// forgetBefore drops the events older than t, the oldest the lab still
// has. l.mu must be held.
func (l *numberedLog) forgetBefore(t time.Time) {
	l.log = slices.DeleteFunc(l.log, func(e control.Event) bool {
		if e.Time.Before(t) {
			delete(l.seq, keyOf(e))
			return true
		}
		return false
	})
}

// since returns the events numbered after n, oldest first (by time).
func (l *numberedLog) since(n uint64) []control.Event {
	l.mu.Lock()
	i, _ := slices.BinarySearchFunc(l.log, n+1, func(e control.Event, n uint64) int { return cmp.Compare(e.Seq, n) })
	out := slices.Clone(l.log[i:])
	l.mu.Unlock()
	slices.SortStableFunc(out, byTime)
	return out
}

// byTime orders events by time, then by node (events of the same time
// come from the nodes in a fixed order), keeping a node's own order.
func byTime(a, b control.Event) int {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Node, b.Node))
}
