// Package ipvs keeps the IPVS services of one LB4 network namespace equal to
// a desired state: one service per VIP, every LB7 a destination reached
// through an IPIP tunnel. [Table.Apply] reconciles and reports what it
// changed; [Table.Dump] reads the kernel state back with its counters.
//
// A [Table] owns the whole IPVS configuration of its namespace: services
// that are not in the desired state are deleted. It talks to the kernel
// through github.com/moby/ipvs over generic netlink. [Open] first checks
// that the namespace's kernel has the generic netlink family "IPVS",
// because moby/ipvs silently does nothing when it is missing.
//
// # Rules that Apply follows
//
// Services are keyed by address, protocol and port. Scheduler and flags are
// updated in place (IPVS_CMD_SET_SERVICE keeps the destination list; a new
// scheduler builds its state from that list). Flags are the scheduler flags
// of ipvsadm: "fallback" is 0x0008 (IP_VS_SVC_F_SCHED1, mh-fallback and
// sh-fallback) and "port" is 0x0010 (IP_VS_SVC_F_SCHED2, mh-port and
// sh-port). The kernel reports every hashed service with 0x0002
// (IP_VS_SVC_F_HASHED) set: that bit is masked before comparing.
//
// mh and sh services always get the fallback flag, whether asked for or
// not. The flag only acts when the destination a flow hashes to is
// unavailable (weight 0): ip_vs_mh_get_fallback returns the looked-up
// destination unchanged otherwise. Keeping it set all the time gives the
// behaviour the lab wants when an LB7 fails (see below) without flipping
// the flag, and without a window where a destination is at weight 0 while
// the flag is not yet set.
//
// Destinations always use tunnel (IPIP) forwarding, the service's port, no
// connection thresholds, and the service's address family.
//
// # Destination order and Maglev tables
//
// The kernel inserts a new destination at the head of the service's list
// (__ip_vs_update_dest in net/netfilter/ipvs/ip_vs_ctl.c calls
// list_add_rcu(&dest->n_list, &svc->destinations)), and the mh scheduler
// fills its lookup table by walking that list (ip_vs_mh_populate in
// ip_vs_mh.c): a slot that two destinations both prefer goes to the one met
// first. Two LB4s therefore have the same table only if their lists are in
// the same order. A destination dump (IPVS_CMD_GET_DEST) returns the list
// from its head.
//
// Apply makes the kernel list, read from its head, equal to the desired
// order, whatever happened before. On a fresh service it adds the
// destinations in reverse desired order. On an existing one it deletes the
// destinations that are no longer desired (which does not reorder the
// others), keeps the longest tail of the desired order that the kernel list
// already holds in that order, and (re-)adds everything before that tail in
// reverse order. When new LB7s come first in the desired order, nothing is
// re-added. When a new destination belongs after an existing one, the
// existing destinations in front of it are deleted and re-added in the same
// Apply. The cost for flows already going through this LB4 to a re-added
// LB7: their connection entries survive (the kernel parks a deleted
// destination in its trash and takes the same object back on re-add), but
// their packets are dropped between the delete and the re-add, a few
// netlink round trips, which TCP retransmits absorb. Each add and delete
// also rebuilds the mh table; only the final table matters for new flows
// after Apply returns, and new flows that arrive during Apply may be
// scheduled with an intermediate table.
//
// The mh table also depends on each destination's last_weight, the latest
// non-zero weight, which the kernel sets to the given weight on add (even
// zero) and leaves alone when a weight is set to 0 (ip_vs_ctl.c: "keep the
// last_weight with latest non-0 weight"); a destination with last_weight 0
// gets no slot. An LB4 that saw an LB7 healthy and then failed keeps its
// slots; one that is started while the LB7 is failed would not. So Apply
// adds a destination whose desired weight is 0 with weight 1 and sets it to
// 0 right after: every LB4 then builds the table with the LB7 at weight 1.
// This assumes the lab gives its LB7s weight 1, which is what it does; with
// other weights, a failed LB7's share of a fresh LB4's table is that of
// weight 1. Between the two calls the LB7 can be picked for a new flow.
//
// # Failed LB7s
//
// A failed LB7 is taken out with weight 0, not deleted: its mh slots stay
// (last_weight), connections already scheduled to it keep their state, and
// new flows that hash to it are rehashed by the fallback walk, which depends
// only on the table and the flow, so every LB4 picks the same replacement.
// A destination is deleted only when the desired state drops it.
//
// # Errors
//
// Apply validates the whole desired state before touching the kernel. A
// kernel error stops it; the changes made until then are returned with the
// error, and the next Apply converges. Deleting something already gone
// counts as success.
package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Scheduler names accepted in [Service.Scheduler].
const (
	SchedulerMH  = "mh"
	SchedulerSH  = "sh"
	SchedulerWLC = "wlc"
	SchedulerRR  = "rr"
)

// Flag names accepted in [Service.Flags].
const (
	FlagFallback = "fallback"
	FlagPort     = "port"
)

// Protocol names accepted in [Service.Protocol].
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// Kernel service flag bits (include/uapi/linux/ip_vs.h).
const (
	flagPersistent = 0x0001 // IP_VS_SVC_F_PERSISTENT
	flagHashed     = 0x0002 // IP_VS_SVC_F_HASHED, set by the kernel
	flagOnePacket  = 0x0004 // IP_VS_SVC_F_ONEPACKET
	flagSched1     = 0x0008 // IP_VS_SVC_F_SCHED1: mh-fallback, sh-fallback
	flagSched2     = 0x0010 // IP_VS_SVC_F_SCHED2: mh-port, sh-port
)

// ErrNoIPVS is returned by [Open] when the kernel of the namespace has no
// IPVS.
var ErrNoIPVS = errors.New("kernel has no IPVS (generic netlink family IPVS missing): load ip_vs or use --vm")

// Service is one IPVS virtual service.
type Service struct {
	Address  netip.Addr
	Port     uint16
	Protocol string // "tcp" or "udp"
	// Scheduler is "mh", "sh", "wlc" or "rr".
	Scheduler string
	// Flags are scheduler flags, "port" and "fallback", for mh and sh only.
	// Changes and Dump give the flags in effect, sorted: mh and sh
	// services always have "fallback".
	Flags []string
}

// String returns the service's key, such as "tcp/198.51.100.1:80".
func (s Service) String() string {
	if !s.Address.IsValid() {
		return s.Protocol
	}
	return s.Protocol + "/" + netip.AddrPortFrom(s.Address, s.Port).String()
}

// Destination is one real server of a service, reached through an IPIP
// tunnel.
type Destination struct {
	Address netip.Addr
	// Weight is the IPVS weight, 0 to 65535; 0 takes the destination out
	// of scheduling without deleting it.
	Weight int
	// Stats are filled by Dump and ignored by Apply.
	Stats Stats
}

// Desired is a service and its destinations, in the lab's stable order.
type Desired struct {
	Service      Service
	Destinations []Destination
	// Stats are filled by Dump and ignored by Apply.
	Stats Stats
}

// Stats are the kernel's counters for a service or a destination. Rates are
// the kernel's estimates per second.
type Stats struct {
	// ActiveConns and InactiveConns count connection entries; for a
	// service they are the sums over its destinations.
	ActiveConns   int
	InactiveConns int
	// Connections counts the connections scheduled since creation.
	Connections uint32
	PacketsIn   uint32
	PacketsOut  uint32
	BytesIn     uint64
	BytesOut    uint64
	CPS         uint32
	PPSIn       uint32
	PPSOut      uint32
	BPSIn       uint32
	BPSOut      uint32
}

// Action is what a [Change] did.
type Action string

// Actions of a [Change].
const (
	ActionAdd    Action = "add"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// Change is one change Apply made to the kernel, for the event log.
type Change struct {
	Action Action
	// Service is the service changed, or the one whose destination
	// changed: the desired service for adds and updates, the kernel's for
	// deletes.
	Service Service
	// Destination is nil when the service itself changed.
	Destination *Destination
	// Detail says what changed or why, such as "weight 1 -> 0".
	Detail string
}

// String renders the change as one line, such as "update destination
// 192.0.2.139 weight 0 in tcp/198.51.100.1:80: weight 1 -> 0".
func (c Change) String() string {
	s := string(c.Action) + " "
	if c.Destination != nil {
		s += "destination " + c.Destination.Address.String() + " weight " +
			strconv.Itoa(c.Destination.Weight) + " in " + c.Service.String()
	} else {
		s += "service " + c.Service.String()
		if c.Action != ActionDelete {
			s += " " + c.Service.Scheduler
			if len(c.Service.Flags) > 0 {
				s += " " + strings.Join(c.Service.Flags, ",")
			}
		}
	}
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	return s
}

// Handle is the part of moby/ipvs that a [Table] uses, implemented by
// *mobyipvs.Handle (what [Open] uses) and by the in-memory kernel of
// package ipvstest. Destinations come back in kernel list order.
type Handle interface {
	GetServices() ([]*mobyipvs.Service, error)
	NewService(*mobyipvs.Service) error
	UpdateService(*mobyipvs.Service) error
	DelService(*mobyipvs.Service) error
	GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error)
	NewDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	UpdateDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	DelDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	Close()
}

// Table is the IPVS configuration of one network namespace. Its methods
// are safe for concurrent use; calls are serialised.
type Table struct {
	mu sync.Mutex
	h  Handle
}

// Open returns the IPVS table of the network namespace mounted at
// netnsPath (such as /run/netns/lb4-1), or of the caller's thread's
// namespace when netnsPath is empty. It fails with [ErrNoIPVS] when that
// kernel has no IPVS.
//
// The check comes first because moby/ipvs resolves the family once per
// process, on its first handle, and keeps an unusable handle for good if
// the family was missing then. On that first use moby/ipvs also runs
// "modprobe -va ip_vs" and logs a warning through logrus when it fails
// (as it does in the UML VM, whose modules are loaded from elsewhere);
// nothing else comes of it.
func Open(netnsPath string) (*Table, error) {
	if err := checkFamily(netnsPath); err != nil {
		return nil, err
	}
	h, err := mobyipvs.New(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open ipvs handle in %q: %w", netnsPath, err)
	}
	return NewTable(h), nil
}

// NewTable returns a table that programs IPVS through h. [Open] is the
// way to a kernel's table; NewTable is for other handles, such as
// ipvstest.NewKernel() in tests.
func NewTable(h Handle) *Table {
	return &Table{h: h}
}

// Close releases the netlink socket. The table is unusable afterwards.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		t.h.Close()
		t.h = nil
	}
	return nil
}

// checkFamily asks the generic netlink controller of the namespace for the
// "IPVS" family.
func checkFamily(netnsPath string) error {
	ns := netns.None()
	if netnsPath != "" {
		var err error
		ns, err = netns.GetFromPath(netnsPath)
		if err != nil {
			return fmt.Errorf("open network namespace %q: %w", netnsPath, err)
		}
		defer ns.Close()
	}
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_GENERIC)
	if err != nil {
		return fmt.Errorf("open generic netlink socket in %q: %w", netnsPath, err)
	}
	defer nh.Close()
	if _, err := nh.GenlFamilyGet("IPVS"); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return ErrNoIPVS
		}
		return fmt.Errorf("look up generic netlink family IPVS in %q: %w", netnsPath, err)
	}
	return nil
}
