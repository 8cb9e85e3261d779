package fabric

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/journal"
)

// Recorder is where Apply records the namespaces it creates.
type Recorder interface {
	Add(journal.Record) error
}

// Apply creates the plan's objects. Each namespace is recorded before it is
// created, so that a failure at any point (or a crash) is undone by undoing
// the journal. Apply refuses to reuse a namespace that already exists: it
// belongs to another lab or to someone else.
func Apply(ctx context.Context, p *Plan, rec Recorder, log *slog.Logger) error {
	for _, name := range p.Namespaces {
		if _, err := os.Stat(filepath.Join(journal.NetnsDir, name)); err == nil {
			return fmt.Errorf("network namespace %s already exists (is lab %s already up? try `lab down %s`)", name, p.Lab, p.Lab)
		}
	}
	if _, err := os.Stat(journal.NetnsDir); errors.Is(err, fs.ErrNotExist) {
		if err := rec.Add(journal.Record{Kind: journal.KindEmptyDir, Path: journal.NetnsDir}); err != nil {
			return err
		}
	}
	return build(ctx, p, rec, log)
}

// build creates the plan's namespaces, then its other objects, which may
// also live in namespaces that exist already (a Diff plan).
func build(ctx context.Context, p *Plan, rec Recorder, log *slog.Logger) error {
	hs := map[string]*netlink.Handle{}
	nss := map[string]netns.NsHandle{}
	defer func() {
		for _, h := range hs {
			h.Close()
		}
		for _, ns := range nss {
			ns.Close()
		}
	}()
	open := func(name string, ns netns.NsHandle) error {
		nss[name] = ns
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open netlink in %s: %w", name, err)
		}
		hs[name] = h
		return nil
	}
	for _, name := range p.Namespaces {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rec.Add(journal.Record{Kind: journal.KindNetns, Name: name}); err != nil {
			return err
		}
		ns, err := newNetns(name)
		if err != nil {
			return err
		}
		if err := open(name, ns); err != nil {
			return err
		}
		if err := setUp(hs[name], "lo"); err != nil {
			return fmt.Errorf("set lo up in %s: %w", name, err)
		}
	}
	for _, name := range p.existing() {
		ns, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("open netns %s: %w", name, err)
		}
		if err := open(name, ns); err != nil {
			return err
		}
	}
	log.Info("progress", "step", "namespaces", "count", len(p.Namespaces))
	// Sysctls go in before the links, so that defaults such as
	// net.ipv4.conf.default.rp_filter reach the interfaces made next;
	// those naming an interface wait until it exists.
	var later []Sysctl
	for _, s := range p.Sysctls {
		if strings.Contains(s.Key, ".conf.") && !strings.Contains(s.Key, ".conf.all.") && !strings.Contains(s.Key, ".conf.default.") {
			later = append(later, s)
			continue
		}
		if err := setSysctl(nss[s.NS], s.Key, s.Value); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", s.Key, s.Value, s.NS, err)
		}
	}

	for _, br := range p.Bridges {
		h := hs[br.NS]
		la := netlink.NewLinkAttrs()
		la.Name = br.Name
		la.MTU = br.MTU
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("create bridge %s: %w", br.Name, err)
		}
		if err := setUp(h, br.Name); err != nil {
			return fmt.Errorf("set bridge %s up: %w", br.Name, err)
		}
	}
	for _, v := range p.Veths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := addVeth(hs, nss, v); err != nil {
			return err
		}
	}
	for _, tu := range p.Tunnels {
		h := hs[tu.NS]
		la := netlink.NewLinkAttrs()
		la.Name = tu.Name
		var link netlink.Link = &netlink.Iptun{LinkAttrs: la, Local: tu.Local.AsSlice(), Remote: tu.Remote.AsSlice(), PMtuDisc: 1}
		kind := "ipip"
		if tu.Is6() {
			// Receive only: the LB7 answers clients directly, never
			// through the tunnel.
			link = &netlink.Ip6tnl{LinkAttrs: la, Local: tu.Local.AsSlice(), Remote: tu.Remote.AsSlice(), Proto: unix.IPPROTO_IPV6}
			kind = "ip6ip6"
		}
		if err := h.LinkAdd(link); err != nil {
			return fmt.Errorf("create %s tunnel %s in %s: %w", kind, tu.Name, tu.NS, err)
		}
		if err := setUp(h, tu.Name); err != nil {
			return fmt.Errorf("set tunnel %s up in %s: %w", tu.Name, tu.NS, err)
		}
	}
	log.Info("progress", "step", "links", "bridges", len(p.Bridges), "veths", len(p.Veths), "tunnels", len(p.Tunnels))

	for _, a := range p.Addrs {
		h := hs[a.NS]
		l, err := h.LinkByName(a.Dev)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", a.Dev, a.NS, err)
		}
		addr := &netlink.Addr{IPNet: prefixToIPNet(a.Prefix)}
		if a.Prefix.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("add address %s to %s in %s: %w", a.Prefix, a.Dev, a.NS, err)
		}
	}
	for _, r := range p.Routes {
		h := hs[r.NS]
		route := &netlink.Route{Dst: prefixToIPNet(r.To)}
		if len(r.Via) == 1 {
			route.Gw = r.Via[0].AsSlice()
		} else {
			for _, v := range r.Via {
				route.MultiPath = append(route.MultiPath, &netlink.NexthopInfo{Gw: v.AsSlice()})
			}
		}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("add route %s via %s in %s: %w", r.To, r.Via, r.NS, err)
		}
	}
	log.Info("progress", "step", "addresses", "addresses", len(p.Addrs), "routes", len(p.Routes))

	for _, s := range later {
		if err := setSysctl(nss[s.NS], s.Key, s.Value); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", s.Key, s.Value, s.NS, err)
		}
	}
	return nil
}

func addVeth(hs map[string]*netlink.Handle, nss map[string]netns.NsHandle, v Veth) error {
	h, ph := hs[v.NS], hs[v.PeerNS]
	la := netlink.NewLinkAttrs()
	la.Name = v.Name
	la.MTU = v.MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: v.PeerName, PeerNamespace: netlink.NsFd(nss[v.PeerNS])}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s <-> %s/%s: %w", v.NS, v.Name, v.PeerNS, v.PeerName, err)
	}
	peer, err := ph.LinkByName(v.PeerName)
	if err != nil {
		return fmt.Errorf("find veth peer %s in %s: %w", v.PeerName, v.PeerNS, err)
	}
	if v.Alias != "" {
		if err := ph.LinkSetAlias(peer, v.Alias); err != nil {
			return fmt.Errorf("set alias of %s: %w", v.PeerName, err)
		}
	}
	if v.Master != "" {
		br, err := ph.LinkByName(v.Master)
		if err != nil {
			return fmt.Errorf("find bridge %s: %w", v.Master, err)
		}
		if err := ph.LinkSetMaster(peer, br); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %w", v.PeerName, v.Master, err)
		}
	}
	if err := ph.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up in %s: %w", v.PeerName, v.PeerNS, err)
	}
	if err := setUp(h, v.Name); err != nil {
		return fmt.Errorf("set %s up in %s: %w", v.Name, v.NS, err)
	}
	return nil
}

func setUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

// newNetns creates and bind-mounts a named namespace without moving the
// calling goroutine's thread: the work runs on a locked thread of its own
// that is thrown away if it cannot be returned to its namespace.
func newNetns(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			ch <- result{err: fmt.Errorf("create netns %s: %w", name, err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			ch <- result{ns: ns}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ns: ns}
	}()
	r := <-ch
	return r.ns, r.err
}

// InNetns runs fn on a thread that has joined ns. Sysctls under
// /proc/sys/net resolve against the writing thread's namespace.
func InNetns(ns netns.NsHandle, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			ch <- fmt.Errorf("enter netns: %w", err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

func setSysctl(ns netns.NsHandle, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return InNetns(ns, func() error {
		err := os.WriteFile(path, []byte(value), 0)
		if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(key, "net.ipv4.vs.") {
			return fmt.Errorf("%w (the kernel has no IPVS loaded)", err)
		}
		return err
	})
}
