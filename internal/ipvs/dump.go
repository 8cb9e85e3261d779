package ipvs

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

var errClosed = errors.New("ipvs table is closed")

// kernelService is a service as read from the kernel.
type kernelService struct {
	raw *mobyipvs.Service
	key svcKey
}

// Dump returns the kernel's services, sorted by address, protocol and port,
// with their destinations in kernel list order and their counters. Flags
// are reported without the hashed bit. A firewall-mark service, which Apply
// never creates, has no address and the protocol "fwmark:N".
func (t *Table) Dump() ([]Desired, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h == nil {
		return nil, errClosed
	}
	services, err := listServices(t.h)
	if err != nil {
		return nil, err
	}
	out := make([]Desired, 0, len(services))
	for _, ks := range services {
		dests, err := t.h.GetDestinations(ks.raw)
		if err != nil {
			return nil, fmt.Errorf("list destinations of %s: %w", fromMobyService(ks.raw), err)
		}
		d := Desired{Service: fromMobyService(ks.raw), Stats: fromMobyStats(ks.raw.Stats)}
		for _, md := range dests {
			dst := fromMobyDestination(md)
			d.Stats.ActiveConns += dst.Stats.ActiveConns
			d.Stats.InactiveConns += dst.Stats.InactiveConns
			d.Destinations = append(d.Destinations, dst)
		}
		out = append(out, d)
	}
	return out, nil
}

// listServices lists the kernel's services in a stable order.
func listServices(h Handle) ([]kernelService, error) {
	raw, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list ipvs services: %w", err)
	}
	out := make([]kernelService, 0, len(raw))
	for _, s := range raw {
		out = append(out, kernelService{raw: s, key: keyOf(s)})
	}
	slices.SortFunc(out, func(a, b kernelService) int {
		return cmp.Or(
			cmp.Compare(a.key.fwmark, b.key.fwmark),
			a.key.addr.Compare(b.key.addr),
			cmp.Compare(a.key.proto, b.key.proto),
			cmp.Compare(a.key.port, b.key.port),
		)
	})
	return out, nil
}

func keyOf(s *mobyipvs.Service) svcKey {
	if s.FWMark != 0 {
		return svcKey{fwmark: s.FWMark}
	}
	return svcKey{addr: addrOf(s.Address), proto: s.Protocol, port: s.Port}
}

// addrOf converts a kernel address; moby/ipvs gives 4 bytes for IPv4.
func addrOf(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func protocolName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return ProtocolTCP
	case unix.IPPROTO_UDP:
		return ProtocolUDP
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// flagNames names the service flags other than hashed, sorted.
func flagNames(flags uint32) []string {
	flags &^= flagHashed
	var names []string
	for _, f := range []struct {
		bit  uint32
		name string
	}{
		{flagSched1, FlagFallback},
		{flagSched2, FlagPort},
		{flagPersistent, "persistent"},
		{flagOnePacket, "onepacket"},
	} {
		if flags&f.bit != 0 {
			names = append(names, f.name)
			flags &^= f.bit
		}
	}
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if flags&bit != 0 {
			names = append(names, fmt.Sprintf("0x%04x", bit))
		}
	}
	slices.Sort(names)
	return names
}

func fromMobyService(s *mobyipvs.Service) Service {
	out := Service{Scheduler: s.SchedName, Flags: flagNames(s.Flags)}
	if s.FWMark != 0 {
		out.Protocol = "fwmark:" + strconv.FormatUint(uint64(s.FWMark), 10)
		return out
	}
	out.Address = addrOf(s.Address)
	out.Port = s.Port
	out.Protocol = protocolName(s.Protocol)
	return out
}

func fromMobyDestination(d *mobyipvs.Destination) Destination {
	st := fromMobyStats(mobyipvs.SvcStats(d.Stats))
	st.ActiveConns = d.ActiveConnections
	st.InactiveConns = d.InactiveConnections
	return Destination{Address: addrOf(d.Address), Weight: d.Weight, Stats: st}
}

func fromMobyStats(s mobyipvs.SvcStats) Stats {
	return Stats{
		Connections: s.Connections,
		PacketsIn:   s.PacketsIn,
		PacketsOut:  s.PacketsOut,
		BytesIn:     s.BytesIn,
		BytesOut:    s.BytesOut,
		CPS:         s.CPS,
		PPSIn:       s.PPSIn,
		PPSOut:      s.PPSOut,
		BPSIn:       s.BPSIn,
		BPSOut:      s.BPSOut,
	}
}
