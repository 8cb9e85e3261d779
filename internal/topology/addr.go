package topology

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// maxLoopback is the most addresses a node may hold on lo.
const maxLoopback = 4096

// parseAddr parses a plain IP address; the string is a problem, or "".
func parseAddr(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil && strings.Contains(s, "/"):
		return netip.Addr{}, fmt.Sprintf("%q is not an IP address (write it without a prefix length)", s)
	case err != nil:
		return netip.Addr{}, fmt.Sprintf("%q is not an IP address", s)
	case a.Zone() != "":
		return netip.Addr{}, fmt.Sprintf("%q has a zone (want a plain address)", s)
	}
	return a, ""
}

// parsePrefix parses a prefix without host bits; the string is a problem, or "".
func parsePrefix(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		want := "192.0.2.128/25"
		if strings.Contains(s, ":") {
			want = "2001:db8:1::/64"
		}
		return netip.Prefix{}, fmt.Sprintf("%q is not a prefix (want e.g. %s)", s, want)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Sprintf("%q has host bits set (want %s)", s, p.Masked())
	}
	return p, ""
}

// hostBits is the number of host bits of p.
func hostBits(p netip.Prefix) int {
	return p.Addr().BitLen() - p.Bits()
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// hostRange returns the first and last addresses of p that a node may use:
// all but the network and broadcast addresses for IPv4 prefixes shorter than
// /31, all but the subnet-router anycast address for IPv6 prefixes shorter
// than /127.
func hostRange(p netip.Prefix) (first, last netip.Addr) {
	first, last = p.Masked().Addr(), lastAddr(p)
	if hostBits(p) >= 2 {
		first = first.Next()
		if last.Is4() {
			last = last.Prev()
		}
	}
	return first, last
}

// vipRange returns the first and last addresses of p that the VIP pool
// hands out: all but the first address and, for IPv4, the last. first is
// past last when there are none.
func vipRange(p netip.Prefix) (first, last netip.Addr) {
	first, last = p.Masked().Addr().Next(), lastAddr(p)
	if last.Is4() {
		last = last.Prev()
	}
	return first, last
}

// hostProblem says why a cannot be a node's address in p, or returns "".
func hostProblem(p netip.Prefix, a netip.Addr) string {
	switch {
	case !p.Contains(a):
		return "is not in"
	case hostBits(p) < 2:
		return ""
	case a == p.Addr() && a.Is4():
		return "is the network address of"
	case a == p.Addr():
		return "is the subnet-router anycast address of"
	case a.Is4() && a == lastAddr(p):
		return "is the broadcast address of"
	}
	return ""
}

// allocate gives every member of a segment its address: pinned[i] is the
// pinned address of member i, or the zero Addr; the result has the pinned
// addresses in place and the lowest free host addresses of p, in member
// order, for the others. Members left without an address (p is exhausted)
// keep the zero Addr and are counted in missing. Pinned addresses must be
// distinct host addresses of p.
func allocate(p netip.Prefix, pinned []netip.Addr) (addrs []netip.Addr, missing int) {
	addrs = slices.Clone(pinned)
	taken := map[netip.Addr]bool{}
	for _, a := range pinned {
		if a.IsValid() {
			taken[a] = true
		}
	}
	next, last := hostRange(p)
	for i := range addrs {
		if addrs[i].IsValid() {
			continue
		}
		for next.IsValid() && next.Compare(last) <= 0 && taken[next] {
			next = next.Next()
		}
		if !next.IsValid() || next.Compare(last) > 0 {
			missing++
			continue
		}
		addrs[i] = next
		next = next.Next()
	}
	return addrs, missing
}

// p2pCapacity is how many /31 (or /127) links the pool holds, capped at max.
func p2pCapacity(pool netip.Prefix, max int) int {
	h := hostBits(pool) - 1
	if h < 0 {
		return 0
	}
	if h >= 30 || 1<<h > max {
		return max
	}
	return 1 << h
}

// p2pAddrs returns the addresses of the i-th point-to-point link of pool:
// the even one for A and the odd one for B. The pool must hold the link.
func p2pAddrs(pool netip.Prefix, i int) (a, b netip.Prefix) {
	bits := pool.Addr().BitLen() - 1
	s := pool.Addr().AsSlice()
	carry := uint64(i) * 2
	for j := len(s) - 1; j >= 0 && carry > 0; j-- {
		sum := uint64(s[j]) + carry&0xff
		s[j] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	base, _ := netip.AddrFromSlice(s)
	return netip.PrefixFrom(base, bits), netip.PrefixFrom(base.Next(), bits)
}

// addN returns a advanced by n addresses, or the zero Addr past the end.
func addN(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

// expandLoopback expands one loopback item: an address, a prefix (every
// address in it) or a range A-B where B is a full address or, for IPv4, the
// last octet. It returns at most max+1 addresses, or a problem.
func expandLoopback(s string, max int) ([]netip.Addr, string) {
	if strings.Contains(s, "/") {
		p, problem := parsePrefix(s)
		if problem != "" {
			return nil, problem
		}
		if hostBits(p) > 20 || 1<<hostBits(p) > max {
			return nil, fmt.Sprintf("%s holds more than %d addresses", p, max)
		}
		var out []netip.Addr
		for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
			out = append(out, a)
		}
		return out, ""
	}
	from, to, isRange := strings.Cut(s, "-")
	first, problem := parseAddr(strings.TrimSpace(from))
	if problem != "" {
		return nil, problem
	}
	if !isRange {
		return []netip.Addr{first}, ""
	}
	to = strings.TrimSpace(to)
	var last netip.Addr
	if n, err := strconv.Atoi(to); err == nil && first.Is4() {
		if n < 0 || n > 255 {
			return nil, fmt.Sprintf("range %q: last octet %d is not 0-255", s, n)
		}
		b := first.As4()
		b[3] = byte(n)
		last = netip.AddrFrom4(b)
	} else if last, problem = parseAddr(to); problem != "" {
		if first.Is4() {
			return nil, fmt.Sprintf("range %q: %s (want a last octet or a full address)", s, problem)
		}
		return nil, fmt.Sprintf("range %q: %s (want a full IPv6 address)", s, problem)
	}
	switch {
	case first.Is4() != last.Is4():
		return nil, fmt.Sprintf("range %q mixes IPv4 and IPv6", s)
	case last.Less(first):
		return nil, fmt.Sprintf("range %q is reversed: %s is below %s", s, last, first)
	}
	var out []netip.Addr
	for a := first; a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
		out = append(out, a)
		if len(out) > max {
			return nil, fmt.Sprintf("range %q holds more than %d addresses", s, max)
		}
	}
	return out, ""
}
