// Package resolver is a caching stub resolver for the lab's clients. The
// load generator resolves a service name before each connection, as a real
// client does, and so sees a DNS load balancer's changes once the cached
// answer's TTL has run out; errors tell a DNS failure (no such name, no
// address, no answer from the name servers, a name server error) apart from
// a failed connection.
//
// A Resolver asks its name servers in order, for A and AAAA at once, caches
// answers for their TTL and negative answers for the SOA's (RFC 2308, at
// most a minute), and makes one query for many goroutines that miss the
// cache for one name together.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Errors of Lookup, for errors.Is. Other rcodes than NOERROR and NXDOMAIN
// (SERVFAIL, REFUSED, ...) give an error that names the rcode and wraps
// ErrServer.
var (
	ErrNoAnswer = errors.New("no address") // NOERROR with no A or AAAA (NODATA)
	ErrNXDomain = errors.New("no such name")
	ErrTimeout  = errors.New("name servers did not answer")
	ErrServer   = errors.New("name server error")
)

// maxNegativeTTL caps how long a negative answer is cached.
const maxNegativeTTL = time.Minute

// minSweep is the smallest cache size at which expired entries are swept
// out; they are replaced in place below it.
const minSweep = 1024

// Config tunes a Resolver; the zero value is usable.
type Config struct {
	Timeout  time.Duration    // per query and server (default 1s)
	Attempts int              // rounds over the server list (default 2)
	Now      func() time.Time // nil: time.Now (tests pass a fake clock)
	// Exchange sends m to server and returns the answer; it must give up
	// when ctx is done. nil: UDP with miekg's dns.Client, again over TCP
	// when the answer is truncated.
	Exchange func(ctx context.Context, m *dns.Msg, server netip.AddrPort) (*dns.Msg, error)
	Log      *slog.Logger // nil discards the logs
}

// Stats counts what a Resolver did since New.
type Stats struct {
	Lookups   uint64 `json:"lookups"`
	CacheHits uint64 `json:"cache_hits"` // lookups answered from the cache alone
	Queries   uint64 `json:"queries"`    // sent to name servers, every attempt counted
	// Failed lookups by class: which error Lookup returned.
	NXDomain     uint64 `json:"nxdomain"`
	NoAnswer     uint64 `json:"no_answer"`
	Timeouts     uint64 `json:"timeouts"`
	ServerErrors uint64 `json:"server_errors"`
}

// Resolver asks a list of name servers, in order, and caches answers for
// their TTL. It is safe for concurrent use.
type Resolver struct {
	servers  []netip.AddrPort
	timeout  time.Duration
	attempts int
	now      func() time.Time
	exchange func(ctx context.Context, m *dns.Msg, server netip.AddrPort) (*dns.Msg, error)
	log      *slog.Logger

	flights singleflight.Group
	waiting atomic.Int64 // callers waiting on a flight, for tests

	mu      sync.Mutex
	cache   map[key]entry
	sweepAt int // cache size at which expired entries are swept out

	lookups, hits, queries                     atomic.Uint64
	nxdomain, noAnswer, timeouts, serverErrors atomic.Uint64
}

// key is a cached RRset: a canonical name and A or AAAA.
type key struct {
	name  string
	qtype uint16
}

// answer is what resolving one name and type came to: addresses, or an
// error; ttl is how long it may be cached (0: not at all).
type answer struct {
	addrs []netip.Addr
	err   error
	ttl   time.Duration
}

type entry struct {
	answer
	expires time.Time
}

// New returns a resolver asking servers, in order.
func New(servers []netip.AddrPort, cfg Config) *Resolver {
	r := &Resolver{
		servers:  slices.Clone(servers),
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		now:      cfg.Now,
		exchange: cfg.Exchange,
		log:      cfg.Log,
		cache:    map[key]entry{},
		sweepAt:  minSweep,
	}
	if r.timeout <= 0 {
		r.timeout = time.Second
	}
	if r.attempts <= 0 {
		r.attempts = 2
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.exchange == nil {
		r.exchange = Exchange
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// Stats returns the counts so far.
func (r *Resolver) Stats() Stats {
	return Stats{
		Lookups:      r.lookups.Load(),
		CacheHits:    r.hits.Load(),
		Queries:      r.queries.Load(),
		NXDomain:     r.nxdomain.Load(),
		NoAnswer:     r.noAnswer.Load(),
		Timeouts:     r.timeouts.Load(),
		ServerErrors: r.serverErrors.Load(),
	}
}

// Lookup returns the addresses of name (A and AAAA, IPv4 first, in the
// order the server gave), from the cache while its TTL runs. A name that is
// not fully qualified gets the trailing dot; an IP address is returned as
// it is. When one family fails and the other has addresses, those are the
// answer. Otherwise the error wraps ErrNXDomain, ErrServer, ErrTimeout or
// ErrNoAnswer, the first that applies to either family, or the error of
// ctx if it ended first (wrapping ErrTimeout too at its deadline).
func (r *Resolver) Lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("lookup %q: not a domain name", name)
	}
	name = dns.CanonicalName(name)
	now := r.now()
	a, okA := r.cached(key{name, dns.TypeA}, now)
	aaaa, okAAAA := r.cached(key{name, dns.TypeAAAA}, now)
	switch {
	case okA && okAAAA:
		r.hits.Add(1)
	case okA:
		aaaa = r.fetch(ctx, key{name, dns.TypeAAAA})
	case okAAAA:
		a = r.fetch(ctx, key{name, dns.TypeA})
	default:
		var wg sync.WaitGroup
		wg.Go(func() { aaaa = r.fetch(ctx, key{name, dns.TypeAAAA}) })
		a = r.fetch(ctx, key{name, dns.TypeA})
		wg.Wait()
	}
	if addrs := slices.Concat(a.addrs, aaaa.addrs); len(addrs) > 0 {
		return addrs, nil
	}
	err := a.err
	if rank(aaaa.err) < rank(err) {
		err = aaaa.err
	}
	switch {
	case errors.Is(err, ErrNXDomain):
		r.nxdomain.Add(1)
	case errors.Is(err, ErrServer):
		r.serverErrors.Add(1)
	case errors.Is(err, ErrTimeout):
		r.timeouts.Add(1)
	case errors.Is(err, ErrNoAnswer):
		r.noAnswer.Add(1)
	}
	return nil, fmt.Errorf("lookup %s: %w", name, err)
}

// rank orders the errors of the two families: the lower tells more about
// the name. NXDOMAIN is about the name, whatever the type; a server error
// or a timeout for one type leaves open whether it has addresses, which a
// NODATA for the other does not rule out.
func rank(err error) int {
	switch {
	case err == nil:
		return 5
	case errors.Is(err, ErrNXDomain):
		return 0
	case errors.Is(err, ErrServer):
		return 1
	case errors.Is(err, ErrTimeout):
		return 2
	case errors.Is(err, ErrNoAnswer):
		return 4
	default: // the context was canceled
		return 3
	}
}

// cached returns the live cache entry of k.
func (r *Resolver) cached(k key, now time.Time) (answer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[k]
	if !ok || !now.Before(e.expires) {
		return answer{}, false
	}
	return e.answer, true
}

// store caches ans for its TTL, if it has one.
func (r *Resolver) store(k key, ans answer) {
	if ans.ttl <= 0 {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.sweepAt { // forget what expired, now and then
		for k, e := range r.cache {
			if !now.Before(e.expires) {
				delete(r.cache, k)
			}
		}
		r.sweepAt = max(2*len(r.cache), minSweep)
	}
	r.cache[k] = entry{answer: ans, expires: now.Add(ans.ttl)}
}

// fetch resolves k and caches the answer. Callers that miss the cache for
// k together share one resolution; it runs to its end even if they give
// up (Timeout × Attempts × servers at most), so that its answer is cached.
func (r *Resolver) fetch(ctx context.Context, k key) answer {
	flightKey := k.name + " " + dns.TypeToString[k.qtype]
	detached := context.WithoutCancel(ctx)
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	ch := r.flights.DoChan(flightKey, func() (any, error) {
		// A flight that ended between our look at the cache and this
		// one's start may have filled it.
		if ans, ok := r.cached(k, r.now()); ok {
			return ans, nil
		}
		ans := r.resolve(detached, k)
		r.store(k, ans)
		return ans, nil
	})
	select {
	case res := <-ch:
		return res.Val.(answer)
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return answer{err: err}
	}
}

// resolve asks the servers in order, Attempts rounds, until one gives an
// answer that settles the question: addresses, NODATA or NXDOMAIN. Failing
// that, a server error if any server answered with one, else ErrTimeout.
func (r *Resolver) resolve(ctx context.Context, k key) answer {
	typ := dns.TypeToString[k.qtype]
	var serverErr, lastErr error
	for range r.attempts {
		for _, server := range r.servers {
			q := new(dns.Msg).SetQuestion(k.name, k.qtype)
			qctx, cancel := context.WithTimeout(ctx, r.timeout)
			r.queries.Add(1)
			m, err := r.exchange(qctx, q, server)
			cancel()
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", server, err)
				r.log.Debug("dns query failed", "name", k.name, "type", typ, "server", server, "err", err)
				continue
			}
			ans, settled := parse(k, m)
			if settled {
				return ans
			}
			serverErr = fmt.Errorf("%s: %w from %s", typ, ans.err, server)
			r.log.Debug("dns query failed", "name", k.name, "type", typ, "server", server, "err", ans.err)
		}
	}
	if serverErr != nil {
		return answer{err: serverErr}
	}
	if lastErr == nil {
		lastErr = errors.New("no name server configured")
	}
	return answer{err: fmt.Errorf("%s: %w: %w", typ, ErrTimeout, lastErr)}
}

// parse reads a name server's answer to k. It settles the question with
// addresses, NODATA (ErrNoAnswer) or NXDOMAIN, or it does not (an error
// wrapping ErrServer), and then the next server is asked.
func parse(k key, m *dns.Msg) (ans answer, settled bool) {
	if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, k.name) || m.Question[0].Qtype != k.qtype {
		return answer{err: fmt.Errorf("%w: answer to another question", ErrServer)}, false
	}
	switch m.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return answer{err: ErrNXDomain, ttl: negativeTTL(m)}, true
	default:
		rcode, ok := dns.RcodeToString[m.Rcode]
		if !ok {
			rcode = fmt.Sprintf("rcode %d", m.Rcode)
		}
		return answer{err: fmt.Errorf("%w: %s", ErrServer, rcode)}, false
	}
	// Follow CNAMEs from the name asked, in the answer alone: the records
	// that count are those of the last name in the chain.
	owner := k.name
	var ttl uint32
	first := true
	minTTL := func(t uint32) {
		if first || t < ttl {
			ttl, first = t, false
		}
	}
	for range 8 { // a longer chain is a loop, or not worth it
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
				next = c.Target
				minTTL(c.Hdr.Ttl)
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Rrtype != k.qtype || !strings.EqualFold(h.Name, owner) {
			continue
		}
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA.To16())
		}
		if a.IsValid() {
			ans.addrs = append(ans.addrs, a)
			minTTL(h.Ttl)
		}
	}
	if len(ans.addrs) > 0 {
		ans.ttl = time.Duration(ttl) * time.Second
		return ans, true
	}
	if m.Truncated { // an Exchange that did not retry over TCP: not a NODATA
		return answer{err: fmt.Errorf("%w: truncated answer", ErrServer)}, false
	}
	return answer{err: ErrNoAnswer, ttl: negativeTTL(m)}, true
}

// negativeTTL is how long a NODATA or NXDOMAIN answer may be cached: the
// smaller of its SOA's TTL and minimum (RFC 2308 §5), at most a minute; not
// at all without a SOA.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxNegativeTTL)
		}
	}
	return 0
}

// Exchange is the default Config.Exchange: it sends m to server over UDP
// with miekg's dns.Client, and again over TCP when the answer comes back
// truncated. It gives up when ctx is done.
func Exchange(ctx context.Context, m *dns.Msg, server netip.AddrPort) (*dns.Msg, error) {
	addr := server.String()
	r, err := exchangeOver(ctx, "udp", m, addr)
	if r != nil && r.Truncated {
		return exchangeOver(ctx, "tcp", m, addr)
	}
	return r, err
}

// exchangeOver makes one exchange over network, "udp" or "tcp".
func exchangeOver(ctx context.Context, network string, m *dns.Msg, addr string) (*dns.Msg, error) {
	// The client's own timeouts are long: ctx's deadline is the one.
	c := &dns.Client{Net: network, Timeout: time.Minute}
	conn, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// The exchange heeds ctx's deadline but not its cancellation: a
	// deadline in the past ends a read or write in progress.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && ctx.Err() != nil {
		return r, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return r, err
}
