package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaults(t *testing.T) {
	got := Config{RouterID: netip.MustParseAddr("10.0.0.1"), ASN: 65000, HoldTime: 9 * time.Second}.withDefaults()
	want := Config{
		RouterID:     netip.MustParseAddr("10.0.0.1"),
		ASN:          65000,
		HoldTime:     9 * time.Second,
		Keepalive:    time.Second,
		ConnectRetry: time.Second,
	}
	if diff := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("withDefaults() (-got +want):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{
			RouterID: netip.MustParseAddr("10.0.0.1"),
			ASN:      65000,
			Neighbors: []Neighbor{
				{Address: netip.MustParseAddr("10.0.0.2"), RRClient: true, AddPaths: true},
				{Address: netip.MustParseAddr("2001:db8::2")},
			},
		}
	}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   []string // Substrings, one per expected problem.
	}{
		{name: "valid", modify: func(*Config) {}},
		{name: "explicit timers", modify: func(c *Config) {
			c.HoldTime, c.Keepalive, c.ConnectRetry = 6*time.Second, 2*time.Second, 5*time.Second
		}},
		{name: "no router id", modify: func(c *Config) { c.RouterID = netip.Addr{} },
			want: []string{"router id"}},
		{name: "ipv6 router id", modify: func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") },
			want: []string{"router id"}},
		{name: "zero asn", modify: func(c *Config) { c.ASN = 0 },
			want: []string{"asn is zero"}},
		{name: "fractional hold time", modify: func(c *Config) { c.HoldTime = 3500 * time.Millisecond },
			want: []string{"hold time 3.5s is not a positive whole number"}},
		{name: "hold time too short", modify: func(c *Config) { c.HoldTime, c.Keepalive = 2*time.Second, time.Second },
			want: []string{"under the minimum"}},
		{name: "keepalive not shorter", modify: func(c *Config) { c.Keepalive = 3 * time.Second },
			want: []string{"keepalive 3s is not shorter"}},
		{name: "negative connect retry", modify: func(c *Config) { c.ConnectRetry = -time.Second },
			want: []string{"connect retry -1s"}},
		{name: "neighbor without address", modify: func(c *Config) { c.Neighbors[1].Address = netip.Addr{} },
			want: []string{"neighbor 1 has no address"}},
		{name: "duplicate neighbor", modify: func(c *Config) { c.Neighbors[1] = c.Neighbors[0] },
			want: []string{"listed twice"}},
		{name: "neighbor is self", modify: func(c *Config) { c.Neighbors[0].Address = c.RouterID },
			want: []string{"our own router id"}},
		{name: "zoned neighbor", modify: func(c *Config) { c.Neighbors[1].Address = netip.MustParseAddr("fe80::1%eth0") },
			want: []string{"has a zone"}},
		{name: "every problem reported", modify: func(c *Config) { c.ASN = 0; c.RouterID = netip.Addr{} },
			want: []string{"router id", "asn is zero"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.modify(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() error = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() error = %v, want one wrapping ErrInvalidConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}
