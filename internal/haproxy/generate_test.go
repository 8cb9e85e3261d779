package haproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
)

// referenceConfig is an LB7 of the reference lab: VIPs from 198.51.100.0/24
// and 2001:db8::198.51.100.0/120, servers on 2001:db8:1::/64 port 88.
func referenceConfig(vips, servers int) Config {
	c := DefaultConfig()
	c.Node = "lb7-1"
	c.Self = netip.MustParseAddr("192.0.2.139")
	for i := range vips {
		if i%2 == 0 {
			c.VIPs = append(c.VIPs, VIP{netip.AddrFrom4([4]byte{198, 51, 100, byte(i/2 + 1)}), 80})
		} else {
			c.VIPs = append(c.VIPs, VIP{netip.MustParseAddr(fmt.Sprintf("2001:db8::198.51.100.%d", i/2+1)), 80})
		}
	}
	for i := range servers {
		c.Servers = append(c.Servers, Server{
			Name:    fmt.Sprintf("S%d", i+1),
			Address: netip.MustParseAddr(fmt.Sprintf("2001:db8:1::2:%d", i+1)),
			Port:    88,
		})
	}
	c.Dir = "/run/lab/lb7-1"
	return c
}

func TestGenerateGolden(t *testing.T) {
	requireHAProxy(t)
	cases := []struct {
		name string
		cfg  func() Config
	}{
		{"1vip-2servers", func() Config {
			c := referenceConfig(1, 2)
			c.Servers[1].Address = netip.MustParseAddr("10.0.0.2")
			return c
		}},
		{"4vips-10servers-sendproxy", func() Config {
			c := referenceConfig(4, 10)
			c.SendProxy = true
			c.Maxconn = 20000
			c.TimeoutConnect, c.TimeoutClient, c.TimeoutServer = 2500*time.Millisecond, time.Minute, 90*time.Second
			c.CheckInterval, c.AgentInterval = 10*time.Second, 5*time.Second
			c.Rise, c.Fall = 3, 2
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Generate(tc.cfg())
			if err != nil {
				t.Fatalf("Generate() error: %v", err)
			}
			golden := filepath.Join("testdata", tc.name+".cfg")
			testenv.Golden(t, golden, got)

			out, err := check(golden)
			if err != nil {
				t.Fatalf("haproxy -c %s: %v", golden, err)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "[WARNING]") || strings.Contains(l, "[ALERT]") {
					t.Errorf("haproxy -c %s: %s", golden, l)
				}
			}
		})
	}
}

func TestGenerateRejectsInvalidConfig(t *testing.T) {
	// Validation runs before any use of haproxy, so no skip here.
	cases := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"no node", func(c *Config) { c.Node = "" }, []string{`node name ""`}},
		{"node with space", func(c *Config) { c.Node = "lb7 1" }, []string{`node name "lb7 1"`}},
		{"no self", func(c *Config) { c.Self = netip.Addr{} }, []string{"self address is not set"}},
		{"no server", func(c *Config) { c.Servers = nil }, []string{"no server"}},
		{"duplicate server", func(c *Config) { c.Servers[1].Name = c.Servers[0].Name }, []string{"server S1: duplicate name"}},
		{"reserved server name", func(c *Config) { c.Servers[0].Name = EnablerServer }, []string{`name "enabler" is reserved`}},
		{"bad ports", func(c *Config) {
			c.VIPs[0].Port = 0
			c.Servers[0].Port = 70000
			c.AgentPort = -1
			c.HealthPort = 65536
		}, []string{"vip 198.51.100.1: port 0", "server S1: port 70000", "agent port -1", "health port 65536"}},
		{"duplicate vip", func(c *Config) { c.VIPs = append(c.VIPs, c.VIPs[0]) }, []string{"vip 198.51.100.1:80: duplicate"}},
		{"vip on health address", func(c *Config) { c.VIPs[0] = VIP{c.Self, 80} }, []string{"same as the health check address"}},
		{"zero durations", func(c *Config) {
			c.TimeoutClient = 0
			c.AgentInterval = time.Microsecond
		}, []string{"timeout client 0s", "agent interval 1µs"}},
		{"zero counts", func(c *Config) { c.Maxconn, c.Rise = 0, 0 }, []string{"maxconn 0", "rise 0"}},
		{"no enabler agent", func(c *Config) { c.EnablerAgent = netip.AddrPort{} }, []string{"enabler agent"}},
		{"relative dir", func(c *Config) { c.Dir = "run" }, []string{`runtime directory "run"`}},
		{"long dir", func(c *Config) { c.Dir = "/" + strings.Repeat("d", 90) }, []string{"too long for unix sockets"}},
		{"zoned addresses", func(c *Config) {
			c.Self = netip.MustParseAddr("fe80::1%eth0")
			c.Servers[0].Address = netip.MustParseAddr("fe80::2%eth0")
		}, []string{"self address fe80::1%eth0 has a zone", "server S1: address fe80::2%eth0 has a zone"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := referenceConfig(2, 2)
			tc.change(&c)
			_, err := Generate(c)
			if err == nil {
				t.Fatal("Generate() succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Generate() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckRejectsBrokenConfig(t *testing.T) {
	requireHAProxy(t)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte("backend b\n  balance nosuchalgo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Check(path)
	if !errors.Is(err, ErrCheck) {
		t.Fatalf("Check() error = %v, want ErrCheck", err)
	}
	if !strings.Contains(err.Error(), "balance only supports") {
		t.Errorf("Check() error = %q, want haproxy's reason", err)
	}
}
