package topology

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFQDN(t *testing.T) {
	long := strings.Repeat("a", 63)
	cases := []struct {
		in, want, problem string
	}{
		{in: "example.org", want: "example.org."},
		{in: "example.org.", want: "example.org."},
		{in: "Lab.EXAMPLE.org", want: "lab.example.org."},
		{in: "org", want: "org."},
		{in: "a-1.b2.example", want: "a-1.b2.example."},
		{in: "0.example", want: "0.example."},
		{in: long + ".org", want: long + ".org."},
		{in: "", problem: "want at least one label"},
		{in: ".", problem: "want at least one label"},
		{in: "a..b", problem: "empty label"},
		{in: ".a", problem: "empty label"},
		{in: "a.b..", problem: "empty label"},
		{in: "-a.org", problem: `label "-a" starts or ends with '-'`},
		{in: "a-.org", problem: `label "a-" starts or ends with '-'`},
		{in: "a_b.org", problem: `label "a_b" has a character other than a-z, 0-9 and '-'`},
		{in: "\u212aa.org", problem: "label \"\u212aa\" has a character other than a-z, 0-9 and '-'"}, // Kelvin sign: lower case is k
		{in: "*.org", problem: `label "*" has a character other than a-z, 0-9 and '-'`},
		{in: long + "a.org", problem: `label "` + long + `a" is longer than 63 characters`},
		{in: strings.Repeat(long+".", 4) + "org", problem: "longer than 253 characters"},
		{in: strings.Repeat(long+".", 3) + strings.Repeat("a", 61), want: strings.Repeat(long+".", 3) + strings.Repeat("a", 61) + "."}, // 253
	}
	for _, tc := range cases {
		got, problem := fqdn(tc.in)
		if got != tc.want || problem != tc.problem {
			t.Errorf("fqdn(%q) = %q, %q; want %q, %q", tc.in, got, problem, tc.want, tc.problem)
		}
	}
}

// TestDNSSettings checks the dns: block: its defaults, and each value.
func TestDNSSettings(t *testing.T) {
	const head = "name: d\nnodes:\n  ns1: {role: dns}\n"
	cases := []struct {
		name    string
		dns     string
		want    DNS
		problem string // the one problem expected, on line 4
	}{
		{name: "absent", want: DNS{Zone: "example.org.", TTL: 5 * time.Second}},
		{name: "empty", dns: "dns: {}\n", want: DNS{Zone: "example.org.", TTL: 5 * time.Second}},
		{name: "all", dns: "dns: {zone: Lab.Example.NET, ttl: 1m, fail-open: true}\n", want: DNS{Zone: "lab.example.net.", TTL: time.Minute, FailOpen: true}},
		{name: "trailing dot", dns: "dns: {zone: lab.test.}\n", want: DNS{Zone: "lab.test.", TTL: 5 * time.Second}},
		{name: "shortest ttl", dns: "dns: {ttl: 1s}\n", want: DNS{Zone: "example.org.", TTL: time.Second}},
		{name: "longest ttl", dns: "dns: {ttl: 3600s}\n", want: DNS{Zone: "example.org.", TTL: time.Hour}},
		{name: "ttl too long", dns: "dns: {ttl: 2h}\n", problem: "dns.ttl: ttl 2h is out of range (want 1s to 1h)"},
		{name: "ttl zero", dns: "dns: {ttl: 0s}\n", problem: "dns.ttl: ttl 0s is out of range (want 1s to 1h)"},
		{name: "ttl fraction", dns: "dns: {ttl: 1.5s}\n", problem: "dns.ttl: ttl 1.5s must be whole seconds"},
		{name: "ttl number", dns: "dns: {ttl: 5}\n", problem: `dns.ttl: "5" is not a duration (want e.g. 5s)`},
		{name: "zone root", dns: "dns: {zone: .}\n", problem: `dns.zone: bad zone ".": want at least one label`},
		{name: "zone label", dns: "dns: {zone: \"lab example.org\"}\n", problem: `dns.zone: bad zone "lab example.org": label "lab example" has a character other than a-z, 0-9 and '-'`},
		{name: "unknown key", dns: "dns: {zones: x}\n", problem: `dns: unknown key "zones" (did you mean "zone"?)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := Parse("d.yaml", []byte(head+tc.dns))
			if tc.problem != "" {
				var errs *Errors
				if !errors.As(err, &errs) {
					t.Fatalf("Parse error = %v, want *Errors", err)
				}
				if diff := cmp.Diff(errs.Error(), "d.yaml:4: "+tc.problem); diff != "" {
					t.Errorf("problems (-got +want):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if topo.DNS != tc.want {
				t.Errorf("DNS = %+v, want %+v", topo.DNS, tc.want)
			}
		})
	}
}
