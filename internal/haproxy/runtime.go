package haproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/haproxytech/client-native/v6/models"
	"github.com/haproxytech/client-native/v6/runtime"
	rtopt "github.com/haproxytech/client-native/v6/runtime/options"
)

// ServerState is the runtime state of one server of a backend.
type ServerState struct {
	Name    string
	Address netip.Addr // invalid when HAProxy reports no IP address
	Port    int        // 0 when the server has no port (the enabler)
	// Operational is "UP", "DOWN" or "STOPPING" (show servers state).
	Operational string
	// Admin is "READY", "DRAIN" or "MAINT" (show servers state); an agent
	// answering "drain" or "maint" sets it.
	Admin string
	// Status is the status column of "show stat": "UP", "DOWN", "DRAIN",
	// "MAINT", "no check", "UP 1/2"...
	Status string
	// Weight is the current effective weight.
	Weight int
	// Sessions is the number of current sessions.
	Sessions int
	// CheckStatus is the result of the last health check (e.g. "L7OK"),
	// empty without health checks.
	CheckStatus string
	// AgentStatus is the result of the last agent check (e.g. "L7OK",
	// "L4CON"), empty without agent or before its first check.
	AgentStatus string
}

// Runtime reads HAProxy's state through client-native's runtime client on
// the stats socket.
type Runtime struct {
	client runtime.Runtime
}

// NewRuntime connects to the stats socket and checks that it answers.
func NewRuntime(socket string) (*Runtime, error) {
	c, err := runtime.New(context.Background(), rtopt.Socket(socket))
	if err != nil {
		return nil, fmt.Errorf("connect to haproxy runtime api %s: %w", socket, err)
	}
	return &Runtime{client: c}, nil
}

// PID returns the process id of the HAProxy answering on the socket. It
// fails unless HAProxy really answers: a socket that accepts connections
// and closes them is not enough.
func (r *Runtime) PID() (int, error) {
	info, err := r.client.GetInfo()
	if err != nil {
		return 0, fmt.Errorf("show info: %w", err)
	}
	if info.Error != "" {
		return 0, fmt.Errorf("show info: %s", info.Error)
	}
	if info.Info == nil || info.Info.Pid == nil {
		return 0, fmt.Errorf("show info: %w", errNoAnswer)
	}
	return int(*info.Info.Pid), nil
}

// errNoAnswer is returned when the stats socket gives an empty answer.
var errNoAnswer = errors.New("no answer from haproxy")

// Servers returns the state of every server of backend, sorted by name. It
// merges "show servers state" (addresses, operational and admin states)
// with "show stat" (status, weight, sessions, check and agent results).
func (r *Runtime) Servers(backend string) ([]ServerState, error) {
	states, err := r.client.GetServersState(backend)
	if err != nil {
		return nil, fmt.Errorf("show servers state %s: %w", backend, err)
	}
	stats := r.client.GetStats()
	if stats.Error != "" {
		return nil, fmt.Errorf("show stat: %s", stats.Error)
	}
	byName := map[string]*models.NativeStatStats{}
	for _, st := range stats.Stats {
		if st != nil && st.Type == "server" && st.BackendName == backend && st.Stats != nil {
			byName[st.Name] = st.Stats
		}
	}
	out := make([]ServerState, 0, len(states))
	for _, s := range states {
		if s == nil {
			continue
		}
		ss := ServerState{
			Name:        s.Name,
			Operational: strings.ToUpper(s.OperationalState),
			Admin:       strings.ToUpper(s.AdminState),
		}
		if a, err := netip.ParseAddr(s.Address); err == nil {
			ss.Address = a
		}
		if s.Port != nil {
			ss.Port = int(*s.Port)
		}
		if st, ok := byName[s.Name]; ok {
			ss.Status = st.Status
			ss.Weight = intOf(st.Weight)
			ss.Sessions = intOf(st.Scur)
			ss.CheckStatus = st.CheckStatus
			ss.AgentStatus = st.AgentStatus
		}
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func intOf(p *int64) int {
	if p == nil {
		return 0
	}
	return int(*p)
}
