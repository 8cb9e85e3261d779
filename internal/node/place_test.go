package node

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A pooled node's crash closes its listeners and the connections they
// accepted, at once, and whatever it opens afterwards.
func TestSocketsCrash(t *testing.T) {
	s := newSockets()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.listener(raw)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if _, ok := server.(interface{ CloseWrite() error }); !ok {
		t.Error("accepted connection lost CloseWrite")
	}
	s.crash()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client read after crash = %d, %v; want EOF", n, err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("Accept after crash succeeded")
	}
	if _, err := net.Dial("tcp", raw.Addr().String()); err == nil {
		t.Error("dial after crash succeeded: the listener is open")
	}
	again, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.listener(again); err == nil {
		t.Error("listener after crash accepted")
	}
	if _, err := net.Dial("tcp", again.Addr().String()); err == nil {
		t.Error("a listener made after the crash stays open")
	}
}

// newTestNetns makes a network namespace with lo up, removed at the end of
// the test.
func newTestNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	errc := make(chan error, 1)
	var ns netns.NsHandle
	onSpareThread(func() { // the thread leaves with the namespace
		var err error
		if ns, err = netns.New(); err != nil {
			errc <- err
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		errc <- err
	})
	if err := <-errc; err != nil {
		t.Fatalf("make network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// A pooled node listens, dials and starts processes in its own network
// namespace, and its processes see its /etc/lb.
func TestPlaceInNamespace(t *testing.T) {
	ns := newTestNetns(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, LBDirName), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, LBDirName, AgentCheckFile), []byte("drain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := place{ns: ns, dir: dir, opened: newSockets()}
	ctx := context.Background()
	ln, err := p.listen(ctx, net.ListenConfig{}, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen in the namespace: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello\n")
			c.Close()
		}
	}()
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("dial from the test's namespace reached the node's listener at %s", ln.Addr())
	}
	c, err := p.dial(&net.Dialer{Timeout: 5 * time.Second})(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial from the node: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hello\n" {
		t.Errorf("node's answer = %q, want hello", b)
	}

	mountsBefore := etcAndSysMounts(t)
	var want unix.Stat_t
	if err := unix.Fstat(int(ns), &want); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "stat -L -c %i /proc/self/ns/net; cat /etc/lb/"+AgentCheckFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := p.start(cmd); err != nil {
		t.Fatalf("start a command in the node: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("command in the node: %v: %s", err, out.String())
	}
	lines := strings.Fields(out.String())
	if len(lines) != 2 || lines[0] != strconv.FormatUint(want.Ino, 10) || lines[1] != "drain" {
		t.Errorf("command in the node printed %q, want its netns inode %d and drain", out.String(), want.Ino)
	}
	// The mounts it needed (/etc, /etc/lb, /sys) were made in a namespace
	// of its own.
	if after := etcAndSysMounts(t); !slices.Equal(mountsBefore, after) {
		t.Errorf("the test process's mounts on /etc and /sys changed:\nbefore:\n%s\nafter:\n%s",
			strings.Join(mountsBefore, "\n"), strings.Join(after, "\n"))
	}
}

// etcAndSysMounts returns the lines of this process's mount table whose
// mount point is /etc or below, or /sys itself: what a leak of the
// node's mounts would change (other tests may mount elsewhere meanwhile,
// under /run/netns or /sys/fs).
func etcAndSysMounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if f[4] == "/etc" || strings.HasPrefix(f[4], "/etc/") || f[4] == "/sys" {
			out = append(out, line)
		}
	}
	return out
}
