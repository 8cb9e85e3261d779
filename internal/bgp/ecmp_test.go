package bgp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestECMP builds a small lab of network namespaces on one bridge: a
// router R, optionally a route reflector RR, and two LB4s A and B that
// announce the same VIP via themselves. Every speaker runs in its own
// process born inside its namespace. R must install one ECMP route over A
// and B, shrink it to A when B's process dies, and remove it when A
// withdraws.
func TestECMP(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name      string
		reflector bool
	}{
		{name: "through route reflector", reflector: true},
		{name: "direct peering", reflector: false},
	} {
		t.Run(tc.name, func(t *testing.T) { testECMP(t, tc.reflector) })
	}
}

func testECMP(t *testing.T, reflector bool) {
	const asn = 65000
	vip := netip.MustParsePrefix("198.51.100.1/32")
	addrR := netip.MustParseAddr("10.77.0.1")
	addrRR := netip.MustParseAddr("10.77.0.2")
	addrA := netip.MustParseAddr("10.77.0.3")
	addrB := netip.MustParseAddr("10.77.0.4")

	lab := newBridgeLab(t, netip.MustParsePrefix("10.77.0.0/24"))
	nsR := lab.node(t, "r", addrR)
	nsA := lab.node(t, "a", addrA)
	nsB := lab.node(t, "b", addrB)
	hR := nsHandle(t, nsR)

	var routerNeighbors, lb4Neighbors []Neighbor
	var nsRR netns.NsHandle
	if reflector {
		nsRR = lab.node(t, "rr", addrRR)
		routerNeighbors = []Neighbor{{Address: addrRR, AddPaths: true}}
		lb4Neighbors = []Neighbor{{Address: addrRR}}
	} else {
		// As in a lab: the LB4s dial, the router only accepts.
		routerNeighbors = []Neighbor{{Address: addrA, Passive: true}, {Address: addrB, Passive: true}}
		lb4Neighbors = []Neighbor{{Address: addrR}}
	}

	start := time.Now()
	startSpeaker(t, nsR, childSpec{Name: "r", Role: roleRouter, Config: Config{
		RouterID: addrR, ASN: asn, Listen: true, Neighbors: routerNeighbors,
	}})
	if reflector {
		startSpeaker(t, nsRR, childSpec{Name: "rr", Role: roleReflector, Config: Config{
			RouterID: addrRR, ASN: asn, Listen: true, Neighbors: []Neighbor{
				{Address: addrR, RRClient: true, AddPaths: true, Passive: true},
				{Address: addrA, RRClient: true, Passive: true},
				{Address: addrB, RRClient: true, Passive: true},
			},
		}})
	}
	a := startSpeaker(t, nsA, childSpec{Name: "a", Role: roleLB4, Announce: []netip.Prefix{vip}, Config: Config{
		RouterID: addrA, ASN: asn, Neighbors: lb4Neighbors,
	}})
	b := startSpeaker(t, nsB, childSpec{Name: "b", Role: roleLB4, Announce: []netip.Prefix{vip}, Config: Config{
		RouterID: addrB, ASN: asn, Neighbors: lb4Neighbors,
	}})

	both := []string{fmt.Sprintf("%s proto 186 via %s,%s", vip, addrA, addrB)}
	waitRoutes(t, hR, both, 30*time.Second)
	t.Logf("ecmp route over A and B installed %v after the speakers started", time.Since(start).Round(time.Millisecond))
	if reflector {
		checkRoutes(t, nsHandle(t, nsRR), nil) // The reflector installs nothing.
	}

	// The kernel closes a killed process's sessions, so the route must
	// shrink well before a hold timer could expire.
	killed := time.Now()
	b.kill(t)
	waitRoutes(t, hR, []string{fmt.Sprintf("%s proto 186 via %s", vip, addrA)}, DefaultHoldTime)
	t.Logf("route shrank to A %v after B's process was killed", time.Since(killed).Round(time.Millisecond))

	withdrawn := time.Now()
	a.command(t, "withdraw "+vip.String())
	waitRoutes(t, hR, nil, 15*time.Second)
	t.Logf("route removed %v after A withdrew", time.Since(withdrawn).Round(time.Millisecond))
}

// waitRoutes polls the routes of h until they are want, failing after
// timeout.
func waitRoutes(t *testing.T, h *netlink.Handle, want []string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var got []string
	for {
		var err error
		got, err = kernelRoutes(h)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("routes after %v (-got +want):\n%s", timeout, cmp.Diff(got, want))
		case <-tick.C:
		}
	}
}

// bridgeLab is a bridge in its own namespace with nodes plugged into it.
// Every link is created inside the lab's namespaces: the bridge side of
// each veth in the bridge's namespace, the other side directly in the
// node's.
type bridgeLab struct {
	subnet netip.Prefix
	h      *netlink.Handle // In the bridge's namespace.
	bridge netlink.Link
}

func newBridgeLab(t *testing.T, subnet netip.Prefix) *bridgeLab {
	t.Helper()
	ns := newNetns(t)
	h := nsHandle(t, ns)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("create bridge: %v", err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatalf("set bridge up: %v", err)
	}
	return &bridgeLab{subnet: subnet, h: h, bridge: br}
}

// node creates a namespace plugged into the bridge with addr on its eth0.
func (l *bridgeLab) node(t *testing.T, name string, addr netip.Addr) netns.NsHandle {
	t.Helper()
	ns := newNetns(t)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "v-" + name},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := l.h.LinkAdd(veth); err != nil {
		t.Fatalf("create veth for %s: %v", name, err)
	}
	if err := l.h.LinkSetMaster(veth, l.bridge); err != nil {
		t.Fatalf("plug %s into the bridge: %v", name, err)
	}
	if err := l.h.LinkSetUp(veth); err != nil {
		t.Fatalf("set bridge port of %s up: %v", name, err)
	}
	addAddr(t, nsHandle(t, ns), "eth0", netip.PrefixFrom(addr, l.subnet.Bits()))
	return ns
}

// speakerProcess is a child test binary running one speaker.
type speakerProcess struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	done   chan struct{} // Closed once the process is reaped.
	killed bool
}

// startSpeaker starts a speaker process born inside ns. The process stops
// when its standard input closes, which the cleanup does; it also happens
// if the test process dies.
func startSpeaker(t *testing.T, ns netns.NsHandle, spec childSpec) *speakerProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("encode spec: %v", err)
	}
	logPath := filepath.Join(t.TempDir(), spec.Name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create log: %v", err)
	}
	defer logFile.Close() // The child has its own copy.

	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(specJSON))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("create stdin pipe: %v", err)
	}

	// setns is per thread and a forked child inherits the namespace of
	// the forking thread: start the child from a locked thread that
	// joined ns.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			started <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer origin.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			started <- fmt.Errorf("enter netns: %w", err)
			return
		}
		startErr := cmd.Start()
		if err := netns.Set(origin); err != nil {
			// The thread stays locked and dies with this goroutine.
			started <- fmt.Errorf("leave netns: %w (start: %v)", err, startErr)
			return
		}
		runtime.UnlockOSThread()
		started <- startErr
	}()
	if err := <-started; err != nil {
		stdin.Close()
		t.Fatalf("start speaker %s: %v", spec.Name, err)
	}

	p := &speakerProcess{name: spec.Name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("log of speaker %s:\n%s", spec.Name, out)
			}
		}
	})
	return p
}

// command sends one command line to the speaker.
func (p *speakerProcess) command(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("send %q to speaker %s: %v", line, p.name, err)
	}
}

// kill ends the speaker abruptly, as a crash would.
func (p *speakerProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill speaker %s: %v", p.name, err)
	}
	p.killed = true
	<-p.done
}

// stop asks the speaker to stop by closing its standard input, kills it
// if it has not exited after a while, and checks that it exited cleanly.
func (p *speakerProcess) stop(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		t.Errorf("speaker %s did not stop within 10s, killing it", p.name)
		p.cmd.Process.Kill()
		p.killed = true
		<-p.done
	}
	if !p.killed && !p.cmd.ProcessState.Success() {
		t.Errorf("speaker %s exited with %v", p.name, p.cmd.ProcessState)
	}
}
