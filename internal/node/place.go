package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/fabric"
)

// place is where a node's sockets and child processes are made. An agent
// of its own is born in its node's namespaces, so it makes them where it
// stands. A pooled agent shares its process with other nodes' agents
// (see Pool): every socket it opens is made on a thread that entered the
// node's network namespace, every process it starts forks from such a
// thread, and its crash closes every socket it made, as the kernel closes
// a killed process's.
type place struct {
	ns     netns.NsHandle // the node's network namespace; -1 for where we stand
	dir    string         // the node's state directory
	opened *sockets       // what a crash closes; nil for an agent of its own
}

// pooled says whether the agent shares its process with other nodes.
func (p place) pooled() bool { return p.ns.IsOpen() }

// within runs fn on a thread in the node's network namespace.
func (p place) within(fn func() error) error {
	if !p.pooled() {
		return fn()
	}
	return fabric.InNetns(p.ns, fn)
}

// listen opens a listener in the node; a pooled node's crash closes it
// and every connection it accepted.
func (p place) listen(ctx context.Context, lc net.ListenConfig, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := p.within(func() (err error) {
		ln, err = lc.Listen(ctx, network, addr)
		return err
	})
	if err != nil || p.opened == nil {
		return ln, err
	}
	return p.opened.listener(ln)
}

// dial opens a connection from the node with d.
func (p place) dial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if !p.pooled() {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := p.within(func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// netnsPath names the node's network namespace for libraries that open
// it by path (IPVS); "" is where we stand.
func (p place) netnsPath() string {
	if !p.pooled() {
		return ""
	}
	return fmt.Sprintf("/proc/self/fd/%d", int(p.ns))
}

// goForever starts serve, a loop that never returns, and returns once it
// runs. For a pooled node, the loop runs on a thread of its own that
// entered the node's network namespace and stays there for the life of
// the process: GoBGP makes its listener on its serve loop's goroutine,
// and that loop has no end, so a crashed LB4 leaves this thread idle.
func (p place) goForever(serve func()) error {
	if !p.pooled() {
		go serve()
		return nil
	}
	errc := make(chan error, 1)
	go onSpareThread(func() {
		if err := netns.Set(p.ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- nil
		serve()
	})
	return <-errc
}

// start starts cmd inside the node: for a pooled node, in its network
// namespace and in a mount namespace of its own where /etc/lb is the
// node's, as an agent of its own has it.
func (p place) start(cmd *exec.Cmd) error {
	if !p.pooled() {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	onSpareThread(func() {
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("new mount namespace: %w", err)
			}
			if err := netns.Set(p.ns); err != nil {
				return fmt.Errorf("enter network namespace: %w", err)
			}
			if err := privateEtc(p.dir); err != nil {
				return fmt.Errorf("set up private /etc/lb: %w", err)
			}
			if err := netnsSysfs(); err != nil {
				return fmt.Errorf("mount sysfs: %w", err)
			}
			return cmd.Start()
		}()
	})
	return <-errc
}

// onSpareThread runs fn on an OS thread of its own, which leaves the
// process when fn returns, with whatever namespaces fn entered. Never the
// main thread: Go does not end it but parks it, and /proc/self shows its
// namespaces as the process's.
func onSpareThread(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Holding the main thread, the next goroutine cannot get it.
			onSpareThread(fn)
			runtime.UnlockOSThread()
			return
		}
		fn() // never unlocked: the thread ends with this goroutine
	}()
	<-done
}

// sockets are what a pooled node opened: listeners and the connections
// they accepted. crash closes them all at once.
type sockets struct {
	mu      sync.Mutex
	open    map[io.Closer]struct{}
	crashed bool
}

func newSockets() *sockets { return &sockets{open: map[io.Closer]struct{}{}} }

// add records c, or closes it when the node has crashed already.
func (s *sockets) add(c io.Closer) bool {
	s.mu.Lock()
	crashed := s.crashed
	if !crashed {
		s.open[c] = struct{}{}
	}
	s.mu.Unlock()
	if crashed {
		c.Close() // outside the lock: Close forgets c
	}
	return !crashed
}

func (s *sockets) forget(c io.Closer) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

// crash closes every socket recorded and every one recorded from now on.
func (s *sockets) crash() {
	s.mu.Lock()
	open := s.open
	s.open, s.crashed = map[io.Closer]struct{}{}, true
	s.mu.Unlock()
	for c := range open {
		c.Close()
	}
}

func (s *sockets) listener(ln net.Listener) (net.Listener, error) {
	t := &trackedListener{Listener: ln, s: s}
	if !s.add(t) {
		return nil, errors.New("node crashed")
	}
	return t, nil
}

type trackedListener struct {
	net.Listener
	s *sockets
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t := &trackedConn{Conn: c, s: l.s}
	if !l.s.add(t) {
		return nil, net.ErrClosed
	}
	return t, nil
}

func (l *trackedListener) Close() error {
	l.s.forget(l)
	return l.Listener.Close()
}

// trackedConn keeps CloseWrite, which the agent-check server and
// net/http use to end a connection cleanly.
type trackedConn struct {
	net.Conn
	s    *sockets
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.forget(c) })
	return c.Conn.Close()
}

func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
