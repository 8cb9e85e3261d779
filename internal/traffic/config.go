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
)

// Config describes a load. Zero fields take the defaults above; Pause and
// EarlyStop can be disabled with a negative value.
type Config struct {
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
	// Workers is the number of concurrent connections.
	Workers int
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
	// connection ("timeout"), so that a blackholed flow counts.
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

// validate reports every problem of c, which has its defaults set.
func (c Config) validate() error {
	var errs []error
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
