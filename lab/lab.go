// Package lab is the public Go API of `lab`: bring a three-tier
// load-balancer lab up from a topology file, run commands in its nodes,
// read its status and take it down. The `lab` command is a thin layer over
// this package, and Go tests can use it directly:
//
//	l, err := lab.Up(ctx, "topologies/minimal.yaml", lab.Options{})
//	if err != nil { ... }
//	defer l.Down(context.Background())
//	code, err := l.Exec(ctx, "client1", []string{"ping", "-c1", "192.0.2.1"}, nil, os.Stdout, os.Stderr)
//
// A lab runs natively (network namespaces on the host kernel) when the host
// kernel has IPVS and IPIP, and otherwise inside a user-mode Linux kernel;
// both behave the same and are reached the same way.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/lab-lb/lab/internal/agentcheck"
	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/journal"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/supervisor"
	"github.com/lab-lb/lab/internal/topology"
)

// StateDir holds one directory per lab on the host.
const StateDir = "/run/lab"

// Info is what the host keeps about a lab (StateDir/NAME/lab.json).
type Info struct {
	// Name is the lab's name.
	Name string `json:"name"`
	// Mode is how it runs, and Reason why.
	Mode   Mode   `json:"mode"`
	Reason string `json:"reason"`
	// Topology is the topology file it was brought up from.
	Topology string `json:"topology"`
	// Created is when it was brought up.
	Created time.Time `json:"created"`
	// Endpoint is where its control API listens ("unix:///run/lab/NAME/
	// control.sock", "tcp://ADDR:PORT"), and Token the secret it wants
	// there; only root may read them.
	Endpoint string `json:"endpoint"`
	Token    string `json:"token,omitempty"`
	// PID and Start identify the supervisor process (native) or the VM's
	// kernel process (vm) on the host.
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	// TAP is the host's end of the VM's management link (VM mode).
	TAP string `json:"tap,omitempty"`
}

// Lab is a running lab.
type Lab struct {
	Info
	dir    string
	client *control.Client
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,23}$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: want a lower-case letter then letters, digits or '-', at most 24 characters", name)
	}
	return nil
}

func labDir(name string) string { return filepath.Join(StateDir, name) }

func readInfo(name string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(labDir(name), infoName))
	if err != nil {
		return nil, err
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("read state of lab %s: %w", name, err)
	}
	return &in, nil
}

func writeInfo(dir string, in *Info) error {
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "lab.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, infoName))
}

// Alive reports whether the lab's supervisor (or VM) process still runs.
func (in *Info) Alive() bool { return in.PID > 0 && journal.Alive(in.PID, in.Start) }

// Names lists the labs that have state on this host.
func Names() ([]string, error) {
	ents, err := os.ReadDir(StateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && nameRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// List returns what the host knows of every lab.
func List() ([]Info, error) {
	names, err := Names()
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, n := range names {
		in, err := readInfo(n)
		if err != nil {
			out = append(out, Info{Name: n})
			continue
		}
		out = append(out, *in)
	}
	return out, nil
}

// Open connects to the running lab name; with name "" and exactly one lab
// on the host, to that one.
func Open(name string) (*Lab, error) {
	if name == "" {
		names, err := Names()
		if err != nil {
			return nil, err
		}
		switch len(names) {
		case 0:
			return nil, errors.New("no lab is up (start one with `lab up FILE`)")
		case 1:
			name = names[0]
		default:
			return nil, fmt.Errorf("%d labs are up (%v): say which with --name", len(names), names)
		}
	}
	in, err := readInfo(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no lab named %s is up", name)
	}
	if err != nil {
		return nil, err
	}
	if !in.Alive() {
		return nil, fmt.Errorf("lab %s is not running (its process is gone): clean it with `lab down %s`", name, name)
	}
	c, err := control.NewClient(control.Endpoint(in.Endpoint), in.Token)
	if err != nil {
		return nil, err
	}
	return &Lab{Info: *in, dir: labDir(name), client: c}, nil
}

// Close releases the connection to the lab; the lab keeps running.
func (l *Lab) Close() { l.client.Close() }

// Status returns the lab's status: every node with its addresses, its
// agent's state and its tier's, and the VIPs.
func (l *Lab) Status(ctx context.Context) (*Status, error) {
	st, err := l.client.Status(ctx)
	return statusFrom(st), err
}

// Readiness returns the lab's status with only whether each node has
// converged (Agent.Ready, Agent.Waiting), which is much cheaper to make
// than Status in a busy lab.
func (l *Lab) Readiness(ctx context.Context) (*Status, error) {
	st, err := l.client.Readiness(ctx)
	return statusFrom(st), err
}

// StatusOf returns the status of the nodes of the given roles only.
func (l *Lab) StatusOf(ctx context.Context, roles ...Role) (*Status, error) {
	st, err := l.client.StatusOf(ctx, convert(roles, func(r Role) string { return string(r) })...)
	return statusFrom(st), err
}

// Exec runs argv inside node and returns its exit status. stdin may be nil.
func (l *Lab) Exec(ctx context.Context, node string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return -1, errors.New("exec: no command given")
	}
	return l.client.Exec(ctx, "/v1/nodes/"+node+"/exec", argv, stdin, stdout, stderr)
}

// Logs copies node's agent log to w; with follow, it keeps copying until
// ctx is done.
func (l *Lab) Logs(ctx context.Context, node string, follow bool, w io.Writer) error {
	path := "/v1/nodes/" + node + "/logs"
	if follow {
		path += "?follow=1"
	}
	return l.client.Stream(ctx, path, w)
}

// HTTPResult is the answer to one HTTP request made from inside a node.
type HTTPResult struct {
	// URL is the URL asked for, and Source the address asked from ("" when
	// the kernel chose).
	URL    string `json:"url"`
	Source string `json:"source,omitempty"`
	// Status is the HTTP status code, 0 when the request failed.
	Status int `json:"status"`
	// Header and Body are the answer's (the body up to 1 MiB).
	Header map[string][]string `json:"header,omitempty"`
	Body   string              `json:"body"`
	// Elapsed is how long the request took.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Error says why the request failed.
	Error string `json:"error,omitempty"`
}

// Get makes one HTTP GET of url from inside node (from source, one of the
// node's addresses, when given) and returns the answer. A failed request
// is reported in HTTPResult.Error, not as an error.
func (l *Lab) Get(ctx context.Context, nodeName, url, source string, timeout time.Duration) (*HTTPResult, error) {
	q := neturl.Values{"url": {url}}
	if source != "" {
		q.Set("source", source)
	}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	var res node.HTTPResult
	if err := l.client.GetJSON(ctx, "/v1/nodes/"+nodeName+"/http?"+q.Encode(), &res); err != nil {
		return nil, err
	}
	return (*HTTPResult)(&res), nil
}

// Events returns the lab's event log, oldest first.
func (l *Lab) Events(ctx context.Context) ([]Event, error) {
	evs, err := l.client.Events(ctx, 0)
	return eventsFrom(evs), err
}

// CPU reports where the lab kernel's CPU time goes, by kind of process
// (each role's agents and HAProxies, the supervisor, the VM's init, the
// rest): measured over interval, or since boot when interval is 0. In VM
// mode that is the VM's one CPU, the lab's whole budget.
func (l *Lab) CPU(ctx context.Context, interval time.Duration) (*CPUReport, error) {
	rep, err := l.client.CPU(ctx, interval)
	return cpuReportFrom(rep), err
}

// TopologyFile is the file of the lab's current topology: the resolved
// one its supervisor saved (at bring-up, and after Add or Remove), or the
// file it was brought up with while there is none yet.
func (l *Lab) TopologyFile() string {
	changed := filepath.Join(l.dir, supervisor.ConfigsDir, supervisor.TopologyFile)
	if _, err := os.Stat(changed); err == nil {
		return changed
	}
	return l.Info.Topology
}

// topology loads the lab's current topology (TopologyFile).
func (l *Lab) topology() (*topology.Topology, error) { return topology.Load(l.TopologyFile()) }

// BenchResult is a request-rate measurement.
type BenchResult struct {
	// URL is the URL asked for.
	URL string `json:"url"`
	// Requests counts the requests made, Errors those that failed.
	Requests int `json:"requests"`
	Errors   int `json:"errors"`
	// Elapsed is how long they took, PerSec the rate.
	Elapsed time.Duration `json:"elapsed_ns"`
	PerSec  float64       `json:"per_second"`
	// FirstErr is the first failure's error.
	FirstErr string `json:"first_error,omitempty"`
}

// Bench makes n HTTP requests (one TCP connection each, c at a time) from
// inside node to addr, from sources in turn, and returns the rate.
func (l *Lab) Bench(ctx context.Context, nodeName string, addr netip.AddrPort, n, c int, sources []netip.Addr) (*BenchResult, error) {
	q := neturl.Values{"addr": {addr.String()}, "n": {fmt.Sprint(n)}, "c": {fmt.Sprint(c)}}
	for _, s := range sources {
		q.Add("source", s.String())
	}
	var res node.BenchResult
	if err := l.client.GetJSON(ctx, "/v1/nodes/"+nodeName+"/bench?"+q.Encode(), &res); err != nil {
		return nil, err
	}
	return (*BenchResult)(&res), nil
}

// Maint puts a node in maintenance (on) or takes it out, through the
// reference lab's files: on an LB4, /etc/lb/disable (its VIPs are
// withdrawn from BGP); on an LB7, "down" in /etc/lb/agent-check (its
// /healthcheck fails and every LB4 takes it out).
func (l *Lab) Maint(ctx context.Context, nodeName string, on bool) error {
	t, err := l.topology()
	if err != nil {
		return err
	}
	n, ok := t.Node(nodeName)
	if !ok {
		return fmt.Errorf("no node %s in lab %s", nodeName, l.Name)
	}
	q := neturl.Values{}
	switch {
	case n.Role == topology.RoleLB4:
		q.Set("file", node.DisableFile)
		if !on {
			q.Set("remove", "1")
		}
	case n.Role == topology.RoleLB7 && on:
		q.Set("file", node.AgentCheckFile)
		q.Set("content", "down #lab maint\n")
	case n.Role == topology.RoleLB7:
		q.Set("file", node.AgentCheckFile)
		q.Set("content", "up\n")
	default:
		return fmt.Errorf("lab maint applies to lb4 and lb7 nodes; %s is a %s (use lab agent for backends)", nodeName, n.Role)
	}
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/maint?"+q.Encode(), nil)
}

// MaintVIP takes one VIP out of service (on) or puts it back, on every
// LB4 at once: each writes or removes /etc/lb/disable.VIP and withdraws or
// announces that VIP's addresses alone, so routers lose (or regain) every
// route to it while the other VIPs stay. The lab's DNS then leaves it out
// of its answers as its checks fail. vip is a VIP name of the topology.
func (l *Lab) MaintVIP(ctx context.Context, vip string, on bool) error {
	t, err := l.topology()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(t.VIPs, func(v topology.VIP) bool { return v.Name == vip }) {
		return fmt.Errorf("no VIP %s in lab %s", vip, l.Name)
	}
	q := neturl.Values{"file": {node.DisableVIPFile(vip)}}
	if !on {
		q.Set("remove", "1")
	}
	var errs []error
	for _, n := range t.NodesByRole(topology.RoleLB4) {
		if err := l.client.Post(ctx, "/v1/nodes/"+n.Name+"/maint?"+q.Encode(), nil); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Agent writes state (what an HAProxy agent-check answers: up, down,
// drain, maint, ready, N%...) into the /etc/lb/agent-check of a backend or
// an LB7.
func (l *Lab) Agent(ctx context.Context, nodeName, state string) error {
	if _, err := agentcheck.Parse(state); err != nil {
		return fmt.Errorf("agent state %q: %w", state, err)
	}
	t, err := l.topology()
	if err != nil {
		return err
	}
	n, ok := t.Node(nodeName)
	if !ok {
		return fmt.Errorf("no node %s in lab %s", nodeName, l.Name)
	}
	if n.Role != topology.RoleServer && n.Role != topology.RoleLB7 {
		return fmt.Errorf("lab agent applies to server and lb7 nodes; %s is a %s", nodeName, n.Role)
	}
	q := neturl.Values{"file": {node.AgentCheckFile}, "content": {state + "\n"}}
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/maint?"+q.Encode(), nil)
}

// Kill crashes node: every process of it dies at once, its links stay up.
func (l *Lab) Kill(ctx context.Context, nodeName string) error {
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/kill", nil)
}

// Freeze makes node fail silently: its processes stop and every packet to
// or from it is dropped; peers notice only through timers. Revive thaws it.
func (l *Lab) Freeze(ctx context.Context, nodeName string) error {
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/kill?freeze=1", nil)
}

// SetLink sets node's link other (a segment it joins or a node it is
// linked to) down or up, both ends.
func (l *Lab) SetLink(ctx context.Context, nodeName, other string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return l.client.Post(ctx, "/v1/links/"+nodeName+"/"+other+"?state="+state, nil)
}

// Impairment is delay, jitter and loss applied to a link with netem.
type Impairment struct {
	// Delay is added to every packet, give or take Jitter.
	Delay, Jitter time.Duration
	// Loss is the share of packets dropped, in percent (1 for 1%).
	Loss float64
}

// Impair applies im to both ends of node's link other; a zero im removes
// the impairment.
func (l *Lab) Impair(ctx context.Context, nodeName, other string, im Impairment) error {
	q := neturl.Values{"delay": {im.Delay.String()}, "jitter": {im.Jitter.String()}, "loss": {fmt.Sprint(im.Loss)}}
	return l.client.Post(ctx, "/v1/links/"+nodeName+"/"+other+"/impair?"+q.Encode(), nil)
}

// Add builds a new LB4 or LB7 named nodeName like the node like (same
// segments, routes and settings; the next free addresses) and starts it;
// every LB4 adds a new LB7 last in its IPVS services, so all keep the same
// destination order, and routers or route reflectors peer with a new LB4.
func (l *Lab) Add(ctx context.Context, nodeName, like string) error {
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/add?"+neturl.Values{"like": {like}}.Encode(), nil)
}

// Remove takes an LB4 or LB7 out of the lab: its processes, namespace and
// links go, and the other nodes forget it.
func (l *Lab) Remove(ctx context.Context, nodeName string) error {
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/remove", nil)
}

// Revive restarts a killed node's services, or thaws a frozen one.
func (l *Lab) Revive(ctx context.Context, nodeName string) error {
	return l.client.Post(ctx, "/v1/nodes/"+nodeName+"/revive", nil)
}
