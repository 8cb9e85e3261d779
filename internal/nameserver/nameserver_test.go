package nameserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

var addr = netip.MustParseAddr

// testZone is the zone of the tests: a name with addresses of both
// families, one with IPv4 only, the apex as a service, a name below an
// empty non-terminal, and two name servers, one of them out of the zone.
func testZone(failOpen bool) Zone {
	z := Zone{
		Origin:   "example.org.",
		TTL:      30 * time.Second,
		FailOpen: failOpen,
		NS: []Host{
			{Name: "ns1.example.org.", Addrs: []netip.Addr{addr("192.0.2.53"), addr("2001:db8::53")}},
			{Name: "ns2.other.net.", Addrs: []netip.Addr{addr("198.51.100.53")}},
		},
		Services: map[string][]netip.Addr{
			"www.example.org.":      {addr("192.0.2.1"), addr("192.0.2.2"), addr("192.0.2.3"), addr("2001:db8::1"), addr("2001:db8::2")},
			"v4only.example.org.":   {addr("192.0.2.10")},
			"example.org.":          {addr("192.0.2.20")},
			"deep.sub.example.org.": {addr("192.0.2.30")},
		},
	}
	return z
}

// upInTests is what is up in the table tests unless a case says otherwise.
var upInTests = []netip.Addr{addr("192.0.2.1"), addr("192.0.2.3"), addr("2001:db8::2"), addr("192.0.2.20"), addr("192.0.2.30")}

func query(name string, qtype uint16) *dns.Msg {
	return new(dns.Msg).SetQuestion(name, qtype)
}

// summary is what the tests check of a reply. Records are in presentation
// format, but a SOA's serial reads "SERIAL": it depends on the time.
type summary struct {
	Rcode     string
	AA, RA    bool
	Answer    []string
	Ns, Extra []string
}

func summarize(m *dns.Msg) summary {
	rrs := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			if soa, ok := rr.(*dns.SOA); ok {
				c := *soa
				c.Serial = 0
				rr = &c
			}
			s := strings.Join(strings.Fields(rr.String()), " ")
			if rr.Header().Rrtype == dns.TypeSOA {
				s = strings.Replace(s, " 0 3600 ", " SERIAL 3600 ", 1)
			}
			out = append(out, s)
		}
		return out
	}
	return summary{
		Rcode: dns.RcodeToString[m.Rcode], AA: m.Authoritative, RA: m.RecursionAvailable,
		Answer: rrs(m.Answer), Ns: rrs(m.Ns), Extra: rrs(m.Extra),
	}
}

const soa = "example.org. 30 IN SOA ns1.example.org. hostmaster.example.org. SERIAL 3600 600 86400 30"

func TestAnswer(t *testing.T) {
	noData := summary{Rcode: "NOERROR", AA: true, Ns: []string{soa}}
	for _, tc := range []struct {
		name     string
		q        *dns.Msg
		failOpen bool
		up       []netip.Addr // nil: upInTests
		want     summary
	}{
		{
			name: "A: the up addresses", q: query("www.example.org.", dns.TypeA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{
				"www.example.org. 30 IN A 192.0.2.1", "www.example.org. 30 IN A 192.0.2.3"}},
		},
		{
			name: "AAAA: the up addresses", q: query("www.example.org.", dns.TypeAAAA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"www.example.org. 30 IN AAAA 2001:db8::2"}},
		},
		{
			name: "names are case-insensitive, the answer has the question's case", q: query("WWW.Example.ORG.", dns.TypeAAAA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"WWW.Example.ORG. 30 IN AAAA 2001:db8::2"}},
		},
		{name: "none up, fail closed: NODATA", q: query("v4only.example.org.", dns.TypeA), want: noData},
		{
			name: "none up, fail open: all of the family", q: query("v4only.example.org.", dns.TypeA), failOpen: true,
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"v4only.example.org. 30 IN A 192.0.2.10"}},
		},
		{
			name: "none of one family up, fail open: all of that family", failOpen: true,
			q: query("www.example.org.", dns.TypeAAAA), up: []netip.Addr{addr("192.0.2.1")},
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{
				"www.example.org. 30 IN AAAA 2001:db8::1", "www.example.org. 30 IN AAAA 2001:db8::2"}},
		},
		{
			name: "none of one family up, fail closed: NODATA for it", q: query("www.example.org.", dns.TypeAAAA),
			up: []netip.Addr{addr("192.0.2.1")}, want: noData,
		},
		{name: "no address of the family, fail closed: NODATA", q: query("v4only.example.org.", dns.TypeAAAA), want: noData},
		{name: "no address of the family, fail open: NODATA", q: query("v4only.example.org.", dns.TypeAAAA), failOpen: true, want: noData},
		{name: "other type of a service: NODATA", q: query("www.example.org.", dns.TypeTXT), want: noData},
		{name: "ANY: NODATA", q: query("www.example.org.", dns.TypeANY), want: noData},
		{
			name: "unknown name: NXDOMAIN", q: query("nope.example.org.", dns.TypeA),
			want: summary{Rcode: "NXDOMAIN", AA: true, Ns: []string{soa}},
		},
		{
			name: "below a service: NXDOMAIN", q: query("a.www.example.org.", dns.TypeAAAA),
			want: summary{Rcode: "NXDOMAIN", AA: true, Ns: []string{soa}},
		},
		{name: "empty non-terminal: NODATA", q: query("sub.example.org.", dns.TypeA), want: noData},
		{
			name: "below the empty non-terminal", q: query("deep.sub.example.org.", dns.TypeA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"deep.sub.example.org. 30 IN A 192.0.2.30"}},
		},
		{name: "outside the zone: REFUSED", q: query("www.example.com.", dns.TypeA), want: summary{Rcode: "REFUSED"}},
		{name: "parent of the zone: REFUSED", q: query("org.", dns.TypeSOA), want: summary{Rcode: "REFUSED"}},
		{
			name: "class CH: REFUSED",
			q: func() *dns.Msg {
				m := query("www.example.org.", dns.TypeA)
				m.Question[0].Qclass = dns.ClassCHAOS
				return m
			}(),
			want: summary{Rcode: "REFUSED"},
		},
		{
			name: "SOA", q: query("example.org.", dns.TypeSOA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{soa}},
		},
		{
			name: "NS, with glue for the name server in the zone", q: query("Example.org.", dns.TypeNS),
			want: summary{Rcode: "NOERROR", AA: true,
				Answer: []string{"Example.org. 30 IN NS ns1.example.org.", "Example.org. 30 IN NS ns2.other.net."},
				Extra:  []string{"ns1.example.org. 30 IN A 192.0.2.53", "ns1.example.org. 30 IN AAAA 2001:db8::53"}},
		},
		{
			name: "the apex as a service", q: query("example.org.", dns.TypeA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"example.org. 30 IN A 192.0.2.20"}},
		},
		{name: "the apex, no AAAA", q: query("example.org.", dns.TypeAAAA), want: noData},
		{
			name: "name server A", q: query("ns1.example.org.", dns.TypeA), up: []netip.Addr{},
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"ns1.example.org. 30 IN A 192.0.2.53"}},
		},
		{
			name: "name server AAAA", q: query("ns1.example.org.", dns.TypeAAAA),
			want: summary{Rcode: "NOERROR", AA: true, Answer: []string{"ns1.example.org. 30 IN AAAA 2001:db8::53"}},
		},
		{name: "name server, other type", q: query("ns1.example.org.", dns.TypeMX), want: noData},
		{name: "NS below the apex: NODATA", q: query("www.example.org.", dns.TypeNS), want: noData},
		{name: "SOA below the apex: NODATA", q: query("www.example.org.", dns.TypeSOA), want: noData},
		{
			name: "EDNS0: an OPT in the reply", q: query("v4only.example.org.", dns.TypeA).SetEdns0(4096, false),
			want: summary{Rcode: "NOERROR", AA: true, Ns: []string{soa}, Extra: []string{
				";; OPT PSEUDOSECTION: ; EDNS: version 0; flags:; udp: 1232"}},
		},
		{
			name: "EDNS1: BADVERS",
			q: func() *dns.Msg {
				m := query("www.example.org.", dns.TypeA).SetEdns0(4096, false)
				m.IsEdns0().SetVersion(1)
				return m
			}(),
			want: summary{Rcode: "BADSIG", Extra: []string{";; OPT PSEUDOSECTION: ; EDNS: version 0; flags:; udp: 1232"}},
		},
		{
			name: "not a query: NOTIMP",
			q:    func() *dns.Msg { m := query("example.org.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }(),
			want: summary{Rcode: "NOTIMP"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(testZone(tc.failOpen), nil)
			up := tc.up
			if up == nil {
				up = upInTests
			}
			for _, a := range up {
				s.SetUp(a, true)
			}
			m := s.Answer(tc.q)
			if m.Id != tc.q.Id || !m.Response || m.RecursionDesired != (tc.q.Opcode == dns.OpcodeQuery) {
				t.Errorf("reply id %d response %t rd %t, want id %d, a response, rd copied in a query", m.Id, m.Response, m.RecursionDesired, tc.q.Id)
			}
			if diff := cmp.Diff(tc.want, summarize(m)); diff != "" {
				t.Errorf("reply differs (-want +got):\n%s\n%s", diff, m)
			}
			if _, err := m.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
		})
	}
}

// TestNegativeTTL checks the NODATA and NXDOMAIN answers' SOA: its TTL
// and minimum are both the zone's TTL, which resolvers cache them for.
func TestNegativeTTL(t *testing.T) {
	s := New(testZone(false), nil)
	for _, q := range []*dns.Msg{query("www.example.org.", dns.TypeA), query("nope.example.org.", dns.TypeA)} {
		m := s.Answer(q)
		if len(m.Ns) != 1 {
			t.Fatalf("authority %v, want a SOA", m.Ns)
		}
		soa := m.Ns[0].(*dns.SOA)
		if soa.Hdr.Ttl != 30 || soa.Minttl != 30 {
			t.Errorf("SOA ttl %d minimum %d, want 30 and 30", soa.Hdr.Ttl, soa.Minttl)
		}
	}
}

func answerAddrs(t *testing.T, m *dns.Msg) []string {
	t.Helper()
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		default:
			t.Fatalf("answer %s, want A or AAAA", rr)
		}
	}
	return out
}

// TestRotation checks that each answer starts one address further, for
// each type on its own, over the addresses that are up.
func TestRotation(t *testing.T) {
	s := New(testZone(false), nil)
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8::2"} {
		s.SetUp(addr(a), true)
	}
	want4 := [][]string{
		{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
		{"192.0.2.2", "192.0.2.3", "192.0.2.1"},
		{"192.0.2.3", "192.0.2.1", "192.0.2.2"},
		{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
	}
	want6 := [][]string{{"2001:db8::1", "2001:db8::2"}, {"2001:db8::2", "2001:db8::1"}}
	for i, w := range want4 {
		if got := answerAddrs(t, s.Answer(query("www.example.org.", dns.TypeA))); !cmp.Equal(got, w) {
			t.Errorf("A answer %d: %v, want %v", i, got, w)
		}
		if got := answerAddrs(t, s.Answer(query("www.example.org.", dns.TypeAAAA))); !cmp.Equal(got, want6[i%2]) {
			t.Errorf("AAAA answer %d: %v, want %v", i, got, want6[i%2])
		}
	}
	// One down: the rotation goes on over the two left.
	s.SetUp(addr("192.0.2.2"), false)
	seen := map[string]int{}
	for range 4 {
		got := answerAddrs(t, s.Answer(query("www.example.org.", dns.TypeA)))
		if len(got) != 2 || got[0] == got[1] || strings.Contains(strings.Join(got, " "), "192.0.2.2") {
			t.Fatalf("A answer %v, want 192.0.2.1 and 192.0.2.3", got)
		}
		seen[got[0]]++
	}
	if seen["192.0.2.1"] != 2 || seen["192.0.2.3"] != 2 {
		t.Errorf("first addresses %v, want each of the two up twice", seen)
	}
}

// TestSerial checks that the serial grows when the set of up addresses
// changes, and only then.
func TestSerial(t *testing.T) {
	s := New(testZone(false), nil)
	serial := func() uint32 { return s.Answer(query("example.org.", dns.TypeSOA)).Answer[0].(*dns.SOA).Serial }
	first := serial()
	if now := uint32(time.Now().Unix()); first > now || first < now-60 {
		t.Errorf("first serial %d, want about the Unix time %d", first, now)
	}
	s.SetUp(addr("192.0.2.1"), false) // down already
	if got := serial(); got != first {
		t.Errorf("serial %d after no change, want %d", got, first)
	}
	s.SetUp(addr("192.0.2.1"), true)
	s.SetUp(addr("::ffff:192.0.2.1"), true) // the same address
	if got := serial(); got != first+1 {
		t.Errorf("serial %d after one change, want %d", got, first+1)
	}
	s.SetUp(addr("192.0.2.1"), false)
	if got := serial(); got != first+2 {
		t.Errorf("serial %d after two changes, want %d", got, first+2)
	}
}

func TestNames(t *testing.T) {
	s := New(testZone(false), nil)
	for _, a := range upInTests {
		s.SetUp(a, true)
	}
	s.SetUp(addr("192.0.2.20"), false)
	want := []NameState{
		{Name: "deep.sub.example.org.", Answer: []netip.Addr{addr("192.0.2.30")}, Up: []netip.Addr{addr("192.0.2.30")}},
		{Name: "example.org.", Answer: []netip.Addr{}, Down: []netip.Addr{addr("192.0.2.20")}},
		{Name: "v4only.example.org.", Answer: []netip.Addr{}, Down: []netip.Addr{addr("192.0.2.10")}},
		{
			Name:   "www.example.org.",
			Answer: []netip.Addr{addr("192.0.2.1"), addr("192.0.2.3"), addr("2001:db8::2")},
			Up:     []netip.Addr{addr("192.0.2.1"), addr("192.0.2.3"), addr("2001:db8::2")},
			Down:   []netip.Addr{addr("192.0.2.2"), addr("2001:db8::1")},
		},
	}
	if diff := cmp.Diff(want, s.Names(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("names differ (-want +got):\n%s", diff)
	}
	// Fail open: a name with none up answers all it has.
	s = New(testZone(true), nil)
	for _, st := range s.Names() {
		if st.Name == "www.example.org." && len(st.Answer) != 5 {
			t.Errorf("fail open, none up: www answers %v, want all five", st.Answer)
		}
	}
}

// manyZone has a name with more A records than fit in 512 bytes, or in
// 1232.
func manyZone() (Zone, []netip.Addr) {
	z := testZone(false)
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)}))
	}
	z.Services["many.example.org."] = many
	return z, many
}

// TestServe serves on 127.0.0.1 over UDP and TCP and asks with miekg's
// client: a plain answer over each, a big answer truncated over UDP (with
// and without EDNS0) and whole over TCP, then a clean shutdown.
func TestServe(t *testing.T) {
	z, many := manyZone()
	s := New(z, slog.New(slog.DiscardHandler))
	for _, a := range append(many, upInTests...) {
		s.SetUp(a, true)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		udp.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, udp, tcp) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not return 10 s after its context ended")
		}
	}
	defer stop()

	exchange := func(network, server string, q *dns.Msg) *dns.Msg {
		t.Helper()
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		m, _, err := c.Exchange(q, server)
		if err != nil {
			t.Fatalf("%s query %s: %v", network, q.Question[0].Name, err)
		}
		return m
	}
	udpAddr, tcpAddr := udp.LocalAddr().String(), tcp.Addr().String()
	for _, c := range []struct{ network, server string }{{"udp", udpAddr}, {"tcp", tcpAddr}} {
		m := exchange(c.network, c.server, query("www.example.org.", dns.TypeA))
		if got := answerAddrs(t, m); len(got) != 2 || !m.Authoritative || m.Truncated {
			t.Errorf("%s: answer %v aa %t tc %t, want two addresses, aa, no tc", c.network, got, m.Authoritative, m.Truncated)
		}
		if m := exchange(c.network, c.server, query("nope.example.org.", dns.TypeA)); m.Rcode != dns.RcodeNameError {
			t.Errorf("%s: rcode %s, want NXDOMAIN", c.network, dns.RcodeToString[m.Rcode])
		}
	}

	// UDP without EDNS0: at most 512 bytes, TC set; TCP: all of them.
	m := exchange("udp", udpAddr, query("many.example.org.", dns.TypeA))
	if !m.Truncated || len(m.Answer) >= len(many) {
		t.Errorf("udp: tc %t with %d answers, want tc and fewer than %d", m.Truncated, len(m.Answer), len(many))
	}
	m.Compress = true // as sent
	if n, _ := m.Pack(); len(n) > dns.MinMsgSize {
		t.Errorf("udp answer of %d bytes, want at most %d", len(n), dns.MinMsgSize)
	}
	// UDP with EDNS0 4096: at most the server's 1232, still too small.
	m = exchange("udp", udpAddr, query("many.example.org.", dns.TypeA).SetEdns0(4096, false))
	if !m.Truncated || len(m.Answer) >= len(many) || len(m.Answer) <= 30 {
		t.Errorf("udp edns0: tc %t with %d answers, want tc and more than 30, fewer than %d", m.Truncated, len(m.Answer), len(many))
	}
	if m.IsEdns0() == nil {
		t.Errorf("udp edns0: no OPT in the answer")
	}
	m = exchange("tcp", tcpAddr, query("many.example.org.", dns.TypeA))
	if got := answerAddrs(t, m); m.Truncated || len(got) != len(many) {
		t.Errorf("tcp: tc %t with %d answers, want all %d", m.Truncated, len(got), len(many))
	}

	// A TCP connection left open does not hold up the shutdown.
	conn, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop()
	if _, _, err := (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(query("www.example.org.", dns.TypeA), tcpAddr); err == nil {
		t.Errorf("tcp query answered after serve returned")
	}
}

// TestServeStoppedAtOnce ends the context before the servers can have
// started: Serve must still return, and close the sockets.
func TestServeStoppedAtOnce(t *testing.T) {
	for i := range 20 {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- New(testZone(false), nil).Serve(ctx, udp, tcp) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: serve: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: serve did not return", i)
		}
		if _, err := udp.WriteTo([]byte("x"), udp.LocalAddr()); err == nil {
			t.Errorf("run %d: udp socket still open", i)
		}
		if _, err := net.DialTimeout("tcp", tcp.Addr().String(), time.Second); err == nil {
			t.Errorf("run %d: tcp listener still open", i)
		}
	}
}

func TestServeNothing(t *testing.T) {
	if err := New(testZone(false), nil).Serve(context.Background(), nil, nil); err == nil {
		t.Error("serve with no socket: no error")
	}
}

func Example() {
	s := New(Zone{
		Origin:   "example.org.",
		TTL:      5 * time.Second,
		NS:       []Host{{Name: "ns.example.org.", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}},
		Services: map[string][]netip.Addr{"www.example.org.": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}},
	}, nil)
	s.SetUp(netip.MustParseAddr("192.0.2.2"), true)
	m := s.Answer(new(dns.Msg).SetQuestion("www.example.org.", dns.TypeA))
	fmt.Println(dns.RcodeToString[m.Rcode], m.Answer[0].(*dns.A).A)
	// Output: NOERROR 192.0.2.2
}

// TestServeSocketError gives Serve a UDP socket closed already: the error
// stops the TCP side too and is returned, without the context ending.
func TestServeSocketError(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- New(testZone(false), nil).Serve(context.Background(), udp, tcp) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "udp") {
			t.Errorf("serve: %v, want an error of the udp socket", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	if _, err := net.DialTimeout("tcp", tcp.Addr().String(), time.Second); err == nil {
		t.Errorf("tcp listener still open")
	}
}
