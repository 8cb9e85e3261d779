package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/lab-lb/lab/internal/topology"
)

// role is the service a node runs for its tier. Start sets it up and
// starts its goroutines, which end with ctx; Ready says whether the node
// has converged (and why not); Status is what `lab status` shows of it.
type role interface {
	Start(ctx context.Context) error
	Ready() (bool, string)
	Status() any
	// Summary is one line for a person: `lab status` prints it.
	Summary() string
}

// newRole returns the service of the node's role.
func newRole(a *agent) role {
	switch a.node.Role {
	case topology.RoleRouter:
		return &router{a: a}
	case topology.RoleRR:
		return &reflector{a: a}
	case topology.RoleLB4:
		return &lb4{a: a}
	case topology.RoleLB7:
		return &lb7{a: a}
	case topology.RoleServer:
		return &server{a: a}
	case topology.RoleDNS:
		return &dnsNode{a: a}
	}
	return idle{}
}

// idle is the role of clients and plain hosts: nothing to run.
type idle struct{}

func (idle) Start(context.Context) error { return nil }
func (idle) Ready() (bool, string)       { return true, "" }
func (idle) Status() any                 { return nil }
func (idle) Summary() string             { return "" }

// routerID picks the node's first IPv4 interface address as its BGP
// router ID.
func routerID(n *topology.Node) (netip.Addr, error) {
	for _, i := range n.Interfaces {
		if p, ok := i.Address(topology.IPv4); ok {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s has no IPv4 address for a BGP router ID", n.Name)
}

// facing returns the address of node to as seen from this node.
func (a *agent) facing(to string) (netip.Addr, error) {
	addr, ok := a.topology().AddressFacing(a.node.Name, to, topology.IPv4)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%s shares no segment or link with %s", a.node.Name, to)
	}
	return addr, nil
}

// serve runs fn on a listener at addr until ctx ends; errors are logged.
// Accepted connections get no TCP keepalive: they are health checks,
// agent checks and downloads that end on their own, and each keepalive
// option is one more system call per connection, which a user-mode Linux
// VM pays dearly when HAProxy checks every backend from every LB7.
func (a *agent) serve(ctx context.Context, wg *sync.WaitGroup, addr string, what string, fn func(context.Context, net.Listener) error) error {
	ln, err := a.at.listen(ctx, net.ListenConfig{KeepAlive: -1}, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := fn(ctx, ln); err != nil && ctx.Err() == nil {
			a.log.Error(what+" stopped", "err", err)
		}
	}()
	return nil
}
