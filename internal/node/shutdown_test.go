package node

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/fabric"
)

// A crash shuts down every socket the process has in the node's network
// namespace, whoever made it (here a loop started like GoBGP's), and none
// elsewhere.
func TestShutdownSocketsIn(t *testing.T) {
	ns := newTestNetns(t)
	p := place{ns: ns}

	// A listener made by a serve loop on a thread in the namespace, as a
	// pooled LB4's GoBGP makes its own.
	made := make(chan net.Listener, 1)
	stop := make(chan struct{})
	defer close(stop)
	if err := p.goForever(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Error(err)
		}
		made <- ln
		<-stop
	}); err != nil {
		t.Fatal(err)
	}
	inside := <-made
	if inside == nil {
		t.FailNow()
	}
	defer inside.Close()
	var client net.Conn
	if err := fabric.InNetns(ns, func() (err error) {
		client, err = net.DialTimeout("tcp", inside.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial inside the namespace: %v", err)
	}
	defer client.Close()
	accepted, err := inside.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()

	// The same outside the namespace, which must live on.
	outside, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()

	n, err := shutdownSocketsIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("shut down %d sockets, want the listener and both ends of its connection (3)", n)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after the shutdown = %d, %v; want EOF", got, err)
	}
	if _, err := inside.Accept(); err == nil {
		t.Error("Accept on the listener succeeded after the shutdown")
	}
	c, err := net.DialTimeout("tcp", outside.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("the listener outside the namespace was shut down: %v", err)
	}
	c.Close()
}
