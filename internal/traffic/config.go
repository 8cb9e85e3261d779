package traffic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults of the zero fields of Config.
const (
	DefaultWorkers        = 200
	DefaultPath           = "/10M"
	DefaultReadSize       = 16 << 10
	DefaultPause          = 500 * time.Millisecond
	DefaultEarlyStop      = 0.05
	DefaultReadTimeout    = 3 * time.Second
	DefaultStallThreshold = time.Second
	DefaultConnectTimeout = 3 * time.Second

	// Defaults of a request load (Mode ModeRequests), in place of the
	// download ones: the distributed IPVS load balancer's experiment, 10
	// workers of 10 requests a second, each a short page.
	DefaultRequestWorkers = 10
	DefaultRate           = 10
	DefaultRequestPath    = "/"
)

// Mode is the kind of load.
type Mode string

// Modes.
const (
	// ModeDownloads runs long downloads, one connection each, read slowly:
	// it counts the connections a change breaks.
	ModeDownloads Mode = "downloads"
	// ModeRequests runs short requests at a fixed rate, a new connection
	// each unless KeepAlive: it measures latency, errors per second and
	// how long a change degraded the service.
	ModeRequests Mode = "requests"
)

// Config describes a load. Zero fields take the defaults above; Pause and
// EarlyStop can be disabled with a negative value.
type Config struct {
	// Mode is the kind of load; empty means ModeDownloads.
	Mode Mode
	// Targets are the VIP:port pairs; each request picks one at random,
	// among them and Names.
	Targets []netip.AddrPort
	// Names are service names, looked up through Resolver before every
	// connection, as a client with a cache does.
	Names []NameTarget
	// Resolver looks Names up; required with Names.
	Resolver Resolver
	// Sources are the source addresses (the client's loopback range); each
	// request picks one of the target's address family at random. Empty
	// lets the kernel choose.
	Sources []netip.Addr
	// Workers is the number of concurrent connections (downloads) or of
	// request loops (requests).
	Workers int
	// Rate is the requests per second of each worker (ModeRequests only).
	// A worker sends its requests at fixed times; one that falls behind (a
	// slow or timed-out request) sends the ones it owes at once, and their
	// latency counts from the time each was due, so that a stall shows in
	// the latency instead of hiding in fewer requests.
	Rate float64
	// KeepAlive reuses each worker's connection for its next request
	// (ModeRequests only); without it every request opens a new one, which
	// the client closes first, leaving its port in TIME_WAIT.
	KeepAlive bool
	// Path is the path requested with GET.
	Path string
	// ReadSize is the largest number of bytes taken by one read.
	ReadSize int
	// Pause is the longest random pause between two reads (uniform in
	// [0, Pause)); negative means no pause.
	Pause time.Duration
	// EarlyStop is the chance, after each read, to close the connection
	// before the end of the body (a success); negative means never.
	EarlyStop float64
	// ReadTimeout bounds every read: a read that waits longer breaks the
	// connection ("timeout"), so that a blackholed flow counts. In
	// ModeRequests it bounds the whole request, from the request sent to
	// the end of the response.
	ReadTimeout time.Duration
	// StallThreshold is the wait for data above which a connection that
	// still ends well is counted as interrupted. It must be below
	// ReadTimeout.
	StallThreshold time.Duration
	// ConnectTimeout bounds the TCP handshake.
	ConnectTimeout time.Duration
	// Seed makes the random choices reproducible; 0 takes one from the
	// clock.
	Seed int64
	// Within, when set, runs each dial: it enters the network namespace
	// where the connections must be made. nil dials from where the
	// process stands.
	Within func(dial func() error) error
}

// NameTarget is a service name and the port to connect to.
type NameTarget struct {
	Name string `json:"name"`
	Port uint16 `json:"port"`
}

// String is NAME:PORT.
func (n NameTarget) String() string {
	return net.JoinHostPort(strings.TrimSuffix(n.Name, "."), strconv.Itoa(int(n.Port)))
}

// Resolver looks a name up: its addresses, as the name server ordered
// them. The lab's is *resolver.Resolver, which caches answers for their TTL.
type Resolver interface {
	Lookup(ctx context.Context, name string) ([]netip.Addr, error)
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeDownloads
	}
	if c.Mode == ModeRequests {
		if c.Workers == 0 {
			c.Workers = DefaultRequestWorkers
		}
		if c.Rate == 0 {
			c.Rate = DefaultRate
		}
		if c.Path == "" {
			c.Path = DefaultRequestPath
		}
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.ReadSize == 0 {
		c.ReadSize = DefaultReadSize
	}
	if c.Pause == 0 {
		c.Pause = DefaultPause
	}
	if c.EarlyStop == 0 {
		c.EarlyStop = DefaultEarlyStop
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.StallThreshold == 0 {
		c.StallThreshold = DefaultStallThreshold
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	return c
}

// maxRate bounds Config.Rate: a worker cannot pace requests much closer
// than a millisecond apart.
const maxRate = 1000

// validate reports every problem of c, which has its defaults set.
func (c Config) validate() error {
	var errs []error
	switch c.Mode {
	case ModeDownloads:
		if c.Rate != 0 {
			errs = append(errs, errors.New("a rate applies to a request load only"))
		}
		if c.KeepAlive {
			errs = append(errs, errors.New("keep-alive applies to a request load only"))
		}
	case ModeRequests:
		if c.Rate < 0 || c.Rate > maxRate {
			errs = append(errs, fmt.Errorf("rate %g: want requests per second per worker, above 0 and at most %d", c.Rate, maxRate))
		}
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", c.Mode, ModeDownloads, ModeRequests))
	}
	if len(c.Targets) == 0 && len(c.Names) == 0 {
		errs = append(errs, errors.New("no target"))
	}
	for _, n := range c.Names {
		if n.Name == "" || n.Port == 0 || strings.ContainsAny(n.Name, " \r\n/:") {
			errs = append(errs, fmt.Errorf("invalid target name %q port %d", n.Name, n.Port))
		}
	}
	if len(c.Names) > 0 && c.Resolver == nil {
		errs = append(errs, errors.New("target names but no resolver (the lab has no dns node?)"))
	}
	var has4, has6 bool
	for _, s := range c.Sources {
		switch {
		case !s.IsValid():
			errs = append(errs, errors.New("invalid source address"))
		case s.Unmap().Is4():
			has4 = true
		default:
			has6 = true
		}
	}
	for _, t := range c.Targets {
		switch {
		case !t.IsValid() || t.Port() == 0:
			errs = append(errs, fmt.Errorf("invalid target %s", t))
		case len(c.Sources) == 0:
		case t.Addr().Unmap().Is4() && !has4:
			errs = append(errs, fmt.Errorf("target %s: no IPv4 source", t))
		case !t.Addr().Unmap().Is4() && !has6:
			errs = append(errs, fmt.Errorf("target %s: no IPv6 source", t))
		}
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d is negative", c.Workers))
	}
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \r\n") {
		errs = append(errs, fmt.Errorf("path %q: want an absolute path without spaces", c.Path))
	}
	if c.ReadSize < 0 {
		errs = append(errs, fmt.Errorf("read size %d is negative", c.ReadSize))
	}
	if c.EarlyStop >= 1 {
		errs = append(errs, fmt.Errorf("early stop chance %g: want below 1", c.EarlyStop))
	}
	if c.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("read timeout %s is negative", c.ReadTimeout))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect timeout %s is negative", c.ConnectTimeout))
	}
	if c.StallThreshold < 0 || c.StallThreshold >= c.ReadTimeout {
		errs = append(errs, fmt.Errorf("stall threshold %s: want between 0 and the read timeout %s",
			c.StallThreshold, c.ReadTimeout))
	}
	return errors.Join(errs...)
}
