package node

import (
	"context"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/bfd"
)

// A BFD session runs between two agents: Go programs, which a saturated
// one-CPU VM can hold up for longer than the detection time. So before a
// router drops an LB4 whose control session failed, it asks the LB4's
// kernel, which answers pings without its agent: an LB4 that answers is
// slow, not dead, and its IPVS forwards in the kernel too. A frozen LB4
// (every packet dropped) or a dark link answers nothing, and goes at
// once. (A session whose echo function failed has asked already.)

// confirmWithin bounds the confirmation: with control packets at
// 3 x 200ms (no echo function), a silent LB4 leaves the routes within
// 0.8 s.
const confirmWithin = 200 * time.Millisecond

// prober asks whether addr's kernel answers within d.
type prober interface {
	Answers(ctx context.Context, addr netip.Addr, d time.Duration) bool
}

// icmpProber pings, from where the agent stands (a router has a process
// of its own in its namespace).
type icmpProber struct{}

// Answers pings addr for d (bfd.Answers). An error of the socket
// counts as an answer: the router then trusts BFD alone less than it
// trusts the LB4.
func (icmpProber) Answers(ctx context.Context, addr netip.Addr, d time.Duration) bool {
	ok, err := bfd.Answers(ctx, nil, addr, d)
	return ok || (err != nil && ctx.Err() == nil)
}
