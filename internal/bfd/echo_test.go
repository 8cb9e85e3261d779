package bfd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/lab-lb/lab/internal/testenv"
)

// TestEchoConn sends echo requests to the loopback addresses, which this
// host's kernel answers: drain reports the reply to its own identifier,
// and a socket with another identifier, which reads the same replies (raw
// sockets all do), reports none.
func TestEchoConn(t *testing.T) {
	testenv.RequireRoot(t) // raw sockets
	for _, tt := range []struct{ network, addr string }{
		{"ip4:icmp", "127.0.0.1"},
		{"ip6:ipv6-icmp", "::1"},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			dst := netip.MustParseAddr(tt.addr)
			mine, err := openEcho(net.ListenPacket, tt.network, 4242)
			if err != nil {
				t.Fatal(err)
			}
			defer mine.close()
			other, err := openEcho(net.ListenPacket, tt.network, 4243)
			if err != nil {
				t.Fatal(err)
			}
			defer other.close()
			if err := mine.send(dst, 7); err != nil {
				t.Fatalf("send: %v", err)
			}
			var got []string
			testenv.Eventually(t, 5*time.Second, "the echo reply", func() error {
				err := mine.drain(func(src netip.Addr, seq uint16) { got = append(got, fmt.Sprint(src, " ", seq)) })
				if err != nil || len(got) == 0 {
					return fmt.Errorf("replies %v, err %v", got, err)
				}
				return nil
			})
			if want := tt.addr + " 7"; len(got) != 1 || got[0] != want {
				t.Errorf("replies %v, want [%s]", got, want)
			}
			var others []netip.Addr
			if err := other.drain(func(src netip.Addr, _ uint16) { others = append(others, src) }); err != nil || len(others) != 0 {
				t.Errorf("socket with another identifier: replies from %v, err %v; want none", others, err)
			}
		})
	}
}

// TestAnswers asks, from a network namespace with only its loopback
// interface, the loopback address, which answers, and a documentation
// address, which nothing answers (no route): it waits the whole time
// before it says so.
func TestAnswers(t *testing.T) {
	testenv.RequireRoot(t)
	listen := isolatedListen(t)
	ctx := context.Background()
	ok, err := Answers(ctx, listen, netip.MustParseAddr("127.0.0.1"), 200*time.Millisecond)
	if !ok || err != nil {
		t.Errorf("Answers(127.0.0.1) = %v, %v; want true", ok, err)
	}
	start := time.Now()
	ok, err = Answers(ctx, listen, netip.MustParseAddr("192.0.2.1"), 200*time.Millisecond)
	if ok {
		t.Errorf("Answers(192.0.2.1) = true, %v; want no answer", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("gave up after %s, want the whole 200ms", took)
	}
}

// isolatedListen returns a ListenFunc that opens sockets in a new network
// namespace whose only interface, lo, is up.
func isolatedListen(t *testing.T) ListenFunc {
	t.Helper()
	within := func(ns netns.NsHandle, f func() error) error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return err
		}
		defer netns.Set(orig)
		return f()
	}
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	var ns netns.NsHandle
	err = within(orig, func() error {
		if ns, err = netns.New(); err != nil { // the thread enters it
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		return err
	})
	if err != nil {
		t.Fatalf("make a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return func(network, address string) (c net.PacketConn, err error) {
		err = within(ns, func() error {
			c, err = net.ListenPacket(network, address)
			return err
		})
		return c, err
	}
}
