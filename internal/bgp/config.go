package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrInvalidConfig is wrapped by every error that Config.Validate reports.
var ErrInvalidConfig = errors.New("invalid bgp configuration")

// Default timers, chosen for a lab where fast convergence matters more than
// protocol overhead. GoBGP refuses hold times under 3 s.
const (
	DefaultHoldTime     = 3 * time.Second
	DefaultKeepalive    = 1 * time.Second
	DefaultConnectRetry = 1 * time.Second
)

// AddPathsSendMax is the number of paths per prefix sent to a peer that
// negotiated ADD-PATH.
const AddPathsSendMax = 16

// Neighbor is one explicitly configured iBGP peer.
type Neighbor struct {
	// Address is the peer's address; the session is dialled to and
	// accepted from it.
	Address netip.Addr
	// RRClient is set when we are a route reflector and this peer is one
	// of our clients.
	RRClient bool
	// AddPaths negotiates ADD-PATH, both sending (up to AddPathsSendMax
	// paths per prefix) and receiving.
	AddPaths bool
	// Passive never dials the peer: it only accepts its session. Exactly
	// one end of each session should dial; when both do, their
	// connections collide, and two GoBGP speakers can go on closing each
	// other's for minutes.
	Passive bool
}

// Config is the configuration of one speaker. All sessions are iBGP in ASN.
type Config struct {
	// RouterID is the BGP identifier, an IPv4 address.
	RouterID netip.Addr
	// ASN is the autonomous system shared by every speaker.
	ASN uint32
	// Listen makes the speaker accept sessions on TCP port 179. Without
	// it the speaker only dials its neighbours.
	Listen bool
	// Neighbors are the peers; there are no dynamic neighbours.
	Neighbors []Neighbor
	// HoldTime, Keepalive and ConnectRetry are whole seconds; zero means
	// DefaultHoldTime, DefaultKeepalive and DefaultConnectRetry.
	HoldTime, Keepalive, ConnectRetry time.Duration
	// Serve, when set, starts GoBGP's serve loop (a function that never
	// returns) and returns once it runs: GoBGP makes its listener on that
	// loop's goroutine, so a caller that runs it on a thread in another
	// network namespace gets the listener, and the sessions it accepts,
	// there. Nil runs it on a goroutine of its own.
	Serve func(serve func()) error `json:"-"`
}

// withDefaults returns c with zero timers replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	return c
}

// Validate reports every problem of c (after defaults) in one error that
// wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		bad("router id %q is not a non-zero ipv4 address", c.RouterID)
	}
	if c.ASN == 0 {
		bad("asn is zero")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"hold time", c.HoldTime},
		{"keepalive", c.Keepalive},
		{"connect retry", c.ConnectRetry},
	} {
		if d.v < 0 || d.v%time.Second != 0 {
			bad("%s %s is not a positive whole number of seconds", d.name, d.v)
		}
	}
	if c.HoldTime < DefaultHoldTime {
		bad("hold time %s is under the minimum of %s", c.HoldTime, DefaultHoldTime)
	}
	if c.Keepalive >= c.HoldTime {
		bad("keepalive %s is not shorter than hold time %s", c.Keepalive, c.HoldTime)
	}
	seen := make(map[netip.Addr]bool, len(c.Neighbors))
	for i, n := range c.Neighbors {
		switch {
		case !n.Address.IsValid() || n.Address.IsUnspecified():
			bad("neighbor %d has no address", i)
		case n.Address.Zone() != "":
			bad("neighbor %s has a zone", n.Address)
		case seen[n.Address]:
			bad("neighbor %s is listed twice", n.Address)
		case n.Address == c.RouterID:
			bad("neighbor %s is our own router id", n.Address)
		}
		seen[n.Address] = true
	}
	return errors.Join(errs...)
}
