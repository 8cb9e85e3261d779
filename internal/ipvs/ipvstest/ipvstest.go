// Package ipvstest provides [Kernel], an in-memory stand-in for a kernel's
// IPVS configuration as github.com/moby/ipvs reaches it over netlink, so
// that code which programs IPVS through an ipvs.Table can be tested without
// root, a network namespace or the ip_vs module:
//
//	k := ipvstest.NewKernel()
//	tbl := ipvs.NewTable(k) // the real Apply and Dump, over the fake
//	...
//	k.State() // what the kernel holds, destination lists head first
//
// Kernel keeps state and models what package ipvs relies on: a new
// destination goes to the head of its service's list (list_add_rcu in
// __ip_vs_update_dest), last_weight is set on add, even to 0, and
// otherwise keeps the latest non-zero weight, the kernel adds the hashed
// flag to every service, and the methods fail with the errnos that
// net/netfilter/ipvs/ip_vs_ctl.c returns. Its methods are safe for
// concurrent use.
//
// The package does not import package ipvs, so that ipvs's own tests can
// use it.
package ipvstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// FlagHashed is IP_VS_SVC_F_HASHED, which the kernel sets on every service
// it holds: [ServiceState.Flags] include it.
const FlagHashed = 0x0002

// Kernel is a map-based stand-in for one network namespace's IPVS
// configuration. It implements the handle that ipvs.NewTable takes (the
// methods of *mobyipvs.Handle that package ipvs uses). The zero value is
// not usable: call [NewKernel].
type Kernel struct {
	mu       sync.Mutex
	services map[string]*service
	order    []string // service keys in creation order
	closed   bool
	fail     map[string]error
}

type service struct {
	svc   mobyipvs.Service
	dests []*dest // head first, as in the kernel
}

type dest struct {
	d          mobyipvs.Destination
	lastWeight int
}

// schedulers are the scheduler modules the fake kernel has.
var schedulers = map[string]bool{"mh": true, "sh": true, "wlc": true, "rr": true, "wrr": true, "lc": true}

// NewKernel returns an empty IPVS configuration.
func NewKernel() *Kernel {
	return &Kernel{services: map[string]*service{}, fail: map[string]error{}}
}

// FailNext makes the next call of the named method (such as
// "NewDestination") return err instead of doing anything.
func (k *Kernel) FailNext(method string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail[method] = err
}

// Closed reports whether Close was called.
func (k *Kernel) Closed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func serviceKey(s *mobyipvs.Service) string {
	if s.FWMark != 0 {
		return fmt.Sprintf("fwmark/%d/%d", s.AddressFamily, s.FWMark)
	}
	return fmt.Sprintf("%d/%d/%s", s.AddressFamily, s.Protocol, netip.AddrPortFrom(addrOf(s.Address), s.Port))
}

// kernelIP returns an address as moby/ipvs reads it back: 4 bytes for IPv4.
func kernelIP(ip net.IP) net.IP {
	return net.IP(addrOf(ip).AsSlice())
}

// check returns the error the call must fail with, if any. The caller
// holds k.mu.
func (k *Kernel) check(method string) error {
	if k.closed {
		return unix.EBADF
	}
	if err, ok := k.fail[method]; ok {
		delete(k.fail, method)
		return err
	}
	return nil
}

func (k *Kernel) lookup(s *mobyipvs.Service) (*service, error) {
	ks, ok := k.services[serviceKey(s)]
	if !ok {
		return nil, unix.ESRCH
	}
	return ks, nil
}

func (ks *service) find(d *mobyipvs.Destination) int {
	for i, kd := range ks.dests {
		if addrOf(kd.d.Address) == addrOf(d.Address) && kd.d.Port == d.Port {
			return i
		}
	}
	return -1
}

// GetServices lists the services in creation order.
func (k *Kernel) GetServices() ([]*mobyipvs.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("GetServices"); err != nil {
		return nil, err
	}
	var out []*mobyipvs.Service
	for _, key := range k.order {
		s := k.services[key].svc
		s.Address = kernelIP(s.Address)
		out = append(out, &s)
	}
	return out, nil
}

// NewService adds a service with no destinations.
func (k *Kernel) NewService(s *mobyipvs.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("NewService"); err != nil {
		return err
	}
	if !schedulers[s.SchedName] {
		return unix.ENOENT
	}
	if s.AddressFamily == unix.AF_INET6 && (s.Netmask < 1 || s.Netmask > 128) {
		return unix.EINVAL
	}
	key := serviceKey(s)
	if _, ok := k.services[key]; ok {
		return unix.EEXIST
	}
	c := *s
	c.Flags |= FlagHashed
	c.Stats = mobyipvs.SvcStats{}
	k.services[key] = &service{svc: c}
	k.order = append(k.order, key)
	return nil
}

// UpdateService sets a service's scheduler, flags, timeout and netmask; its
// destinations stay.
func (k *Kernel) UpdateService(s *mobyipvs.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("UpdateService"); err != nil {
		return err
	}
	ks, err := k.lookup(s)
	if err != nil {
		return err
	}
	if !schedulers[s.SchedName] {
		return unix.ENOENT
	}
	ks.svc.SchedName = s.SchedName
	ks.svc.Flags = s.Flags | FlagHashed
	ks.svc.Timeout = s.Timeout
	ks.svc.Netmask = s.Netmask
	return nil
}

// DelService deletes a service and its destinations.
func (k *Kernel) DelService(s *mobyipvs.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("DelService"); err != nil {
		return err
	}
	key := serviceKey(s)
	if _, ok := k.services[key]; !ok {
		return unix.ESRCH
	}
	delete(k.services, key)
	k.order = slices.DeleteFunc(k.order, func(o string) bool { return o == key })
	return nil
}

// GetDestinations lists a service's destinations from the head of its
// list; none for an unknown service, as the kernel's dump answers.
func (k *Kernel) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("GetDestinations"); err != nil {
		return nil, err
	}
	ks, err := k.lookup(s)
	if err != nil {
		return nil, nil
	}
	var out []*mobyipvs.Destination
	for _, kd := range ks.dests {
		d := kd.d
		d.Address = kernelIP(d.Address)
		out = append(out, &d)
	}
	return out, nil
}

// NewDestination adds a destination at the head of the service's list,
// with last_weight set to its weight, even 0.
func (k *Kernel) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("NewDestination"); err != nil {
		return err
	}
	ks, err := k.lookup(s)
	if err != nil {
		return err
	}
	if d.Weight < 0 {
		return unix.ERANGE
	}
	if ks.find(d) >= 0 {
		return unix.EEXIST
	}
	c := *d
	c.ConnectionFlags &= mobyipvs.ConnFwdMask
	c.ActiveConnections, c.InactiveConnections, c.Stats = 0, 0, mobyipvs.DstStats{}
	ks.dests = append([]*dest{{d: c, lastWeight: d.Weight}}, ks.dests...)
	return nil
}

// UpdateDestination sets a destination's weight, forwarding method and
// thresholds in place; last_weight keeps the latest non-zero weight.
func (k *Kernel) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("UpdateDestination"); err != nil {
		return err
	}
	ks, err := k.lookup(s)
	if err != nil {
		return err
	}
	if d.Weight < 0 {
		return unix.ERANGE
	}
	i := ks.find(d)
	if i < 0 {
		return unix.ENOENT
	}
	kd := ks.dests[i]
	kd.d.Weight = d.Weight
	kd.d.ConnectionFlags = d.ConnectionFlags & mobyipvs.ConnFwdMask
	kd.d.UpperThreshold = d.UpperThreshold
	kd.d.LowerThreshold = d.LowerThreshold
	// "keep the last_weight with latest non-0 weight"
	if d.Weight != 0 {
		kd.lastWeight = d.Weight
	}
	return nil
}

// DelDestination deletes a destination; the others keep their order.
func (k *Kernel) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check("DelDestination"); err != nil {
		return err
	}
	ks, err := k.lookup(s)
	if err != nil {
		return err
	}
	i := ks.find(d)
	if i < 0 {
		return unix.ENOENT
	}
	ks.dests = slices.Delete(ks.dests, i, i+1)
	return nil
}

// Close makes every later call fail with EBADF, as a closed netlink socket
// would.
func (k *Kernel) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
}

// ServiceState is one service of a [Kernel], in a form go-cmp can diff.
type ServiceState struct {
	// Key is "FAMILY/PROTOCOL/ADDRESS:PORT" with the numbers of the
	// kernel, such as "2/6/198.51.100.1:80", or "fwmark/FAMILY/MARK".
	Key       string
	Scheduler string
	// Flags are the kernel's service flags, [FlagHashed] included.
	Flags uint32
	// Dests are the destinations from the head of the kernel's list, the
	// order the mh scheduler walks to build its lookup table.
	Dests []DestState
}

// DestState is one destination of a [ServiceState].
type DestState struct {
	Addr   string // address:port
	Weight int
	// LastWeight is the kernel's last_weight: the mh scheduler gives no
	// slot to a destination whose last_weight is 0.
	LastWeight int
	// Fwd is the forwarding method, such as mobyipvs.ConnFwdTunnel.
	Fwd uint32
}

// State returns the services sorted by key (the kernel's own order is a
// hash order) with their destinations head first.
func (k *Kernel) State() []ServiceState {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []ServiceState
	for _, key := range k.order {
		ks := k.services[key]
		st := ServiceState{Key: key, Scheduler: ks.svc.SchedName, Flags: ks.svc.Flags}
		for _, kd := range ks.dests {
			st.Dests = append(st.Dests, DestState{
				Addr:       netip.AddrPortFrom(addrOf(kd.d.Address), kd.d.Port).String(),
				Weight:     kd.d.Weight,
				LastWeight: kd.lastWeight,
				Fwd:        kd.d.ConnectionFlags,
			})
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ServiceState) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// SetConns sets the connection counters of destination dest (an address)
// of the service at svc (address:port), as traffic would, and adds conns
// to the service's count.
func (k *Kernel) SetConns(svc, dest string, active, inactive int, conns uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ks := range k.services {
		if netip.AddrPortFrom(addrOf(ks.svc.Address), ks.svc.Port).String() != svc {
			continue
		}
		for _, kd := range ks.dests {
			if addrOf(kd.d.Address).String() == dest {
				kd.d.ActiveConnections = active
				kd.d.InactiveConnections = inactive
				kd.d.Stats.Connections = conns
				ks.svc.Stats.Connections += conns
				return nil
			}
		}
	}
	return errors.New("ipvstest: no destination " + dest + " in service " + svc)
}

// TCPService is a TCP service on port 80 of addr as moby/ipvs encodes it,
// for tests that change the fake kernel behind the code under test.
func TCPService(addr, sched string, flags uint32) *mobyipvs.Service {
	a := netip.MustParseAddr(addr)
	s := &mobyipvs.Service{
		Address: net.IP(a.AsSlice()), Protocol: unix.IPPROTO_TCP, Port: 80,
		SchedName: sched, Flags: flags, AddressFamily: unix.AF_INET, Netmask: 0xffffffff,
	}
	if a.Is6() {
		s.AddressFamily, s.Netmask = unix.AF_INET6, 128
	}
	return s
}

// TunnelDest is a tunnel (IPIP) destination on port 80 of addr as
// moby/ipvs encodes it.
func TunnelDest(addr string, weight int) *mobyipvs.Destination {
	a := netip.MustParseAddr(addr)
	return &mobyipvs.Destination{Address: net.IP(a.AsSlice()), Port: 80, Weight: weight, ConnectionFlags: mobyipvs.ConnFwdTunnel}
}
