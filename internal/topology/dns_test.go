package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// TestVIPDNSNames checks the names a VIP is served under: its own, then
// those of names:, resolved in the zone.
func TestVIPDNSNames(t *testing.T) {
	const head = `name: names
segments:
  infra: {prefix: 192.0.2.0/24}
nodes:
  r1: {role: router, links: [infra]}
  lb4: {role: lb4, links: [infra]}
  lb7: {role: lb7, links: [infra]}
  ns: {role: dns, count: 2, links: [infra]}
`
	cases := []struct {
		name  string
		zone  string // dns.zone, when set
		vip   string // the VIP's mapping, inside {address: 198.51.100.1, ...}
		want  []string
		probs []string // LINE: FIELD: MESSAGE
	}{
		{name: "own name only", vip: "name: www1", want: []string{"www1.example.org."}},
		{name: "default name", vip: "port: 80", want: []string{"vip1.example.org."}},
		{name: "label", vip: "name: www1, names: [www, WWW2]", want: []string{"www1.example.org.", "www.example.org.", "www2.example.org."}},
		{name: "apex", vip: "name: www1, names: [\"@\", example.org, example.org.]", want: []string{"www1.example.org.", "example.org."}},
		{name: "fully qualified", vip: "name: www1, names: [www.example.org, a.b.Example.org.]", want: []string{"www1.example.org.", "www.example.org.", "a.b.example.org."}},
		{name: "duplicates dropped", vip: "name: www1, names: [www, www1, www.example.org., www]", want: []string{"www1.example.org.", "www.example.org."}},
		{name: "other zone", zone: "Lab.Test", vip: "name: www1, names: [www, lab.test, x.lab.test.]", want: []string{"www1.lab.test.", "www.lab.test.", "lab.test.", "x.lab.test."}},
		{
			name: "outside the zone",
			vip:  "name: www1, names: [www.example.com, example.org.uk, www., notexample.org]",
			probs: []string{
				`10: vips[0].names[0]: name "www.example.com" is outside the zone example.org`,
				`10: vips[0].names[1]: name "example.org.uk" is outside the zone example.org`,
				`10: vips[0].names[2]: name "www." is outside the zone example.org`,
				`10: vips[0].names[3]: name "notexample.org" is outside the zone example.org`,
			},
		},
		{
			name: "invalid names",
			vip:  "name: www1, names: [-www, w_w, a..example.org, \"*.example.org\", \"\"]",
			probs: []string{
				`10: vips[0].names[0]: bad name "-www": label "-www" starts or ends with '-'`,
				`10: vips[0].names[1]: bad name "w_w": label "w_w" has a character other than a-z, 0-9 and '-'`,
				`10: vips[0].names[2]: bad name "a..example.org": empty label`,
				`10: vips[0].names[3]: bad name "*.example.org": label "*" has a character other than a-z, 0-9 and '-'`,
				`10: vips[0].names[4]: bad name "": empty label`,
			},
		},
		{
			name:  "own name not a label",
			vip:   "name: www-",
			probs: []string{`10: vips[0].name: name "www-" ends with '-' (it is a DNS label too: www-.ZONE)`},
		},
		{
			name:  "names not a list",
			vip:   "name: www1, names: www",
			probs: []string{`10: vips[0].names: want a list, got "www"`},
		},
		{
			name: "a name server's name",
			vip:  "name: ns-1, names: [ns-2, ns-2.example.org, ns-3, ns]",
			probs: []string{
				`10: vips[0].name: name "ns-1.example.org." is also the name server ns-1`,
				`10: vips[0].names[0]: name "ns-2.example.org." is also the name server ns-2`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := head + "vips:\n  - {address: 198.51.100.1, " + tc.vip + "}\n"
			if tc.zone != "" {
				src += "dns: {zone: " + tc.zone + "}\n"
			}
			topo := parseOrProblems(t, "names.yaml", src, tc.probs)
			if topo == nil {
				return
			}
			if diff := cmp.Diff(topo.VIPs[0].Names, tc.want); diff != "" {
				t.Errorf("Names (-got +want):\n%s", diff)
			}
		})
	}
}

// TestServiceNames groups the VIPs by name: both families of a VIP, and
// several VIPs under a shared name.
func TestServiceNames(t *testing.T) {
	topo, err := Load("testdata/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	var order []string
	for _, s := range topo.ServiceNames() {
		order = append(order, s.Name)
		for _, v := range s.VIPs {
			got[s.Name] = append(got[s.Name], v.Name+" "+v.Address.String())
		}
	}
	if diff := cmp.Diff(order, []string{"www.example.org.", "www1.example.org.", "www2.example.org."}); diff != "" {
		t.Errorf("names (-got +want):\n%s", diff)
	}
	want := map[string][]string{
		"www.example.org.":  {"www1 198.51.100.1", "www1 2001:db8:100::1", "www2 198.51.100.2", "www2 2001:db8:100::2"},
		"www1.example.org.": {"www1 198.51.100.1", "www1 2001:db8:100::1"},
		"www2.example.org.": {"www2 198.51.100.2", "www2 2001:db8:100::2"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("VIPs by name (-got +want):\n%s", diff)
	}
	if ns := topo.NodesByRole(RoleDNS); len(ns) != 1 || ns[0].Name != "dns" {
		t.Errorf("NodesByRole(RoleDNS) = %v, want the node dns", ns)
	}
	none, err := Load("testdata/p2p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := none.ServiceNames(); got == nil || len(got) != 0 {
		t.Errorf("ServiceNames() of a lab without VIPs = %#v, want empty", got)
	}
}

// TestSaveServices saves a topology with allocated, named VIPs and loads
// it back; a topology saved before the DNS tier loads with its defaults.
func TestSaveServices(t *testing.T) {
	topo, err := Load("testdata/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := topo.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(topo, loaded, netipEqual...); diff != "" {
		t.Errorf("saved and loaded (-saved +loaded):\n%s", diff)
	}

	// Before: no DNS, no VIPPool, no Names, no Allocated.
	var old map[string]any
	data, err := json.Marshal(topo)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &old); err != nil {
		t.Fatal(err)
	}
	delete(old, "DNS")
	delete(old, "VIPPool")
	for _, v := range old["VIPs"].([]any) {
		delete(v.(map[string]any), "Names")
		delete(v.(map[string]any), "Allocated")
	}
	if data, err = json.Marshal(old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if loaded, err = Load(path); err != nil {
		t.Fatal(err)
	}
	if want := (DNS{Zone: "example.org.", TTL: 5 * time.Second}); loaded.DNS != want {
		t.Errorf("DNS %+v, want the defaults %+v", loaded.DNS, want)
	}
	if loaded.VIPPool == nil || len(loaded.VIPPool) != 0 {
		t.Errorf("VIPPool %#v, want empty", loaded.VIPPool)
	}
	if got := loaded.VIPs[2].Names; !cmp.Equal(got, []string{"www2.example.org."}) {
		t.Errorf("Names of %s %v, want its own name only", loaded.VIPs[2].Name, got)
	}
}

// parseOrProblems parses src as file. When it has problems, it compares
// them ("LINE: FIELD: MSG") with want and returns nil; otherwise it fails
// the test if want expected some, and returns the topology.
func parseOrProblems(t *testing.T, file, src string, want []string) *Topology {
	t.Helper()
	topo, err := Parse(file, []byte(src))
	var errs *Errors
	switch {
	case errors.As(err, &errs):
		var got []string
		for _, e := range errs.List {
			got = append(got, fmt.Sprintf("%d: %s: %s", e.Line, e.Field, e.Msg))
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("problems (-got +want):\n%s", diff)
		}
		return nil
	case err != nil:
		t.Fatal(err)
	case want != nil:
		t.Fatalf("no problem, want %q", want)
	}
	return topo
}
