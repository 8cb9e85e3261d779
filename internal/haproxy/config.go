package haproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"time"
)

// Server is one backend server of the LB7.
type Server struct {
	Name    string
	Address netip.Addr
	Port    int
}

// VIP is one virtual address the LB7 answers on (it arrives there
// IPIP-encapsulated from the LB4s and is local to the LB7).
type VIP struct {
	Address netip.Addr
	Port    int
}

// Config describes the HAProxy of one LB7. It is a plain value: Generate
// turns it into a configuration file.
type Config struct {
	// Node is the LB7 name, e.g. "lb7-1"; it is sent back to clients in the
	// X-Lab-LB7 response header.
	Node string
	// Self is the LB7's own address: health checks from the LB4s arrive
	// there, on HealthPort.
	Self netip.Addr
	// HealthPort is the port of Self the LB4s check; 0 means 80. Tests
	// use an unprivileged port.
	HealthPort int
	// VIPs are the virtual addresses HAProxy binds.
	VIPs []VIP
	// Servers are the backends.
	Servers []Server
	// Maxconn is the global connection limit.
	Maxconn int
	// TimeoutConnect, TimeoutClient and TimeoutServer are the defaults
	// section timeouts.
	TimeoutConnect, TimeoutClient, TimeoutServer time.Duration
	// CheckInterval, Rise and Fall drive the HTTP health checks of the
	// servers.
	CheckInterval time.Duration
	Rise, Fall    int
	// AgentPort is the TCP port of the agent on every server (5555).
	AgentPort int
	// AgentInterval is the interval of agent checks, for the servers and
	// for the enabler.
	AgentInterval time.Duration
	// SendProxy sends the PROXY protocol v1 to the servers, on traffic and
	// on health checks.
	SendProxy bool
	// EnablerAgent is where the LB7's own agent (reading its
	// /etc/lb/agent-check) listens, e.g. 127.0.0.1:5555.
	EnablerAgent netip.AddrPort
	// Dir is the runtime directory: configuration file and stats socket.
	Dir string
}

// DefaultConfig returns a configuration with the reference lab's values;
// Node, Self, VIPs, Servers and Dir are left for the caller.
func DefaultConfig() Config {
	return Config{
		HealthPort:     DefaultHealthPort,
		Maxconn:        4096,
		TimeoutConnect: 5 * time.Second,
		TimeoutClient:  50 * time.Second,
		TimeoutServer:  50 * time.Second,
		CheckInterval:  2 * time.Second,
		Rise:           2,
		Fall:           3,
		AgentPort:      5555,
		AgentInterval:  2 * time.Second,
		EnablerAgent:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 5555),
	}
}

// File names inside Config.Dir.
const (
	configFileName  = "haproxy.cfg"
	statsSocketName = "haproxy.sock"
)

// ConfigFile is the path of the configuration file inside Dir.
func (c Config) ConfigFile() string { return filepath.Join(c.Dir, configFileName) }

// StatsSocket is the path of the stats socket (runtime API) inside Dir.
func (c Config) StatsSocket() string { return filepath.Join(c.Dir, statsSocketName) }

// Backend and frontend names used in the generated configuration.
const (
	FrontendName   = "www"
	BackendServers = "servers"
	BackendEnabler = "enabler"
	EnablerServer  = "enabler"
	// HealthURI is the monitor URI the LB4s check on Self:80.
	HealthURI = "/healthcheck"
	// NodeHeader is the response header naming the LB7.
	NodeHeader = "X-Lab-LB7"
	// DefaultHealthPort is the port of Self the LB4s check.
	DefaultHealthPort = 80
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !nameRE.MatchString(c.Node) {
		bad("node name %q is not a valid haproxy word", c.Node)
	}
	if !c.Self.IsValid() {
		bad("self address is not set")
	} else if c.Self.Zone() != "" {
		bad("self address %s has a zone", c.Self)
	}
	seenVIP := map[netip.AddrPort]bool{}
	for i, v := range c.VIPs {
		if !v.Address.IsValid() {
			bad("vip %d: address is not set", i)
		} else if v.Address.Zone() != "" {
			bad("vip %s: address has a zone", v.Address)
		}
		if !validPort(v.Port) {
			bad("vip %s: port %d out of range", v.Address, v.Port)
		}
		ap := netip.AddrPortFrom(v.Address, uint16(v.Port))
		if seenVIP[ap] {
			bad("vip %s: duplicate", ap)
		}
		seenVIP[ap] = true
	}
	if c.HealthPort != 0 && !validPort(c.HealthPort) {
		bad("health port %d out of range", c.HealthPort)
	}
	if health := c.healthAddrPort(); seenVIP[health] {
		bad("vip %s: same as the health check address", health)
	}
	if len(c.Servers) == 0 {
		bad("no server")
	}
	seenServer := map[string]bool{}
	for i, s := range c.Servers {
		if !nameRE.MatchString(s.Name) {
			bad("server %d: name %q is not a valid haproxy word", i, s.Name)
		}
		if s.Name == EnablerServer {
			// Not a real conflict (other backend), but confusing in
			// the runtime API.
			bad("server %d: name %q is reserved", i, s.Name)
		}
		if seenServer[s.Name] {
			bad("server %s: duplicate name", s.Name)
		}
		seenServer[s.Name] = true
		if !s.Address.IsValid() {
			bad("server %s: address is not set", s.Name)
		} else if s.Address.Zone() != "" {
			bad("server %s: address %s has a zone", s.Name, s.Address)
		}
		if !validPort(s.Port) {
			bad("server %s: port %d out of range", s.Name, s.Port)
		}
	}
	if c.Maxconn <= 0 {
		bad("maxconn %d must be positive", c.Maxconn)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"timeout connect", c.TimeoutConnect},
		{"timeout client", c.TimeoutClient},
		{"timeout server", c.TimeoutServer},
		{"check interval", c.CheckInterval},
		{"agent interval", c.AgentInterval},
	} {
		if d.v < time.Millisecond || d.v%time.Millisecond != 0 {
			bad("%s %s must be a positive whole number of milliseconds", d.name, d.v)
		}
	}
	if c.Rise <= 0 || c.Fall <= 0 {
		bad("rise %d and fall %d must be positive", c.Rise, c.Fall)
	}
	if !validPort(c.AgentPort) {
		bad("agent port %d out of range", c.AgentPort)
	}
	if !c.EnablerAgent.IsValid() || c.EnablerAgent.Port() == 0 {
		bad("enabler agent %s is not a valid address and port", c.EnablerAgent)
	}
	if !filepath.IsAbs(c.Dir) {
		bad("runtime directory %q is not absolute", c.Dir)
	}
	// HAProxy binds a unix socket as "PATH.PID.tmp" before renaming it, and
	// a socket path holds at most 107 bytes.
	if n := len(c.StatsSocket()) + len(".4194304.tmp"); n > 107 {
		bad("runtime directory %q is too long for unix sockets", c.Dir)
	}
	return errors.Join(errs...)
}

// healthAddrPort is where the LB4s check the LB7.
func (c Config) healthAddrPort() netip.AddrPort {
	port := c.HealthPort
	if port == 0 {
		port = DefaultHealthPort
	}
	return netip.AddrPortFrom(c.Self, uint16(port))
}

func validPort(p int) bool { return p > 0 && p < 65536 }
