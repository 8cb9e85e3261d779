package traffic

import "time"

// LastSecond returns the figures of the last complete second of p: the
// second before the one in progress at p.Elapsed. It reports false during
// the first second, when no second is complete yet.
func (p *Progress) LastSecond() (Second, bool) {
	i := int(p.Elapsed/time.Second) - 1
	switch {
	case i < 0:
		return Second{}, false
	case i < len(p.Seconds):
		return p.Seconds[i], true
	default:
		// The series grows only with events: a quiet second has no entry.
		return Second{}, true
	}
}
