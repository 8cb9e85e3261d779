package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetns creates an anonymous network namespace with lo up. It lives as
// long as the returned handle (closed at cleanup) or a process inside it.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	ns, err := func() (netns.NsHandle, error) {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return netns.None(), fmt.Errorf("get current netns: %w", err)
		}
		defer origin.Close()
		ns, err := netns.New() // Moves this thread into the new namespace.
		if err != nil {
			runtime.UnlockOSThread()
			return netns.None(), fmt.Errorf("create netns: %w", err)
		}
		if err := netns.Set(origin); err != nil {
			// The thread stays locked, so it dies with this goroutine
			// rather than serving others from the wrong namespace.
			ns.Close()
			return netns.None(), fmt.Errorf("return to original netns: %w", err)
		}
		runtime.UnlockOSThread()
		return ns, nil
	}()
	if errors.Is(err, unix.EPERM) {
		requireE2E(t, fmt.Sprintf("cannot create network namespaces: %v", err))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h := nsHandle(t, ns)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("find lo: %v", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}
	return ns
}

// nsHandle opens a route netlink handle in ns, closed at cleanup.
func nsHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("open netlink handle in netns: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// addAddr puts addr on the link called name and sets the link up.
func addAddr(t *testing.T, h *netlink.Handle, name string, addr netip.Prefix) {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find link %s: %v", name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
	if addr.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		t.Fatalf("add %s to %s: %v", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// kernelRoutes describes the main-table routes of h that are not the
// kernel's own (connected subnets), sorted, one string per route:
// "PREFIX proto N via GW[,GW...]".
func kernelRoutes(h *netlink.Handle) ([]string, error) {
	var routes []netlink.Route
	var err error
	for range dumpAttempts {
		routes, err = h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, 0)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []string
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		var gws []string
		if r.Gw != nil {
			gws = append(gws, r.Gw.String())
		}
		for _, nh := range r.MultiPath {
			gws = append(gws, nh.Gw.String())
		}
		dst := "default"
		if r.Dst != nil {
			dst = r.Dst.String()
		}
		out = append(out, fmt.Sprintf("%s proto %d via %s", dst, r.Protocol, strings.Join(gws, ",")))
	}
	slices.Sort(out)
	return out, nil
}
