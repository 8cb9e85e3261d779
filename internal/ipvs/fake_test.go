package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// fakeHandle is a map-based stand-in for a kernel's IPVS table reached
// through moby/ipvs. It keeps state and models what the package relies on:
// new destinations go to the head of the list, last_weight follows the
// kernel's rule, the kernel adds the hashed flag, and the errnos that
// ip_vs_ctl.c returns.
type fakeHandle struct {
	services map[string]*fakeService
	order    []string // service keys in creation order
	closed   bool
	// fail makes the next call of the named method return the error.
	fail map[string]error
}

type fakeService struct {
	svc   mobyipvs.Service
	dests []*fakeDest // head first, as in the kernel
}

type fakeDest struct {
	d          mobyipvs.Destination
	lastWeight int
}

var fakeSchedulers = map[string]bool{"mh": true, "sh": true, "wlc": true, "rr": true, "wrr": true, "lc": true}

func newFakeHandle() *fakeHandle {
	return &fakeHandle{services: map[string]*fakeService{}, fail: map[string]error{}}
}

func fakeAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func fakeServiceKey(s *mobyipvs.Service) string {
	if s.FWMark != 0 {
		return fmt.Sprintf("fwmark/%d/%d", s.AddressFamily, s.FWMark)
	}
	return fmt.Sprintf("%d/%d/%s", s.AddressFamily, s.Protocol, netip.AddrPortFrom(fakeAddr(s.Address), s.Port))
}

// kernelIP returns an address as moby/ipvs reads it back: 4 bytes for IPv4.
func kernelIP(ip net.IP) net.IP {
	return net.IP(fakeAddr(ip).AsSlice())
}

func (f *fakeHandle) check(method string) error {
	if f.closed {
		return unix.EBADF
	}
	if err, ok := f.fail[method]; ok {
		delete(f.fail, method)
		return err
	}
	return nil
}

func (f *fakeHandle) lookup(s *mobyipvs.Service) (*fakeService, error) {
	fs, ok := f.services[fakeServiceKey(s)]
	if !ok {
		return nil, unix.ESRCH
	}
	return fs, nil
}

func (fs *fakeService) find(d *mobyipvs.Destination) int {
	for i, fd := range fs.dests {
		if fakeAddr(fd.d.Address) == fakeAddr(d.Address) && fd.d.Port == d.Port {
			return i
		}
	}
	return -1
}

func (f *fakeHandle) GetServices() ([]*mobyipvs.Service, error) {
	if err := f.check("GetServices"); err != nil {
		return nil, err
	}
	var out []*mobyipvs.Service
	for _, k := range f.order {
		s := f.services[k].svc
		s.Address = kernelIP(s.Address)
		out = append(out, &s)
	}
	return out, nil
}

func (f *fakeHandle) NewService(s *mobyipvs.Service) error {
	if err := f.check("NewService"); err != nil {
		return err
	}
	if !fakeSchedulers[s.SchedName] {
		return unix.ENOENT
	}
	if s.AddressFamily == unix.AF_INET6 && (s.Netmask < 1 || s.Netmask > 128) {
		return unix.EINVAL
	}
	k := fakeServiceKey(s)
	if _, ok := f.services[k]; ok {
		return unix.EEXIST
	}
	c := *s
	c.Flags |= flagHashed
	c.Stats = mobyipvs.SvcStats{}
	f.services[k] = &fakeService{svc: c}
	f.order = append(f.order, k)
	return nil
}

func (f *fakeHandle) UpdateService(s *mobyipvs.Service) error {
	if err := f.check("UpdateService"); err != nil {
		return err
	}
	fs, err := f.lookup(s)
	if err != nil {
		return err
	}
	if !fakeSchedulers[s.SchedName] {
		return unix.ENOENT
	}
	fs.svc.SchedName = s.SchedName
	fs.svc.Flags = s.Flags | flagHashed
	fs.svc.Timeout = s.Timeout
	fs.svc.Netmask = s.Netmask
	return nil
}

func (f *fakeHandle) DelService(s *mobyipvs.Service) error {
	if err := f.check("DelService"); err != nil {
		return err
	}
	k := fakeServiceKey(s)
	if _, ok := f.services[k]; !ok {
		return unix.ESRCH
	}
	delete(f.services, k)
	for i, o := range f.order {
		if o == k {
			f.order = append(f.order[:i:i], f.order[i+1:]...)
			break
		}
	}
	return nil
}

func (f *fakeHandle) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	if err := f.check("GetDestinations"); err != nil {
		return nil, err
	}
	fs, err := f.lookup(s)
	if err != nil {
		// The kernel's dump answers nothing for an unknown service.
		return nil, nil
	}
	var out []*mobyipvs.Destination
	for _, fd := range fs.dests {
		d := fd.d
		d.Address = kernelIP(d.Address)
		out = append(out, &d)
	}
	return out, nil
}

func (f *fakeHandle) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	if err := f.check("NewDestination"); err != nil {
		return err
	}
	fs, err := f.lookup(s)
	if err != nil {
		return err
	}
	if d.Weight < 0 {
		return unix.ERANGE
	}
	if fs.find(d) >= 0 {
		return unix.EEXIST
	}
	c := *d
	c.ConnectionFlags &= mobyipvs.ConnFwdMask
	c.ActiveConnections, c.InactiveConnections, c.Stats = 0, 0, mobyipvs.DstStats{}
	// list_add_rcu: the new destination becomes the head; last_weight is
	// set on add, even to 0.
	fs.dests = append([]*fakeDest{{d: c, lastWeight: d.Weight}}, fs.dests...)
	return nil
}

func (f *fakeHandle) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	if err := f.check("UpdateDestination"); err != nil {
		return err
	}
	fs, err := f.lookup(s)
	if err != nil {
		return err
	}
	if d.Weight < 0 {
		return unix.ERANGE
	}
	i := fs.find(d)
	if i < 0 {
		return unix.ENOENT
	}
	fd := fs.dests[i]
	fd.d.Weight = d.Weight
	fd.d.ConnectionFlags = d.ConnectionFlags & mobyipvs.ConnFwdMask
	fd.d.UpperThreshold = d.UpperThreshold
	fd.d.LowerThreshold = d.LowerThreshold
	// "keep the last_weight with latest non-0 weight"
	if d.Weight != 0 {
		fd.lastWeight = d.Weight
	}
	return nil
}

func (f *fakeHandle) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	if err := f.check("DelDestination"); err != nil {
		return err
	}
	fs, err := f.lookup(s)
	if err != nil {
		return err
	}
	i := fs.find(d)
	if i < 0 {
		return unix.ENOENT
	}
	fs.dests = append(fs.dests[:i:i], fs.dests[i+1:]...)
	return nil
}

func (f *fakeHandle) Close() {
	f.closed = true
}

// fakeState is the whole state of a fake, in a form go-cmp can diff.
type fakeState struct {
	Key       string
	Scheduler string
	Flags     uint32
	Dests     []fakeDestState
}

type fakeDestState struct {
	Addr       string // address:port
	Weight     int
	LastWeight int
	Fwd        uint32
}

// state returns the services sorted by key and their destinations head
// first.
func (f *fakeHandle) state() []fakeState {
	var out []fakeState
	for _, k := range f.order {
		fs := f.services[k]
		st := fakeState{Key: k, Scheduler: fs.svc.SchedName, Flags: fs.svc.Flags}
		for _, fd := range fs.dests {
			st.Dests = append(st.Dests, fakeDestState{
				Addr:       netip.AddrPortFrom(fakeAddr(fd.d.Address), fd.d.Port).String(),
				Weight:     fd.d.Weight,
				LastWeight: fd.lastWeight,
				Fwd:        fd.d.ConnectionFlags,
			})
		}
		out = append(out, st)
	}
	// Creation order depends on history; the kernel's service order is a
	// hash order anyway.
	slices.SortFunc(out, func(a, b fakeState) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// setConns sets the connection counters of a destination, as traffic
// would.
func (f *fakeHandle) setConns(t *testing.T, svc, dest string, active, inactive int, conns uint32) {
	t.Helper()
	for _, fs := range f.services {
		if netip.AddrPortFrom(fakeAddr(fs.svc.Address), fs.svc.Port).String() != svc {
			continue
		}
		for _, fd := range fs.dests {
			if fakeAddr(fd.d.Address).String() == dest {
				fd.d.ActiveConnections = active
				fd.d.InactiveConnections = inactive
				fd.d.Stats.Connections = conns
				fs.svc.Stats.Connections += conns
				return
			}
		}
	}
	t.Fatalf("no destination %s in service %s", dest, svc)
}

func fakeSvc(addr string, sched string, flags uint32) *mobyipvs.Service {
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

func fakeDst(addr string, weight int) *mobyipvs.Destination {
	a := netip.MustParseAddr(addr)
	return &mobyipvs.Destination{Address: net.IP(a.AsSlice()), Port: 80, Weight: weight, ConnectionFlags: mobyipvs.ConnFwdTunnel}
}

func TestFakeHandle(t *testing.T) {
	svc := fakeSvc("198.51.100.1", "mh", flagSched2)
	type step struct {
		name string
		do   func(f *fakeHandle) error
		err  error
	}
	cases := []struct {
		name  string
		steps []step
		want  []fakeState
	}{
		{
			name: "new destinations go to the head",
			steps: []step{
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
				{"a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, nil},
				{"b", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.2", 1)) }, nil},
				{"c", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.3", 2)) }, nil},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []fakeDestState{
				{Addr: "192.0.2.3:80", Weight: 2, LastWeight: 2, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.2:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "last weight keeps the latest non-zero weight and is set on add",
			steps: []step{
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
				{"a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 3)) }, nil},
				{"a to 0", func(f *fakeHandle) error { return f.UpdateDestination(svc, fakeDst("192.0.2.1", 0)) }, nil},
				{"b at 0", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.2", 0)) }, nil},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []fakeDestState{
				{Addr: "192.0.2.2:80", Weight: 0, LastWeight: 0, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.1:80", Weight: 0, LastWeight: 3, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "delete keeps the order of the others and re-add goes to the head",
			steps: []step{
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
				{"a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, nil},
				{"b", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.2", 1)) }, nil},
				{"c", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.3", 1)) }, nil},
				{"del b", func(f *fakeHandle) error { return f.DelDestination(svc, fakeDst("192.0.2.2", 0)) }, nil},
				{"del a", func(f *fakeHandle) error { return f.DelDestination(svc, fakeDst("192.0.2.1", 0)) }, nil},
				{"re-add a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, nil},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []fakeDestState{
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.3:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "update service keeps destinations and the hashed flag",
			steps: []step{
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
				{"a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, nil},
				{"update", func(f *fakeHandle) error { return f.UpdateService(fakeSvc("198.51.100.1", "sh", flagSched1)) }, nil},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "sh", Flags: flagSched1 | flagHashed, Dests: []fakeDestState{
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "errors of ip_vs_ctl.c",
			steps: []step{
				{"update missing service", func(f *fakeHandle) error { return f.UpdateService(svc) }, unix.ESRCH},
				{"delete missing service", func(f *fakeHandle) error { return f.DelService(svc) }, unix.ESRCH},
				{"add to missing service", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, unix.ESRCH},
				{"unknown scheduler", func(f *fakeHandle) error { return f.NewService(fakeSvc("198.51.100.1", "nope", 0)) }, unix.ENOENT},
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
				{"service again", func(f *fakeHandle) error { return f.NewService(svc) }, unix.EEXIST},
				{"a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, nil},
				{"a again", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, unix.EEXIST},
				{"negative weight", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.2", -1)) }, unix.ERANGE},
				{"update missing destination", func(f *fakeHandle) error { return f.UpdateDestination(svc, fakeDst("192.0.2.2", 1)) }, unix.ENOENT},
				{"delete missing destination", func(f *fakeHandle) error { return f.DelDestination(svc, fakeDst("192.0.2.2", 1)) }, unix.ENOENT},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []fakeDestState{
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "delete service drops its destinations",
			steps: []step{
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
				{"a", func(f *fakeHandle) error { return f.NewDestination(svc, fakeDst("192.0.2.1", 1)) }, nil},
				{"delete", func(f *fakeHandle) error { return f.DelService(svc) }, nil},
				{"service again", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed}},
		},
		{
			name: "injected failure happens once",
			steps: []step{
				{"inject", func(f *fakeHandle) error { f.fail["NewService"] = unix.ENOMEM; return nil }, nil},
				{"service fails", func(f *fakeHandle) error { return f.NewService(svc) }, unix.ENOMEM},
				{"service", func(f *fakeHandle) error { return f.NewService(svc) }, nil},
			},
			want: []fakeState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHandle()
			for _, s := range tc.steps {
				if err := s.do(f); !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
					t.Fatalf("%s: error %v, want %v", s.name, err, s.err)
				}
			}
			if diff := cmp.Diff(f.state(), tc.want); diff != "" {
				t.Errorf("state (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFakeHandleReadBack(t *testing.T) {
	f := newFakeHandle()
	svc := fakeSvc("198.51.100.1", "mh", flagSched1)
	if err := f.NewService(svc); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
		if err := f.NewDestination(svc, fakeDst(a, 1)); err != nil {
			t.Fatal(err)
		}
	}
	f.setConns(t, "198.51.100.1:80", "192.0.2.1", 3, 4, 10)

	services, err := f.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 {
		t.Fatalf("got %d services, want 1", len(services))
	}
	s := services[0]
	if len(s.Address) != 4 || s.Flags != flagSched1|flagHashed || s.Stats.Connections != 10 {
		t.Errorf("service read back as address %v flags %#x connections %d", []byte(s.Address), s.Flags, s.Stats.Connections)
	}
	dests, err := f.GetDestinations(s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dests {
		got = append(got, fmt.Sprintf("%s w%d a%d i%d c%d", d.Address, d.Weight, d.ActiveConnections, d.InactiveConnections, d.Stats.Connections))
	}
	want := []string{"192.0.2.2 w1 a0 i0 c0", "192.0.2.1 w1 a3 i4 c10"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("destinations (-got +want):\n%s", diff)
	}
	missing, err := f.GetDestinations(fakeSvc("198.51.100.9", "mh", 0))
	if err != nil || len(missing) != 0 {
		t.Errorf("destinations of a missing service: %v, %v; want none and no error", missing, err)
	}
	f.Close()
	if _, err := f.GetServices(); !errors.Is(err, unix.EBADF) {
		t.Errorf("after Close: error %v, want EBADF", err)
	}
}
