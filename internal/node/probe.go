package node

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// A BFD session runs between two agents: Go programs, which a saturated
// one-CPU VM can hold up for longer than the detection time (measured:
// sessions at 3 x 200ms and 3 x 300ms went down every few seconds under a
// load that kept the VM 100 % busy, while the same LB4s answered pings
// within 32ms). So before a router drops an LB4 whose session failed, it
// asks the LB4's kernel, which answers pings without its agent: an LB4
// that answers is slow, not dead, and its IPVS forwards in the kernel
// too. A frozen LB4 (every packet dropped) or a dark link answers
// nothing, and goes at once. This is BFD's echo function (RFC 5880 §6.4)
// in spirit, with ICMP echo, which needs nothing on the LB4.

// confirmWithin bounds the confirmation: with 3 x 200ms of detection, a
// silent LB4 leaves the routes within 0.8 s.
const confirmWithin = 200 * time.Millisecond

// prober asks whether addr's kernel answers within d.
type prober interface {
	Answers(ctx context.Context, addr netip.Addr, d time.Duration) bool
}

// icmpProber pings, from where the agent stands (a router has a process
// of its own in its namespace).
type icmpProber struct{}

// Answers sends echo requests to addr, every quarter of d, and says
// whether a reply came within d. An error opening the socket counts as an
// answer: the router then trusts BFD alone less than it trusts the LB4.
func (icmpProber) Answers(ctx context.Context, addr netip.Addr, d time.Duration) bool {
	network, proto, req := "ip4:icmp", 1, icmp.Type(ipv4.ICMPTypeEcho)
	if addr.Is6() {
		network, proto, req = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest
	}
	c, err := icmp.ListenPacket(network, "")
	if err != nil {
		return true
	}
	defer c.Close()
	deadline := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetReadDeadline(deadline)
	id := rand.IntN(1<<16-1) + 1
	dst := &net.IPAddr{IP: net.IP(addr.AsSlice())}
	send := func(seq int) {
		m := icmp.Message{Type: req, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("lab bfd confirm")}}
		if b, err := m.Marshal(nil); err == nil {
			_, _ = c.WriteTo(b, dst)
		}
	}
	replies := make(chan bool, 1)
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(b)
			if err != nil {
				replies <- false
				return
			}
			ip, _ := from.(*net.IPAddr)
			if ip == nil || !ip.IP.Equal(dst.IP) {
				continue
			}
			m, err := icmp.ParseMessage(proto, b[:n])
			if err != nil || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
				replies <- true
				return
			}
		}
	}()
	tick := time.NewTicker(d / 4)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		send(seq)
		select {
		case ok := <-replies:
			return ok
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}
