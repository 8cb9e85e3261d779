package ipvstest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Kernel service flags (include/uapi/linux/ip_vs.h).
const (
	flagSched1 = 0x0008 // IP_VS_SVC_F_SCHED1
	flagSched2 = 0x0010 // IP_VS_SVC_F_SCHED2
	flagHashed = FlagHashed
)

func TestFakeKernel(t *testing.T) {
	svc := TCPService("198.51.100.1", "mh", flagSched2)
	type step struct {
		name string
		do   func(k *Kernel) error
		err  error
	}
	cases := []struct {
		name  string
		steps []step
		want  []ServiceState
	}{
		{
			name: "new destinations go to the head",
			steps: []step{
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
				{"a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, nil},
				{"b", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.2", 1)) }, nil},
				{"c", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.3", 2)) }, nil},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []DestState{
				{Addr: "192.0.2.3:80", Weight: 2, LastWeight: 2, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.2:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "last weight keeps the latest non-zero weight and is set on add",
			steps: []step{
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
				{"a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 3)) }, nil},
				{"a to 0", func(k *Kernel) error { return k.UpdateDestination(svc, TunnelDest("192.0.2.1", 0)) }, nil},
				{"b at 0", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.2", 0)) }, nil},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []DestState{
				{Addr: "192.0.2.2:80", Weight: 0, LastWeight: 0, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.1:80", Weight: 0, LastWeight: 3, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "delete keeps the order of the others and re-add goes to the head",
			steps: []step{
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
				{"a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, nil},
				{"b", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.2", 1)) }, nil},
				{"c", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.3", 1)) }, nil},
				{"del b", func(k *Kernel) error { return k.DelDestination(svc, TunnelDest("192.0.2.2", 0)) }, nil},
				{"del a", func(k *Kernel) error { return k.DelDestination(svc, TunnelDest("192.0.2.1", 0)) }, nil},
				{"re-add a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, nil},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []DestState{
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
				{Addr: "192.0.2.3:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "update service keeps destinations and the hashed flag",
			steps: []step{
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
				{"a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, nil},
				{"update", func(k *Kernel) error { return k.UpdateService(TCPService("198.51.100.1", "sh", flagSched1)) }, nil},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "sh", Flags: flagSched1 | flagHashed, Dests: []DestState{
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "errors of ip_vs_ctl.c",
			steps: []step{
				{"update missing service", func(k *Kernel) error { return k.UpdateService(svc) }, unix.ESRCH},
				{"delete missing service", func(k *Kernel) error { return k.DelService(svc) }, unix.ESRCH},
				{"add to missing service", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, unix.ESRCH},
				{"unknown scheduler", func(k *Kernel) error { return k.NewService(TCPService("198.51.100.1", "nope", 0)) }, unix.ENOENT},
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
				{"service again", func(k *Kernel) error { return k.NewService(svc) }, unix.EEXIST},
				{"a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, nil},
				{"a again", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, unix.EEXIST},
				{"negative weight", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.2", -1)) }, unix.ERANGE},
				{"update missing destination", func(k *Kernel) error { return k.UpdateDestination(svc, TunnelDest("192.0.2.2", 1)) }, unix.ENOENT},
				{"delete missing destination", func(k *Kernel) error { return k.DelDestination(svc, TunnelDest("192.0.2.2", 1)) }, unix.ENOENT},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed, Dests: []DestState{
				{Addr: "192.0.2.1:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
			}}},
		},
		{
			name: "delete service drops its destinations",
			steps: []step{
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
				{"a", func(k *Kernel) error { return k.NewDestination(svc, TunnelDest("192.0.2.1", 1)) }, nil},
				{"delete", func(k *Kernel) error { return k.DelService(svc) }, nil},
				{"service again", func(k *Kernel) error { return k.NewService(svc) }, nil},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed}},
		},
		{
			name: "injected failure happens once",
			steps: []step{
				{"inject", func(k *Kernel) error { k.FailNext("NewService", unix.ENOMEM); return nil }, nil},
				{"service fails", func(k *Kernel) error { return k.NewService(svc) }, unix.ENOMEM},
				{"service", func(k *Kernel) error { return k.NewService(svc) }, nil},
			},
			want: []ServiceState{{Key: "2/6/198.51.100.1:80", Scheduler: "mh", Flags: flagSched2 | flagHashed}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKernel()
			for _, s := range tc.steps {
				if err := s.do(k); !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
					t.Fatalf("%s: error %v, want %v", s.name, err, s.err)
				}
			}
			if diff := cmp.Diff(k.State(), tc.want); diff != "" {
				t.Errorf("state (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFakeKernelReadBack(t *testing.T) {
	k := NewKernel()
	svc := TCPService("198.51.100.1", "mh", flagSched1)
	if err := k.NewService(svc); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
		if err := k.NewDestination(svc, TunnelDest(a, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.SetConns("198.51.100.1:80", "192.0.2.1", 3, 4, 10); err != nil {
		t.Fatal(err)
	}
	if err := k.SetConns("198.51.100.1:80", "192.0.2.9", 1, 1, 1); err == nil {
		t.Error("SetConns of a missing destination succeeded")
	}

	services, err := k.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 {
		t.Fatalf("got %d services, want 1", len(services))
	}
	s := services[0]
	if len(s.Address) != 4 || s.Flags != flagSched1|flagHashed || s.Stats.Connections != 10 {
		t.Errorf("service read back as address %v flags %#x connections %d", []byte(s.Address), s.Flags, s.Stats.Connections)
	}
	dests, err := k.GetDestinations(s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dests {
		got = append(got, fmt.Sprintf("%s w%d a%d i%d c%d", d.Address, d.Weight, d.ActiveConnections, d.InactiveConnections, d.Stats.Connections))
	}
	want := []string{"192.0.2.2 w1 a0 i0 c0", "192.0.2.1 w1 a3 i4 c10"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("destinations (-got +want):\n%s", diff)
	}
	missing, err := k.GetDestinations(TCPService("198.51.100.9", "mh", 0))
	if err != nil || len(missing) != 0 {
		t.Errorf("destinations of a missing service: %v, %v; want none and no error", missing, err)
	}
	k.Close()
	if _, err := k.GetServices(); !errors.Is(err, unix.EBADF) {
		t.Errorf("after Close: error %v, want EBADF", err)
	}
}
