package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/lab-lb/lab/internal/testenv"
)

var (
	ns1 = netip.MustParseAddrPort("192.0.2.53:53")
	ns2 = netip.MustParseAddrPort("[2001:db8::53]:53")
)

// clock is a fake clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// query is one exchange the resolver made.
type query struct {
	server netip.AddrPort
	name   string
	qtype  string
}

// fakeNet is a Config.Exchange that records the queries and answers them
// with its answer function.
type fakeNet struct {
	mu     sync.Mutex
	sent   []query
	answer func(server netip.AddrPort, q *dns.Msg) (*dns.Msg, error)
}

func (f *fakeNet) exchange(_ context.Context, q *dns.Msg, server netip.AddrPort) (*dns.Msg, error) {
	f.mu.Lock()
	f.sent = append(f.sent, query{server, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype]})
	answer := f.answer
	f.mu.Unlock()
	return answer(server, q)
}

// take returns the queries sent, and forgets them.
func (f *fakeNet) take() []query {
	f.mu.Lock()
	defer f.mu.Unlock()
	sent := f.sent
	f.sent = nil
	return sent
}

func (f *fakeNet) setAnswer(answer func(server netip.AddrPort, q *dns.Msg) (*dns.Msg, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = answer
}

// zone answers from records in presentation format, by name and type: no
// record of the type but some of the name is NODATA, none of the name
// NXDOMAIN, both with a SOA of TTL soaTTL and minimum soaMin.
func zone(soaTTL, soaMin uint32, records ...string) func(netip.AddrPort, *dns.Msg) (*dns.Msg, error) {
	var rrs []dns.RR
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		rrs = append(rrs, rr)
	}
	return func(_ netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg).SetReply(q)
		m.Authoritative = true
		exists := false
		for _, rr := range rrs {
			if !strings.EqualFold(rr.Header().Name, q.Question[0].Name) {
				continue
			}
			exists = true
			if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		if len(m.Answer) == 0 {
			m.Ns = []dns.RR{&dns.SOA{
				Hdr: dns.RR_Header{Name: "example.org.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaTTL},
				Ns:  "ns1.example.org.", Mbox: "hostmaster.example.org.", Minttl: soaMin,
			}}
		}
		return m, nil
	}
}

func rcode(rc int) func(netip.AddrPort, *dns.Msg) (*dns.Msg, error) {
	return func(_ netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		return new(dns.Msg).SetRcode(q, rc), nil
	}
}

var errIOTimeout = errors.New("read udp: i/o timeout")

func timeout(netip.AddrPort, *dns.Msg) (*dns.Msg, error) { return nil, errIOTimeout }

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func lookup(t *testing.T, r *Resolver, name string, want []netip.Addr) {
	t.Helper()
	got, err := r.Lookup(context.Background(), name)
	if err != nil {
		t.Fatalf("lookup %s: %v", name, err)
	}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Fatalf("lookup %s (-want +got):\n%s", name, diff)
	}
}

func types(sent []query) string {
	var s []string
	for _, q := range sent {
		s = append(s, q.qtype)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// TestCache checks that answers come from the cache while their TTL runs,
// each type for its own records' smallest TTL, and are asked again after.
func TestCache(t *testing.T) {
	clk := newClock()
	f := &fakeNet{answer: zone(30, 30,
		"www.example.org. 30 IN A 192.0.2.1",
		"www.example.org. 20 IN A 192.0.2.2",
		"www.example.org. 10 IN AAAA 2001:db8::1",
	)}
	r := New([]netip.AddrPort{ns1}, Config{Now: clk.Now, Exchange: f.exchange})
	want := addrs("192.0.2.1", "192.0.2.2", "2001:db8::1")
	lookup(t, r, "www.example.org", want) // not fully qualified: gets the dot
	sent := f.take()
	if types(sent) != "A AAAA" || sent[0].name != "www.example.org." {
		t.Fatalf("queries %v, want A and AAAA of www.example.org.", sent)
	}
	clk.Add(9 * time.Second)
	lookup(t, r, "WWW.example.org.", want) // the cache is case-insensitive
	if sent := f.take(); len(sent) != 0 {
		t.Fatalf("queries %v within the TTLs, want none", sent)
	}
	clk.Add(time.Second) // AAAA's 10 s are over, A has 10 s left of its 20
	lookup(t, r, "www.example.org.", want)
	if got := types(f.take()); got != "AAAA" {
		t.Fatalf("queries %q after 10 s, want AAAA", got)
	}
	f.setAnswer(zone(30, 30, "www.example.org. 30 IN A 192.0.2.3"))
	clk.Add(9 * time.Second)
	lookup(t, r, "www.example.org.", want) // both still cached
	clk.Add(time.Second)
	lookup(t, r, "www.example.org.", addrs("192.0.2.3"))
	if got := types(f.take()); got != "A AAAA" {
		t.Fatalf("queries %q after 20 s, want A and AAAA", got)
	}
	want4 := Stats{Lookups: 5, CacheHits: 2, Queries: 5}
	if got := r.Stats(); got != want4 {
		t.Errorf("stats %+v, want %+v", got, want4)
	}
}

// TestZeroTTL checks that an answer of TTL 0 is used once and not cached.
func TestZeroTTL(t *testing.T) {
	f := &fakeNet{answer: zone(0, 0, "www.example.org. 0 IN A 192.0.2.1")}
	r := New([]netip.AddrPort{ns1}, Config{Now: newClock().Now, Exchange: f.exchange})
	lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
	lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
	if got := len(f.take()); got != 4 {
		t.Errorf("%d queries, want 4", got)
	}
}

// TestNegativeCache checks that NXDOMAIN and NODATA are cached for the
// smaller of the SOA's TTL and minimum, at most a minute, and not at all
// without a SOA.
func TestNegativeCache(t *testing.T) {
	for _, tc := range []struct {
		name           string
		soaTTL, soaMin uint32
		lookup         string
		want           error
		cached         time.Duration
	}{
		{"NXDOMAIN, SOA minimum smaller", 30, 20, "nope.example.org.", ErrNXDomain, 20 * time.Second},
		{"NXDOMAIN, SOA TTL smaller", 5, 20, "nope.example.org.", ErrNXDomain, 5 * time.Second},
		{"NODATA", 10, 10, "v6.example.org.", ErrNoAnswer, 10 * time.Second},
		{"NODATA, at most a minute", 3600, 3600, "v6.example.org.", ErrNoAnswer, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			f := &fakeNet{answer: zone(tc.soaTTL, tc.soaMin, "v6.example.org. 30 IN MX 10 mail.example.org.")}
			r := New([]netip.AddrPort{ns1}, Config{Now: clk.Now, Exchange: f.exchange})
			for i := range 2 {
				if _, err := r.Lookup(context.Background(), tc.lookup); !errors.Is(err, tc.want) {
					t.Fatalf("lookup %d: %v, want %v", i, err, tc.want)
				}
				clk.Add(tc.cached - time.Second)
			}
			if got := len(f.take()); got != 2 {
				t.Fatalf("%d queries within the negative TTL, want 2", got)
			}
			clk.Add(time.Second)
			if _, err := r.Lookup(context.Background(), tc.lookup); !errors.Is(err, tc.want) {
				t.Fatalf("lookup after the negative TTL: %v, want %v", err, tc.want)
			}
			if got := len(f.take()); got != 2 {
				t.Fatalf("%d queries after the negative TTL, want 2", got)
			}
		})
	}
	t.Run("no SOA: not cached", func(t *testing.T) {
		f := &fakeNet{answer: func(_ netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
			return new(dns.Msg).SetRcode(q, dns.RcodeNameError), nil
		}}
		r := New([]netip.AddrPort{ns1}, Config{Now: newClock().Now, Exchange: f.exchange})
		for range 2 {
			if _, err := r.Lookup(context.Background(), "nope.example.org."); !errors.Is(err, ErrNXDomain) {
				t.Fatalf("lookup: %v, want NXDOMAIN", err)
			}
		}
		if got := len(f.take()); got != 4 {
			t.Fatalf("%d queries, want 4", got)
		}
	})
}

// TestFailover checks that a server that times out, or answers with an
// error, is followed by the next, in order.
func TestFailover(t *testing.T) {
	good := zone(30, 30, "www.example.org. 30 IN A 192.0.2.1")
	for _, tc := range []struct {
		name  string
		first func(netip.AddrPort, *dns.Msg) (*dns.Msg, error)
	}{
		{"timeout", timeout},
		{"SERVFAIL", rcode(dns.RcodeServerFailure)},
		{"REFUSED", rcode(dns.RcodeRefused)},
		{"answer to another question", func(s netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
			m, err := good(s, q)
			m.Question[0].Name = "other.example.org."
			return m, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeNet{answer: func(s netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
				if s == ns1 {
					return tc.first(s, q)
				}
				return good(s, q)
			}}
			r := New([]netip.AddrPort{ns1, ns2}, Config{Now: newClock().Now, Exchange: f.exchange})
			lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
			sent := f.take()
			if len(sent) != 4 {
				t.Fatalf("queries %v, want A and AAAA to each server", sent)
			}
			for _, qtype := range []string{"A", "AAAA"} {
				var order []netip.AddrPort
				for _, q := range sent {
					if q.qtype == qtype {
						order = append(order, q.server)
					}
				}
				if !cmp.Equal(order, []netip.AddrPort{ns1, ns2}, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })) {
					t.Errorf("%s asked of %v, want %v then %v", qtype, order, ns1, ns2)
				}
			}
		})
	}
}

// TestAttempts checks the rounds over the server list: a server that
// answers only the second time it is asked is answered with two attempts,
// not with one; and a timeout is never cached.
func TestAttempts(t *testing.T) {
	for _, attempts := range []int{1, 2} {
		t.Run(fmt.Sprint(attempts), func(t *testing.T) {
			var mu sync.Mutex
			asked := map[string]int{}
			good := zone(30, 30, "www.example.org. 30 IN A 192.0.2.1")
			f := &fakeNet{answer: func(s netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
				k := s.String() + dns.TypeToString[q.Question[0].Qtype]
				mu.Lock()
				asked[k]++
				n := asked[k]
				mu.Unlock()
				if n < 2 {
					return nil, errIOTimeout
				}
				return good(s, q)
			}}
			r := New([]netip.AddrPort{ns1, ns2}, Config{Now: newClock().Now, Exchange: f.exchange, Attempts: attempts})
			_, err := r.Lookup(context.Background(), "www.example.org.")
			sent := f.take()
			if attempts == 1 {
				if !errors.Is(err, ErrTimeout) || !errors.Is(err, errIOTimeout) {
					t.Fatalf("lookup: %v, want ErrTimeout wrapping the last error", err)
				}
				if len(sent) != 4 {
					t.Errorf("%d queries, want 4: A and AAAA to each server once", len(sent))
				}
				// Not cached: the next lookup asks again, and now
				// the servers answer.
				lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
				if got := r.Stats(); got.Timeouts != 1 || got.Queries != 6 {
					t.Errorf("stats %+v, want 1 timeout and 6 queries", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("lookup: %v", err)
			}
			if len(sent) != 6 {
				t.Errorf("%d queries, want 6: A and AAAA to each server, then to the first again", len(sent))
			}
		})
	}
}

// TestDefaults checks Timeout and Attempts when left zero: each query
// gets a 1 s deadline, and the server list is gone over twice.
func TestDefaults(t *testing.T) {
	var mu sync.Mutex
	var deadlines []time.Duration
	r := New([]netip.AddrPort{ns1}, Config{Exchange: func(ctx context.Context, q *dns.Msg, _ netip.AddrPort) (*dns.Msg, error) {
		d, ok := ctx.Deadline()
		if !ok {
			t.Error("query without a deadline")
		}
		mu.Lock()
		deadlines = append(deadlines, time.Until(d))
		mu.Unlock()
		return nil, errIOTimeout
	}})
	if _, err := r.Lookup(context.Background(), "www.example.org."); !errors.Is(err, ErrTimeout) {
		t.Fatalf("lookup: %v, want ErrTimeout", err)
	}
	if len(deadlines) != 4 {
		t.Errorf("%d queries, want 4", len(deadlines))
	}
	for _, d := range deadlines {
		if d <= 0 || d > time.Second {
			t.Errorf("query deadline %s away, want at most 1 s", d)
		}
	}
}

// TestErrors checks what each combination of the two families' answers
// gives, with errors.Is, and the stats' failure classes.
func TestErrors(t *testing.T) {
	byType := func(a, aaaa func(netip.AddrPort, *dns.Msg) (*dns.Msg, error)) func(netip.AddrPort, *dns.Msg) (*dns.Msg, error) {
		return func(s netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
			if q.Question[0].Qtype == dns.TypeA {
				return a(s, q)
			}
			return aaaa(s, q)
		}
	}
	www := zone(30, 30, "www.example.org. 30 IN A 192.0.2.1", "www.example.org. 30 IN AAAA 2001:db8::1")
	noData := zone(30, 30, "www.example.org. 30 IN MX 10 mail.example.org.")
	for _, tc := range []struct {
		name    string
		answer  func(netip.AddrPort, *dns.Msg) (*dns.Msg, error)
		want    []netip.Addr
		is      error
		message string
		stats   Stats
	}{
		{name: "both families", answer: www, want: addrs("192.0.2.1", "2001:db8::1")},
		{name: "AAAA times out: A", answer: byType(www, timeout), want: addrs("192.0.2.1")},
		{name: "A times out: AAAA", answer: byType(timeout, www), want: addrs("2001:db8::1")},
		{name: "A SERVFAIL: AAAA", answer: byType(rcode(dns.RcodeServerFailure), www), want: addrs("2001:db8::1")},
		{name: "A only, AAAA NODATA", answer: byType(www, noData), want: addrs("192.0.2.1")},
		{
			name: "NXDOMAIN", answer: zone(30, 30), is: ErrNXDomain,
			message: "lookup www.example.org.: no such name", stats: Stats{NXDomain: 1},
		},
		{
			name: "NODATA", answer: noData, is: ErrNoAnswer,
			message: "lookup www.example.org.: no address", stats: Stats{NoAnswer: 1},
		},
		{
			name: "SERVFAIL", answer: rcode(dns.RcodeServerFailure), is: ErrServer,
			message: "name server error: SERVFAIL from 192.0.2.53:53", stats: Stats{ServerErrors: 1},
		},
		{
			name: "REFUSED", answer: rcode(dns.RcodeRefused), is: ErrServer,
			message: "name server error: REFUSED", stats: Stats{ServerErrors: 1},
		},
		{
			name: "timeout", answer: timeout, is: ErrTimeout,
			message: "name servers did not answer: 192.0.2.53:53: read udp: i/o timeout", stats: Stats{Timeouts: 1},
		},
		{
			name: "A SERVFAIL, AAAA NODATA: the server error", answer: byType(rcode(dns.RcodeServerFailure), noData),
			is: ErrServer, message: "A: name server error: SERVFAIL", stats: Stats{ServerErrors: 1},
		},
		{
			name: "A NODATA, AAAA times out: the timeout", answer: byType(noData, timeout),
			is: ErrTimeout, message: "AAAA: name servers did not answer", stats: Stats{Timeouts: 1},
		},
		{
			name: "A times out, AAAA NXDOMAIN: NXDOMAIN", answer: byType(timeout, zone(30, 30)),
			is: ErrNXDomain, stats: Stats{NXDomain: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeNet{answer: tc.answer}
			r := New([]netip.AddrPort{ns1}, Config{Now: newClock().Now, Exchange: f.exchange, Attempts: 1})
			got, err := r.Lookup(context.Background(), "www.example.org.")
			if tc.is == nil {
				if err != nil {
					t.Fatalf("lookup: %v", err)
				}
				if diff := cmp.Diff(tc.want, got, cmpAddr); diff != "" {
					t.Fatalf("lookup (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tc.is) || got != nil {
				t.Fatalf("lookup: %v, %v; want no address and %v", got, err, tc.is)
			}
			for _, other := range []error{ErrNXDomain, ErrNoAnswer, ErrServer, ErrTimeout} {
				if other != tc.is && errors.Is(err, other) {
					t.Errorf("error %q is also %q", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q, want it to say %q", err, tc.message)
			}
			st := r.Stats()
			st.Lookups, st.Queries = 0, 0
			if st != tc.stats {
				t.Errorf("stats %+v, want %+v", st, tc.stats)
			}
		})
	}
}

// TestNames checks the names Lookup takes: an address is returned as it
// is, without a query; a name that is not one is an error.
func TestNames(t *testing.T) {
	f := &fakeNet{answer: timeout}
	r := New([]netip.AddrPort{ns1}, Config{Exchange: f.exchange})
	lookup(t, r, "192.0.2.7", addrs("192.0.2.7"))
	lookup(t, r, "2001:db8::7", addrs("2001:db8::7"))
	for _, name := range []string{"", "a..b", strings.Repeat("a", 64) + ".example.org."} {
		if _, err := r.Lookup(context.Background(), name); err == nil || errors.Is(err, ErrTimeout) {
			t.Errorf("lookup %q: %v, want an error about the name", name, err)
		}
	}
	if sent := f.take(); len(sent) != 0 {
		t.Errorf("queries %v, want none", sent)
	}
}

// TestCNAME checks that the addresses at the end of a CNAME chain are the
// answer, cached for the smallest TTL in the chain.
func TestCNAME(t *testing.T) {
	clk := newClock()
	f := &fakeNet{answer: func(_ netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg).SetReply(q)
		for _, s := range []string{
			"www.example.org. 5 IN CNAME lb.example.org.",
			"lb.example.org. 30 IN A 192.0.2.1",
			"other.example.org. 30 IN A 192.0.2.99",
		} {
			rr, _ := dns.NewRR(s)
			if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		if q.Question[0].Qtype != dns.TypeA { // NODATA at the end of the chain
			soa, _ := dns.NewRR("example.org. 30 IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 30")
			m.Ns = append(m.Ns, soa)
		}
		return m, nil
	}}
	r := New([]netip.AddrPort{ns1}, Config{Now: clk.Now, Exchange: f.exchange})
	lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
	clk.Add(4 * time.Second)
	lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
	if got := len(f.take()); got != 2 {
		t.Fatalf("%d queries within 5 s, want 2", got)
	}
	clk.Add(time.Second)
	lookup(t, r, "www.example.org.", addrs("192.0.2.1"))
	if got := types(f.take()); got != "A" {
		t.Fatalf("queries %q after 5 s, want A (the AAAA's NODATA is cached for 30 s)", got)
	}
}

// TestTruncated checks that a truncated answer with no address (from an
// Exchange that did not retry over TCP) is not taken for NODATA.
func TestTruncated(t *testing.T) {
	f := &fakeNet{answer: func(_ netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg).SetReply(q)
		m.Truncated = true
		return m, nil
	}}
	r := New([]netip.AddrPort{ns1}, Config{Exchange: f.exchange, Attempts: 1})
	if _, err := r.Lookup(context.Background(), "www.example.org."); !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("lookup: %v, want a server error saying truncated", err)
	}
}

// TestConcurrentMisses has many goroutines miss the cache for one name
// together: one query per type is sent, and every goroutine gets its
// answer.
func TestConcurrentMisses(t *testing.T) {
	release := make(chan struct{})
	answer := zone(30, 30, "www.example.org. 30 IN A 192.0.2.1", "www.example.org. 30 IN AAAA 2001:db8::1")
	f := &fakeNet{answer: func(s netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		<-release
		return answer(s, q)
	}}
	r := New([]netip.AddrPort{ns1}, Config{Now: newClock().Now, Exchange: f.exchange})
	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() {
			got, err := r.Lookup(context.Background(), "www.example.org.")
			if err == nil && !cmp.Equal(got, addrs("192.0.2.1", "2001:db8::1"), cmpAddr) {
				err = fmt.Errorf("got %v", got)
			}
			errs <- err
		}()
	}
	testenv.Eventually(t, 10*time.Second, "every lookup waits on a query", func() error {
		if w := r.waiting.Load(); w != 2*n {
			return fmt.Errorf("%d waiting, want %d", w, 2*n)
		}
		return nil
	})
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := types(f.take()); got != "A AAAA" {
		t.Errorf("queries %q, want one A and one AAAA", got)
	}
	if st := r.Stats(); st.Queries != 2 || st.Lookups != n {
		t.Errorf("stats %+v, want 2 queries for %d lookups", st, n)
	}
}

// TestCallerGivesUp checks that a lookup whose context ends returns at
// once, while the query it started goes on and its answer is cached for
// the next.
func TestCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	answered := make(chan struct{})
	answer := zone(30, 30, "www.example.org. 30 IN A 192.0.2.1")
	f := &fakeNet{answer: func(s netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		<-release
		defer func() { answered <- struct{}{} }()
		return answer(s, q)
	}}
	r := New([]netip.AddrPort{ns1}, Config{Now: newClock().Now, Exchange: f.exchange})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Lookup(ctx, "www.example.org.")
		done <- err
	}()
	testenv.Eventually(t, 10*time.Second, "the lookup waits on its queries", func() error {
		if w := r.waiting.Load(); w != 2 {
			return fmt.Errorf("%d waiting, want 2", w)
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("lookup: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := r.Lookup(ctx, "www.example.org."); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Errorf("lookup past its deadline: %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
	close(release)
	<-answered
	<-answered
	// The flights store their answers just after the exchanges return.
	testenv.Eventually(t, 10*time.Second, "the answer is cached", func() error {
		if w := r.waiting.Load(); w != 0 {
			return fmt.Errorf("%d waiting", w)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // only the cache can answer
		got, err := r.Lookup(ctx, "www.example.org.")
		if err != nil {
			return err
		}
		if !cmp.Equal(got, addrs("192.0.2.1"), cmpAddr) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	if got := len(f.take()); got != 2 {
		t.Errorf("%d queries, want 2", got)
	}
}

// TestSweep checks that expired entries leave the cache once it is big.
func TestSweep(t *testing.T) {
	clk := newClock()
	f := &fakeNet{answer: func(_ netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg).SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 10 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		}
		return m, nil
	}}
	r := New([]netip.AddrPort{ns1}, Config{Now: clk.Now, Exchange: f.exchange})
	for i := range minSweep {
		lookup(t, r, fmt.Sprintf("n%d.example.org.", i), addrs("192.0.2.1"))
	}
	clk.Add(10 * time.Second)
	lookup(t, r, "last.example.org.", addrs("192.0.2.1"))
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n != 1 {
		t.Errorf("%d cache entries, want 1: the others expired", n)
	}
}
