package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// maxWeight is the largest weight that moby/ipvs reads back correctly: it
// decodes the kernel's 32-bit weight attribute as 16 bits.
const maxWeight = 65535

// svcKey identifies a service in the kernel.
type svcKey struct {
	fwmark uint32
	addr   netip.Addr
	proto  uint16
	port   uint16
}

// wantService is a validated desired service with its kernel encoding.
type wantService struct {
	svc   Service // normalised: unmapped address, flags in effect
	key   svcKey
	flags uint32 // kernel flags, fallback included for mh and sh
	dests []Destination
}

// normalise validates the desired state and encodes it for the kernel. It
// reports every problem it finds.
func normalise(want []Desired) ([]wantService, error) {
	var errs []error
	out := make([]wantService, 0, len(want))
	seen := map[svcKey]bool{}
	for i, d := range want {
		w, err := normaliseOne(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("service #%d (%s): %w", i+1, d.Service, err))
			continue
		}
		if seen[w.key] {
			errs = append(errs, fmt.Errorf("service #%d (%s): duplicate service", i+1, w.svc))
			continue
		}
		seen[w.key] = true
		out = append(out, w)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func normaliseOne(d Desired) (wantService, error) {
	var errs []error
	s := d.Service
	addr := s.Address.Unmap()
	switch {
	case !addr.IsValid():
		errs = append(errs, errors.New("missing address"))
	case addr.Zone() != "":
		errs = append(errs, fmt.Errorf("address %s has a zone", addr))
	case addr.IsUnspecified():
		errs = append(errs, fmt.Errorf("unspecified address %s", addr))
	}
	if s.Port == 0 {
		errs = append(errs, errors.New("port 0"))
	}
	proto, err := protocolNumber(s.Protocol)
	if err != nil {
		errs = append(errs, err)
	}
	flags := uint32(0)
	switch s.Scheduler {
	case SchedulerMH, SchedulerSH:
		flags = flagSched1
	case SchedulerWLC, SchedulerRR:
	default:
		errs = append(errs, fmt.Errorf("unknown scheduler %q (want mh, sh, wlc or rr)", s.Scheduler))
	}
	for _, f := range s.Flags {
		switch f {
		case FlagFallback:
			flags |= flagSched1
		case FlagPort:
			flags |= flagSched2
		default:
			errs = append(errs, fmt.Errorf("unknown flag %q (want port or fallback)", f))
			continue
		}
		if s.Scheduler != SchedulerMH && s.Scheduler != SchedulerSH {
			errs = append(errs, fmt.Errorf("flag %q needs scheduler mh or sh, not %q", f, s.Scheduler))
		}
	}

	dests := make([]Destination, 0, len(d.Destinations))
	seen := map[netip.Addr]bool{}
	for j, dst := range d.Destinations {
		a := dst.Address.Unmap()
		switch {
		case !a.IsValid():
			errs = append(errs, fmt.Errorf("destination #%d: missing address", j+1))
			continue
		case a.Zone() != "":
			errs = append(errs, fmt.Errorf("destination %s: address has a zone", a))
			continue
		case a.IsUnspecified():
			errs = append(errs, fmt.Errorf("destination %s: unspecified address", a))
			continue
		case addr.IsValid() && a.Is4() != addr.Is4():
			errs = append(errs, fmt.Errorf("destination %s: address family differs from the service's", a))
			continue
		case seen[a]:
			errs = append(errs, fmt.Errorf("destination %s: duplicate", a))
			continue
		}
		if dst.Weight < 0 || dst.Weight > maxWeight {
			errs = append(errs, fmt.Errorf("destination %s: weight %d out of range 0-%d", a, dst.Weight, maxWeight))
			continue
		}
		seen[a] = true
		dests = append(dests, Destination{Address: a, Weight: dst.Weight})
	}
	if len(errs) > 0 {
		return wantService{}, errors.Join(errs...)
	}
	svc := Service{Address: addr, Port: s.Port, Protocol: s.Protocol, Scheduler: s.Scheduler, Flags: flagNames(flags)}
	return wantService{
		svc:   svc,
		key:   svcKey{addr: addr, proto: proto, port: s.Port},
		flags: flags,
		dests: dests,
	}, nil
}

func protocolNumber(name string) (uint16, error) {
	switch name {
	case ProtocolTCP:
		return unix.IPPROTO_TCP, nil
	case ProtocolUDP:
		return unix.IPPROTO_UDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp or udp)", name)
}

// moby encodes the desired service for moby/ipvs.
func (w *wantService) moby() *mobyipvs.Service {
	s := &mobyipvs.Service{
		Address:   net.IP(w.key.addr.AsSlice()),
		Protocol:  w.key.proto,
		Port:      w.key.port,
		SchedName: w.svc.Scheduler,
		Flags:     w.flags,
	}
	if w.key.addr.Is4() {
		s.AddressFamily = unix.AF_INET
		s.Netmask = 0xffffffff
	} else {
		s.AddressFamily = unix.AF_INET6
		s.Netmask = 128
	}
	return s
}

// mobyDestination encodes a destination of the desired service w.
func (w *wantService) mobyDestination(addr netip.Addr, weight int) *mobyipvs.Destination {
	d := &mobyipvs.Destination{
		Address:         net.IP(addr.AsSlice()),
		Port:            w.key.port,
		Weight:          weight,
		ConnectionFlags: mobyipvs.ConnFwdTunnel,
		AddressFamily:   unix.AF_INET,
	}
	if addr.Is6() {
		d.AddressFamily = unix.AF_INET6
	}
	return d
}
