package vm

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func validConfig() Config {
	return Config{
		Kernel:     "/usr/bin/linux.uml",
		Init:       "/usr/local/bin/lab",
		Env:        map[string]string{"LAB_ROLE": "guest", "LAB_TOPOLOGY": "/etc/lab/lab.yaml"},
		TAP:        "lab0",
		HostAddr:   netip.MustParsePrefix("169.254.77.1/30"),
		GuestAddr:  netip.MustParsePrefix("169.254.77.2/30"),
		ConsoleLog: "/run/lab/console.log",
	}
}

func TestConfigValidate(t *testing.T) {
	tooMany := map[string]string{}
	for i := range maxEnv + 1 {
		tooMany[fmt.Sprintf("K%d", i)] = "v"
	}
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		umlDir  string
		wantErr []string // one line per error, in order
	}{
		{name: "valid", change: func(*Config) {}},
		{name: "memory with suffix", change: func(c *Config) { c.Memory = "512M" }},
		{name: "memory in bytes", change: func(c *Config) { c.Memory = "1073741824" }},
		{name: "empty value", change: func(c *Config) { c.Env["EMPTY"] = "" }},
		{
			name:    "bad memory",
			change:  func(c *Config) { c.Memory = "2GB" },
			wantErr: []string{`memory "2GB": want a size such as 2G or 512M`},
		},
		{
			name:    "relative init",
			change:  func(c *Config) { c.Init = "lab" },
			wantErr: []string{`init "lab": want an absolute path without spaces, quotes or commas`},
		},
		{
			name: "env keys",
			change: func(c *Config) {
				c.Env = map[string]string{"lower": "x", "1ST": "x", "MOD.PARAM": "x", "LAB_VM_ADDR": "10.0.0.1/8"}
			},
			wantErr: []string{
				`env "1ST": want upper-case letters, digits and underscores`,
				`env LAB_VM_ADDR: reserved, set from the guest address`,
				`env "MOD.PARAM": want upper-case letters, digits and underscores`,
				`env "lower": want upper-case letters, digits and underscores`,
			},
		},
		{
			name: "env values",
			change: func(c *Config) {
				c.Env = map[string]string{"SPACE": "a b", "QUOTE": `"x"`, "SINGLE": "it's", "TAB": "a\tb", "UTF8": "é"}
			},
			wantErr: []string{
				`env QUOTE="\"x\"": value has spaces, quotes or control characters`,
				`env SINGLE="it's": value has spaces, quotes or control characters`,
				`env SPACE="a b": value has spaces, quotes or control characters`,
				`env TAB="a\tb": value has spaces, quotes or control characters`,
				`env UTF8="é": value has spaces, quotes or control characters`,
			},
		},
		{
			name:    "too many env",
			change:  func(c *Config) { c.Env = tooMany },
			wantErr: []string{"env: 25 variables, at most 24"},
		},
		{
			name:    "tap too long",
			change:  func(c *Config) { c.TAP = "lab-management-0" },
			wantErr: []string{`tap "lab-management-0": want 1 to 15 letters, digits, '_', '.' or '-'`},
		},
		{
			name:    "tap with comma",
			change:  func(c *Config) { c.TAP = "a,b" },
			wantErr: []string{`tap "a,b": want 1 to 15 letters, digits, '_', '.' or '-'`},
		},
		{
			name:    "other subnet",
			change:  func(c *Config) { c.GuestAddr = netip.MustParsePrefix("169.254.78.2/30") },
			wantErr: []string{"host address 169.254.77.1/30 and guest address 169.254.78.2/30: not in one subnet"},
		},
		{
			name:    "same address",
			change:  func(c *Config) { c.GuestAddr = c.HostAddr },
			wantErr: []string{"host and guest addresses: both 169.254.77.1"},
		},
		{
			name: "missing fields",
			change: func(c *Config) {
				*c = Config{}
			},
			wantErr: []string{
				"kernel: empty",
				`init "": want an absolute path without spaces, quotes or commas`,
				`tap "": want 1 to 15 letters, digits, '_', '.' or '-'`,
				"host address: missing",
				"console log: empty",
			},
		},
		{
			name:    "temporary directory with a space",
			change:  func(*Config) {},
			umlDir:  "/tmp/my dir/lab-uml",
			wantErr: []string{`uml directory "/tmp/my dir/lab-uml": want an absolute path without spaces, quotes or commas (set TMPDIR)`},
		},
		{
			name:    "command line too long",
			change:  func(c *Config) { c.Env["LONG"] = strings.Repeat("x", maxCmdline) },
			wantErr: []string{"kernel command line: 4374 bytes, at most 4095"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			dir := tc.umlDir
			if dir == "" {
				dir = "/tmp/lab-uml"
			}
			err := c.validate(dir)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(got, tc.wantErr); diff != "" {
				t.Errorf("validate() errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestKernelArgs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{
			name:   "defaults",
			change: func(*Config) {},
			want: []string{
				"mem=2G", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
				"init=/usr/local/bin/lab", "quiet",
				"con=null", "ssl=null", "con0=null,fd:1",
				"pty.legacy_count=0",
				"uml_dir=/tmp/lab-uml", "umid=lab0",
				"vec0:transport=tap,ifname=lab0",
				"LAB_VM_ADDR=169.254.77.2/30",
				"LAB_ROLE=guest", "LAB_TOPOLOGY=/etc/lab/lab.yaml",
			},
		},
		{
			name: "memory, no env",
			change: func(c *Config) {
				c.Memory = "768M"
				c.Env = nil
			},
			want: []string{
				"mem=768M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
				"init=/usr/local/bin/lab", "quiet",
				"con=null", "ssl=null", "con0=null,fd:1",
				"pty.legacy_count=0",
				"uml_dir=/tmp/lab-uml", "umid=lab0",
				"vec0:transport=tap,ifname=lab0",
				"LAB_VM_ADDR=169.254.77.2/30",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			if diff := cmp.Diff(c.kernelArgs("/tmp/lab-uml"), tc.want); diff != "" {
				t.Errorf("kernelArgs() (-got +want):\n%s", diff)
			}
		})
	}
}
