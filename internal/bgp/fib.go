package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the kernel routes a FIB owns (RTPROT_BGP). A FIB
// changes and deletes only routes of this protocol.
const RouteProtocol netlink.RouteProtocol = unix.RTPROT_BGP

// ErrForeignRoute is returned by FIB.Set when the main table holds a route
// to the prefix, with the same metric, that another protocol installed.
var ErrForeignRoute = errors.New("route owned by another protocol")

// dumpAttempts bounds the retries of a route dump interrupted by a
// concurrent change.
const dumpAttempts = 5

// FIB installs routes into the main table of the network namespace it was
// created in. It is safe for concurrent use.
type FIB struct {
	log *slog.Logger

	mu sync.Mutex
	h  *netlink.Handle
}

// NewFIB opens a route netlink socket in the calling thread's network
// namespace; the FIB keeps using that namespace from any thread.
func NewFIB(log *slog.Logger) (*FIB, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open route netlink socket: %w", err)
	}
	return newFIB(h, log), nil
}

func newFIB(h *netlink.Handle, log *slog.Logger) *FIB {
	return &FIB{h: h, log: log}
}

// Close releases the netlink socket. The routes stay.
func (f *FIB) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.h.Close()
}

// Set makes the route to p use exactly nextHops: one next hop gives a plain
// route, several an ECMP route, none deletes the route. Set is idempotent.
func (f *FIB) Set(p netip.Prefix, nextHops []netip.Addr) error {
	if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" {
		return fmt.Errorf("set route %s: not a canonical prefix", p)
	}
	hops := slices.Clone(nextHops)
	slices.SortFunc(hops, netip.Addr.Compare)
	hops = slices.Compact(hops)
	for _, h := range hops {
		if !h.IsValid() || h.IsUnspecified() || h.Is4() != p.Addr().Is4() {
			return fmt.Errorf("set route %s: next hop %s does not fit", p, h)
		}
	}
	dst := ipNet(p)

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(hops) == 0 {
		if err := f.del(dst); err != nil {
			return fmt.Errorf("delete route %s: %w", p, err)
		}
		f.log.Info("route deleted", "prefix", p)
		return nil
	}
	existing, err := f.list(family(p), &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("set route %s: %w", p, err)
	}
	for _, r := range existing {
		if r.Protocol != RouteProtocol && r.Priority == 0 {
			return fmt.Errorf("set route %s: protocol %d: %w", p, r.Protocol, ErrForeignRoute)
		}
	}
	r := &netlink.Route{Dst: dst, Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	if len(hops) == 1 {
		r.Gw = net.IP(hops[0].AsSlice())
	} else {
		for _, h := range hops {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{Gw: net.IP(h.AsSlice())})
		}
	}
	if err := f.h.RouteReplace(r); err != nil {
		return fmt.Errorf("set route %s via %v: %w", p, hops, err)
	}
	f.log.Info("route set", "prefix", p, "next_hops", hops)
	return nil
}

// Flush deletes every route of RouteProtocol from the main table, in both
// families.
func (f *FIB) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	routes, err := f.list(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("flush routes: %w", err)
	}
	var errs []error
	for _, r := range routes {
		if r.Dst == nil {
			continue // A default route: never ours, since Set needs a prefix.
		}
		if err := f.del(r.Dst); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flush routes: %w", err)
	}
	if len(routes) > 0 {
		f.log.Info("routes flushed", "count", len(routes))
	}
	return nil
}

// del deletes our route to dst; an absent route is not an error. Without a
// next hop in the request the kernel removes an IPv6 route together with
// its ECMP siblings.
func (f *FIB) del(dst *net.IPNet) error {
	err := f.h.RouteDel(&netlink.Route{Dst: dst, Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN})
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// list dumps the main table, retrying when a concurrent change interrupts
// the dump.
func (f *FIB) list(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	var err error
	for range dumpAttempts {
		var routes []netlink.Route
		routes, err = f.h.RouteListFiltered(family, filter, mask)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return nil, fmt.Errorf("list routes: %w", err)
			}
			return routes, nil
		}
	}
	return nil, fmt.Errorf("list routes: %d attempts: %w", dumpAttempts, err)
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
