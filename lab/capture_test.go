package lab

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/topology"
)

// TestCaptureArgs checks how `lab capture NODE ...` splits the words after
// the node into an interface and a filter, and which device the interface
// names, on the minimal lab (lb7-1 joins infra and servers).
func TestCaptureArgs(t *testing.T) {
	topo, err := topology.Load("../topologies/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node    string
		args    []string
		iface   string // the word taken as the interface
		device  string // what tcpdump gets with -i
		filter  string
		wantErr string
	}{
		{node: "lb7-1", device: "any"},
		{node: "lb7-1", args: []string{"infra"}, iface: "infra", device: "infra"},
		{node: "lb7-1", args: []string{"servers", "tcp", "port", "80"}, iface: "servers", device: "servers", filter: "tcp port 80"},
		{node: "lb7-1", args: []string{"any", "host", "198.51.100.1"}, iface: "any", device: "any", filter: "host 198.51.100.1"},
		{node: "lb7-1", args: []string{"lo"}, iface: "lo", device: "lo"},
		{node: "lb7-1", args: []string{"tcp", "port", "80"}, device: "any", filter: "tcp port 80"},
		{node: "lb7-1", args: []string{"ip", "proto", "4", "and", "not", "(icmp)"}, device: "any", filter: "ip proto 4 and not (icmp)"},
		// A filter word that happens to be nothing of the lab's.
		{node: "client1", args: []string{"icmp6"}, device: "any", filter: "icmp6"},
		// A segment or node of the lab that the node has no link to.
		{node: "lb7-1", args: []string{"edge"}, wantErr: "lb7-1 has no link to edge (its links: infra, servers; or any"},
		{node: "lb7-1", args: []string{"client1", "icmp"}, wantErr: "lb7-1 has no link to client1"},
		{node: "lb9-1", args: []string{"infra"}, wantErr: "no node lb9-1 in lab minimal"},
	} {
		name := tc.node + " " + strings.Join(tc.args, " ")
		opts, err := CaptureArgs(topo, tc.node, tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if opts.Interface != tc.iface || strings.Join(opts.Filter, " ") != tc.filter {
			t.Errorf("%s: interface %q filter %q, want %q %q", name, opts.Interface, opts.Filter, tc.iface, tc.filter)
		}
		n, _ := topo.Node(tc.node)
		device, err := captureInterface(topo, n, opts.Interface)
		if err != nil || device != tc.device {
			t.Errorf("%s: device %q %v, want %q", name, device, err, tc.device)
		}
	}
	// With -i, any device of the node's own passes through to tcpdump;
	// a segment the node does not join does not.
	n, _ := topo.Node("lb7-1")
	if d, err := captureInterface(topo, n, "tunl0"); d != "tunl0" || err != nil {
		t.Errorf("tunl0: %q %v", d, err)
	}
	if _, err := captureInterface(topo, n, "edge"); err == nil {
		t.Errorf("edge on lb7-1: no error")
	}
}

// TestTcpdumpArgv checks the command a capture runs: pcap to standard
// output packet by packet, and the filter as one word after "--".
func TestTcpdumpArgv(t *testing.T) {
	base := []string{"tcpdump", "-U", "--immediate-mode", "-w", "-"}
	for _, tc := range []struct {
		iface   string
		opts    CaptureOptions
		want    []string
		wantErr string
	}{
		{"any", CaptureOptions{}, []string{"-i", "any"}, ""},
		{"infra", CaptureOptions{Filter: []string{"ip", "proto", "4"}, Count: 10}, []string{"-i", "infra", "-c", "10", "--", "ip proto 4"}, ""},
		{"any", CaptureOptions{Filter: []string{"tcp[13]", "&", "2", "!=", "0"}}, []string{"-i", "any", "--", "tcp[13] & 2 != 0"}, ""},
		{"any", CaptureOptions{Filter: []string{"-"}}, []string{"-i", "any", "--", "-"}, ""},
		{"any", CaptureOptions{Filter: []string{" "}}, []string{"-i", "any"}, ""},
		{"any", CaptureOptions{Count: -1}, nil, "packet count -1"},
		{"any", CaptureOptions{Duration: -time.Second}, nil, "duration -1s"},
	} {
		got, err := tcpdumpArgv(tc.iface, tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: error %v, want %q", tc.opts, err, tc.wantErr)
			}
			continue
		}
		if want := append(slices.Clone(base), tc.want...); err != nil || !slices.Equal(got, want) {
			t.Errorf("%+v: %q %v, want %q", tc.opts, got, err, want)
		}
	}
}

// TestTcpdumpStderr checks that the line saying tcpdump listens is
// reported once, even when it arrives in pieces, and that the rest makes
// the error message.
func TestTcpdumpStderr(t *testing.T) {
	var heard []string
	s := &tcpdumpStderr{listening: func(l string) { heard = append(heard, l) }}
	for _, chunk := range []string{"tcpdump: listen", "ing on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes\n",
		"tcpdump: syntax error in filter expression: syntax error\n", "tcpdump: listening on infra\n", "trailing"} {
		_, _ = s.Write([]byte(chunk))
	}
	if want := []string{"listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes"}; !slices.Equal(heard, want) {
		t.Errorf("listening: %q, want %q", heard, want)
	}
	n := &topology.Node{Name: "lb7-1", Interfaces: []topology.Interface{{Name: "infra"}, {Name: "servers"}}}
	if got, want := s.failure(n), ": syntax error in filter expression: syntax error; listening on infra; trailing"; got != want {
		t.Errorf("failure %q, want %q", got, want)
	}
	s = &tcpdumpStderr{}
	_, _ = s.Write([]byte("tcpdump: tunl9: No such device exists\n(SIOCGIFHWADDR: No such device)\n"))
	if got := s.failure(n); !strings.Contains(got, "lb7-1's links: infra, servers; or any") {
		t.Errorf("no such device: %q", got)
	}
}
