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
// names, on the minimal lab (lb7-1 joins infra and servers and has a
// tunnel from each LB4).
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
		// The tunnels from the LB4s, IPIP and IPv6 in IPv6.
		{node: "lb7-1", args: []string{"lb4-2", "port", "80"}, iface: "lb4-2", device: "lb4-2", filter: "port 80"},
		{node: "lb7-1", args: []string{"6lb4-1"}, iface: "6lb4-1", device: "6lb4-1"},
		{node: "lb7-1", args: []string{"tcp", "port", "80"}, device: "any", filter: "tcp port 80"},
		{node: "lb7-1", args: []string{"ip", "proto", "4", "and", "not", "(icmp)"}, device: "any", filter: "ip proto 4 and not (icmp)"},
		// A filter word that happens to be nothing of the lab's.
		{node: "client1", args: []string{"icmp6"}, device: "any", filter: "icmp6"},
		// A peer node is the interface named after it.
		{node: "r1", args: []string{"edge", "icmp"}, iface: "edge", device: "edge", filter: "icmp"},
		// A segment or node of the lab that the node has no device for.
		{node: "lb7-1", args: []string{"edge"}, wantErr: "lb7-1 has no link to edge (its interfaces: infra, servers, lb4-1, lb4-2, 6lb4-1, 6lb4-2, lo; or any)"},
		{node: "lb4-1", args: []string{"lb7-1"}, wantErr: "lb4-1 has no link to lb7-1 (its interfaces: infra, lo; or any)"},
		{node: "lb7-1", args: []string{"client1", "icmp"}, wantErr: "lb7-1 has no link to client1"},
		{node: "lb9-1", args: []string{"infra"}, wantErr: "no node lb9-1 in lab capt"},
	} {
		name := tc.node + " " + strings.Join(tc.args, " ")
		c, err := newCaptureTarget(topo, "capt", tc.node)
		var opts CaptureOptions
		if err == nil {
			opts, err = c.args(tc.args)
		}
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
		if device, _, err := c.device(opts.Interface); err != nil || device != tc.device {
			t.Errorf("%s: device %q %v, want %q", name, device, err, tc.device)
		}
	}
	// Through the API, a device the lab did not make passes through to
	// tcpdump; a segment the node does not join does not.
	c, _ := newCaptureTarget(topo, "capt", "lb7-1")
	if d, known, err := c.device("tunl0"); d != "tunl0" || known || err != nil {
		t.Errorf("tunl0: %q %v %v", d, known, err)
	}
	if _, _, err := c.device("edge"); err == nil {
		t.Errorf("edge on lb7-1: no error")
	}
}

// TestTcpdumpArgv checks the command a capture runs: pcap to standard
// output packet by packet, and the filter as one word after "--".
func TestTcpdumpArgv(t *testing.T) {
	base := []string{"tcpdump", "-U", "--immediate-mode", "-s", "65535", "-B", "8192", "-w", "-"}
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
	n := &captureTarget{node: &topology.Node{Name: "lb7-1"}, devices: []string{"infra", "servers", "lo"}}
	if got, want := s.failure(n, "infar"), `: syntax error in filter expression: syntax error; listening on infra; trailing (filter "infar"; lb7-1's interfaces: infra, servers, lo; or any)`; got != want {
		t.Errorf("failure %q, want %q", got, want)
	}
	// The statistics tcpdump prints as it stops are no failure.
	s = &tcpdumpStderr{}
	_, _ = s.Write([]byte("906 packets captured\n910 packets received by filter\n4 packets dropped by kernel\n"))
	if s.dropped != 4 || s.failure(n, "") != "" {
		t.Errorf("statistics: dropped %d, failure %q", s.dropped, s.failure(n, ""))
	}
	s = &tcpdumpStderr{}
	_, _ = s.Write([]byte("tcpdump: data link type LINUX_SLL2\ntcpdump: tunl9: No such device exists\n(No such device exists)\n"))
	if got, want := s.failure(n, ""), ": tunl9: No such device exists (lb7-1's interfaces: infra, servers, lo; or any)"; got != want {
		t.Errorf("no such device: %q, want %q", got, want)
	}
}
