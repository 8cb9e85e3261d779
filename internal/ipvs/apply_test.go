package ipvs

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/ipvs/ipvstest"
	"github.com/lab-lb/lab/internal/testenv"
)

const (
	vip1 = "198.51.100.1"
	vip3 = "198.51.100.3"
	lb71 = "192.0.2.139"
	lb72 = "192.0.2.140"
	lb73 = "192.0.2.141"
	lb74 = "192.0.2.142"
)

func service(addr, sched string, flags ...string) Service {
	return Service{Address: netip.MustParseAddr(addr), Port: 80, Protocol: ProtocolTCP, Scheduler: sched, Flags: flags}
}

func dest(addr string, weight int) Destination {
	return Destination{Address: netip.MustParseAddr(addr), Weight: weight}
}

// lb7s returns weight-1 destinations in the order given.
func lb7s(addrs ...string) []Destination {
	var out []Destination
	for _, a := range addrs {
		out = append(out, dest(a, 1))
	}
	return out
}

func mhService(ds ...Destination) Desired {
	return Desired{Service: service(vip1, SchedulerMH, FlagPort), Destinations: ds}
}

// fstate is the fake state of one tcp/VIP:80 IPv4 service.
func fstate(vip, sched string, flags uint32, ds ...ipvstest.DestState) ipvstest.ServiceState {
	return ipvstest.ServiceState{Key: "2/6/" + vip + ":80", Scheduler: sched, Flags: flags | flagHashed, Dests: ds}
}

// fdest is a tunnel destination on port 80 in the fake state.
func fdest(addr string, weight, lastWeight int) ipvstest.DestState {
	return ipvstest.DestState{Addr: addr + ":80", Weight: weight, LastWeight: lastWeight, Fwd: mobyipvs.ConnFwdTunnel}
}

func lines(changes []Change) []string {
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}

func mustApply(t *testing.T, tbl *Table, want []Desired) []Change {
	t.Helper()
	changes, err := tbl.Apply(want)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return changes
}

func TestApply(t *testing.T) {
	const mhPortFallback = flagSched1 | flagSched2
	cases := []struct {
		name    string
		setup   func(t *testing.T, f *ipvstest.Kernel) // kernel state made outside Apply
		history [][]Desired                            // applied first, changes ignored
		want    []Desired
		changes []string
		state   []ipvstest.ServiceState
	}{
		{
			name: "fresh",
			want: []Desired{mhService(lb7s(lb71, lb72, lb73)...)},
			changes: []string{
				"add service tcp/198.51.100.1:80 mh fallback,port",
				"add destination 192.0.2.141 weight 1 in tcp/198.51.100.1:80: new",
				"add destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: new",
				"add destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: new",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 1, 1), fdest(lb73, 1, 1))},
		},
		{
			name: "fresh with a failed LB7",
			want: []Desired{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1))},
			changes: []string{
				"add service tcp/198.51.100.1:80 mh fallback,port",
				"add destination 192.0.2.141 weight 1 in tcp/198.51.100.1:80: new",
				"add destination 192.0.2.140 weight 0 in tcp/198.51.100.1:80: new, added with weight 1 then set to 0 so that mh gives it its slots",
				"add destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: new",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 0, 1), fdest(lb73, 1, 1))},
		},
		{
			name:    "weight 0 on failure",
			history: [][]Desired{{mhService(lb7s(lb71, lb72, lb73)...)}},
			want:    []Desired{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1))},
			changes: []string{
				"update destination 192.0.2.140 weight 0 in tcp/198.51.100.1:80: weight 1 -> 0",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 0, 1), fdest(lb73, 1, 1))},
		},
		{
			name: "recovery",
			history: [][]Desired{
				{mhService(lb7s(lb71, lb72, lb73)...)},
				{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1))},
			},
			want: []Desired{mhService(lb7s(lb71, lb72, lb73)...)},
			changes: []string{
				"update destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: weight 0 -> 1",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 1, 1), fdest(lb73, 1, 1))},
		},
		{
			name:    "add a destination at the head of the order",
			history: [][]Desired{{mhService(lb7s(lb72, lb73)...)}},
			want:    []Desired{mhService(lb7s(lb71, lb72, lb73)...)},
			changes: []string{
				"add destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: new",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 1, 1), fdest(lb73, 1, 1))},
		},
		{
			name:    "add a destination in the middle of the order",
			history: [][]Desired{{mhService(lb7s(lb71, lb72, lb74)...)}},
			want:    []Desired{mhService(lb7s(lb71, lb72, lb73, lb74)...)},
			changes: []string{
				"delete destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: to re-add it in order",
				"delete destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: to re-add it in order",
				"add destination 192.0.2.141 weight 1 in tcp/198.51.100.1:80: new",
				"add destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: re-added in order",
				"add destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: re-added in order",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 1, 1), fdest(lb73, 1, 1), fdest(lb74, 1, 1))},
		},
		{
			name:    "re-added failed destination keeps its slots",
			history: [][]Desired{{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb74, 1))}},
			want:    []Desired{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1), dest(lb74, 1))},
			changes: []string{
				"delete destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: to re-add it in order",
				"delete destination 192.0.2.140 weight 0 in tcp/198.51.100.1:80: to re-add it in order",
				"add destination 192.0.2.141 weight 1 in tcp/198.51.100.1:80: new",
				"add destination 192.0.2.140 weight 0 in tcp/198.51.100.1:80: re-added in order, added with weight 1 then set to 0 so that mh gives it its slots",
				"add destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: re-added in order",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 0, 1), fdest(lb73, 1, 1), fdest(lb74, 1, 1))},
		},
		{
			name:    "remove a destination",
			history: [][]Desired{{mhService(lb7s(lb71, lb72, lb73)...)}},
			want:    []Desired{mhService(lb7s(lb71, lb73)...)},
			changes: []string{
				"delete destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: not desired",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb73, 1, 1))},
		},
		{
			name:    "scheduler change keeps destinations in place",
			history: [][]Desired{{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1))}},
			want:    []Desired{{Service: service(vip1, SchedulerSH, FlagPort), Destinations: []Destination{dest(lb71, 1), dest(lb72, 0), dest(lb73, 1)}}},
			changes: []string{
				"update service tcp/198.51.100.1:80 sh fallback,port: scheduler mh -> sh",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "sh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 0, 1), fdest(lb73, 1, 1))},
		},
		{
			name:    "scheduler without flags",
			history: [][]Desired{{mhService(lb7s(lb71, lb72)...)}},
			want:    []Desired{{Service: service(vip1, SchedulerWLC), Destinations: lb7s(lb71, lb72)}},
			changes: []string{
				"update service tcp/198.51.100.1:80 wlc: scheduler mh -> wlc, flags fallback,port -> none",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "wlc", 0, fdest(lb71, 1, 1), fdest(lb72, 1, 1))},
		},
		{
			name:    "flags change",
			history: [][]Desired{{mhService(lb7s(lb71)...)}},
			want:    []Desired{{Service: service(vip1, SchedulerMH), Destinations: lb7s(lb71)}},
			changes: []string{
				"update service tcp/198.51.100.1:80 mh fallback: flags fallback,port -> fallback",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", flagSched1, fdest(lb71, 1, 1))},
		},
		{
			name: "services not desired are deleted",
			history: [][]Desired{{
				mhService(lb7s(lb71, lb72)...),
				{Service: service(vip3, SchedulerSH, FlagPort), Destinations: lb7s(lb71, lb72)},
			}},
			want: []Desired{{Service: service(vip3, SchedulerSH, FlagPort), Destinations: lb7s(lb71, lb72)}},
			changes: []string{
				"delete service tcp/198.51.100.1:80: not desired",
			},
			state: []ipvstest.ServiceState{fstate(vip3, "sh", flagSched1|flagSched2, fdest(lb71, 1, 1), fdest(lb72, 1, 1))},
		},
		{
			name: "two services and IPv6",
			want: []Desired{
				mhService(lb7s(lb71, lb72)...),
				{Service: service("2001:db8::198.51.100.1", SchedulerMH, FlagPort), Destinations: lb7s("2001:db8::139")},
			},
			changes: []string{
				"add service tcp/198.51.100.1:80 mh fallback,port",
				"add destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: new",
				"add destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: new",
				"add service tcp/[2001:db8::c633:6401]:80 mh fallback,port",
				"add destination 2001:db8::139 weight 1 in tcp/[2001:db8::c633:6401]:80: new",
			},
			state: []ipvstest.ServiceState{
				{Key: "10/6/[2001:db8::c633:6401]:80", Scheduler: "mh", Flags: mhPortFallback | flagHashed, Dests: []ipvstest.DestState{
					{Addr: "[2001:db8::139]:80", Weight: 1, LastWeight: 1, Fwd: mobyipvs.ConnFwdTunnel},
				}},
				fstate(vip1, "mh", mhPortFallback, fdest(lb71, 1, 1), fdest(lb72, 1, 1)),
			},
		},
		{
			name: "kernel changes made elsewhere are repaired",
			setup: func(t *testing.T, f *ipvstest.Kernel) {
				t.Helper()
				svc := ipvstest.TCPService(vip1, "rr", flagPersistent)
				svc.Timeout = 300
				other := ipvstest.TCPService("203.0.113.9", "rr", 0)
				fw := &mobyipvs.Service{FWMark: 7, AddressFamily: unix.AF_INET, SchedName: "rr"}
				wrongPort := ipvstest.TunnelDest(lb71, 1)
				wrongPort.Port = 8080
				desiredWrongPort := ipvstest.TunnelDest(lb73, 1)
				desiredWrongPort.Port = 8080
				masq := ipvstest.TunnelDest(lb72, 5)
				masq.ConnectionFlags = mobyipvs.ConnFwdMasq
				for _, err := range []error{
					f.NewService(svc), f.NewService(other), f.NewService(fw),
					f.NewDestination(svc, ipvstest.TunnelDest(lb73, 1)),
					f.NewDestination(svc, masq),
					f.NewDestination(svc, wrongPort),
					f.NewDestination(svc, ipvstest.TunnelDest(lb74, 1)),
					f.NewDestination(svc, desiredWrongPort),
				} {
					if err != nil {
						t.Fatal(err)
					}
				}
			},
			want: []Desired{mhService(lb7s(lb72, lb73)...)},
			changes: []string{
				"delete service tcp/203.0.113.9:80: not desired",
				"delete service fwmark:7: not desired",
				"update service tcp/198.51.100.1:80 mh fallback,port: scheduler rr -> mh, flags persistent -> fallback,port, timeout 300 -> 0",
				"delete destination 192.0.2.141 weight 1 in tcp/198.51.100.1:80: port 8080 is not the service's",
				"delete destination 192.0.2.142 weight 1 in tcp/198.51.100.1:80: not desired",
				"delete destination 192.0.2.139 weight 1 in tcp/198.51.100.1:80: not desired",
				"update destination 192.0.2.140 weight 1 in tcp/198.51.100.1:80: weight 5 -> 1, forwarding masq -> tunnel",
			},
			state: []ipvstest.ServiceState{fstate(vip1, "mh", mhPortFallback, fdest(lb72, 1, 1), fdest(lb73, 1, 1))},
		},
		{
			name:    "empty desired state clears the table",
			history: [][]Desired{{mhService(lb7s(lb71)...)}},
			want:    nil,
			changes: []string{"delete service tcp/198.51.100.1:80: not desired"},
			state:   nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := ipvstest.NewKernel()
			if tc.setup != nil {
				tc.setup(t, f)
			}
			tbl := NewTable(f)
			for _, h := range tc.history {
				mustApply(t, tbl, h)
			}
			changes := mustApply(t, tbl, tc.want)
			if diff := cmp.Diff(lines(changes), tc.changes); diff != "" {
				t.Errorf("changes (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(f.State(), tc.state); diff != "" {
				t.Errorf("state (-got +want):\n%s", diff)
			}
			// Idempotence: the same desired state again changes nothing.
			if again := mustApply(t, tbl, tc.want); len(again) != 0 {
				t.Errorf("second Apply changed:\n%s", strings.Join(lines(again), "\n"))
			}
			if diff := cmp.Diff(f.State(), tc.state); diff != "" {
				t.Errorf("state after second Apply (-got +want):\n%s", diff)
			}
		})
	}
}

// TestApplyOrderIndependentOfHistory checks that an LB4 that saw LB7s come,
// go and fail ends with the same kernel lists, weights and last weights
// (hence the same mh tables) as a fresh LB4 given the same desired state.
func TestApplyOrderIndependentOfHistory(t *testing.T) {
	final := []Desired{
		mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1), dest(lb74, 1)),
		{Service: service(vip3, SchedulerSH, FlagPort), Destinations: []Destination{dest(lb71, 1), dest(lb72, 1), dest(lb73, 0), dest(lb74, 1)}},
	}
	cases := []struct {
		name    string
		history [][]Desired
	}{
		{name: "fresh"},
		{
			name: "LB7s added one by one in reverse",
			history: [][]Desired{
				{mhService(lb7s(lb74)...)},
				{mhService(lb7s(lb73, lb74)...)},
				{mhService(lb7s(lb72, lb73, lb74)...)},
			},
		},
		{
			name: "LB7s added one by one in order",
			history: [][]Desired{
				{mhService(lb7s(lb71)...)},
				{mhService(lb7s(lb71, lb72)...)},
				{mhService(lb7s(lb71, lb72, lb73)...)},
			},
		},
		{
			name: "LB7s come and go",
			history: [][]Desired{
				{mhService(lb7s(lb71, lb72, lb73, lb74)...)},
				{mhService(lb7s(lb71, lb74)...)},
				{mhService(lb7s(lb72, lb74)...), {Service: service(vip3, SchedulerMH), Destinations: lb7s(lb74, lb73)}},
				{mhService(dest(lb73, 0), dest(lb71, 1))},
			},
		},
		{
			name:    "LB7 fails after being healthy",
			history: [][]Desired{{mhService(lb7s(lb71, lb72, lb73, lb74)...)}},
		},
		{
			name: "failed LB7 removed and re-added",
			history: [][]Desired{
				{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1), dest(lb74, 1))},
				{mhService(lb7s(lb71, lb73, lb74)...)},
			},
		},
	}
	fresh := ipvstest.NewKernel()
	mustApply(t, NewTable(fresh), final)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := ipvstest.NewKernel()
			tbl := NewTable(f)
			for _, h := range tc.history {
				mustApply(t, tbl, h)
			}
			mustApply(t, tbl, final)
			if diff := cmp.Diff(f.State(), fresh.State()); diff != "" {
				t.Errorf("state differs from a fresh LB4's (-got +want):\n%s", diff)
			}
		})
	}

	t.Run("random histories", func(t *testing.T) {
		addrs := []string{lb71, lb72, lb73, lb74, "192.0.2.143", "192.0.2.144"}
		rng := rand.New(rand.NewPCG(1, 2))
		for range 200 {
			f := ipvstest.NewKernel()
			tbl := NewTable(f)
			var trail []string
			for range 1 + rng.IntN(6) {
				var ds []Destination
				for _, i := range rng.Perm(len(addrs))[:rng.IntN(len(addrs)+1)] {
					// The lab's weights: 1, or 0 for a failed LB7.
					ds = append(ds, dest(addrs[i], rng.IntN(2)))
				}
				want := []Desired{{Service: service(vip1, []string{SchedulerMH, SchedulerSH}[rng.IntN(2)], FlagPort), Destinations: ds}}
				trail = append(trail, strings.Join(lines(mustApply(t, tbl, want)), "\n"))
			}
			mustApply(t, tbl, final)
			if diff := cmp.Diff(f.State(), fresh.State()); diff != "" {
				t.Fatalf("after history\n%s\nstate differs from a fresh LB4's (-got +want):\n%s", strings.Join(trail, "\n--\n"), diff)
			}
		}
	})
}

func TestApplyInvalid(t *testing.T) {
	cases := []struct {
		name string
		want []Desired
		errs []string
	}{
		{
			name: "service fields",
			want: []Desired{{Service: Service{Protocol: "icmp", Scheduler: "lc", Flags: []string{"sticky"}}}},
			errs: []string{"missing address", "port 0", `unknown protocol "icmp"`, `unknown scheduler "lc"`, `unknown flag "sticky"`},
		},
		{
			name: "flags need mh or sh",
			want: []Desired{{Service: service(vip1, SchedulerRR, FlagPort)}},
			errs: []string{`flag "port" needs scheduler mh or sh, not "rr"`},
		},
		{
			name: "duplicate service",
			want: []Desired{mhService(), mhService()},
			errs: []string{"service #2 (tcp/198.51.100.1:80): duplicate service"},
		},
		{
			name: "destinations",
			want: []Desired{mhService(dest(lb71, 1), dest(lb71, 1), dest("2001:db8::1", 1), dest(lb72, -1), dest(lb73, 65536), Destination{}, dest("0.0.0.0", 1))},
			errs: []string{
				"destination 192.0.2.139: duplicate",
				"destination 2001:db8::1: address family differs",
				"destination 192.0.2.140: weight -1 out of range",
				"destination 192.0.2.141: weight 65536 out of range",
				"destination #6: missing address",
				"destination 0.0.0.0: unspecified address",
			},
		},
		{
			name: "every service is reported",
			want: []Desired{{Service: service(vip1, "x")}, {Service: service(vip3, "y")}},
			errs: []string{`service #1 (tcp/198.51.100.1:80): unknown scheduler "x"`, `service #2 (tcp/198.51.100.3:80): unknown scheduler "y"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := ipvstest.NewKernel()
			changes, err := NewTable(f).Apply(tc.want)
			if err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			for _, e := range tc.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("error %q does not mention %q", err, e)
				}
			}
			if len(changes) != 0 || len(f.State()) != 0 {
				t.Errorf("invalid state touched the kernel: changes %v, state %v", changes, f.State())
			}
		})
	}
}

func TestApplyKernelError(t *testing.T) {
	want := []Desired{mhService(lb7s(lb71, lb72, lb73)...)}
	f := ipvstest.NewKernel()
	tbl := NewTable(f)
	f.FailNext("NewDestination", unix.ENOMEM)
	changes, err := tbl.Apply(want)
	if !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("Apply error %v, want ENOMEM", err)
	}
	if !strings.Contains(err.Error(), "add destination 192.0.2.141 to tcp/198.51.100.1:80") {
		t.Errorf("error %q does not name the action", err)
	}
	if diff := cmp.Diff(lines(changes), []string{"add service tcp/198.51.100.1:80 mh fallback,port"}); diff != "" {
		t.Errorf("changes before the error (-got +want):\n%s", diff)
	}
	mustApply(t, tbl, want)
	wantState := []ipvstest.ServiceState{fstate(vip1, "mh", flagSched1|flagSched2, fdest(lb71, 1, 1), fdest(lb72, 1, 1), fdest(lb73, 1, 1))}
	if diff := cmp.Diff(f.State(), wantState); diff != "" {
		t.Errorf("state after retry (-got +want):\n%s", diff)
	}

	t.Run("already gone is success", func(t *testing.T) {
		f.FailNext("DelDestination", unix.ENOENT)
		changes, err := tbl.Apply([]Desired{mhService(lb7s(lb71)...)})
		if err != nil {
			t.Fatalf("Apply with a destination already gone: %v", err)
		}
		if len(changes) != 2 {
			t.Errorf("changes %q, want two deletes", lines(changes))
		}
		f.FailNext("DelService", unix.ESRCH)
		changes, err = tbl.Apply(nil)
		if err != nil {
			t.Fatalf("Apply with a service already gone: %v", err)
		}
		if len(changes) != 1 {
			t.Errorf("changes %q, want one delete", lines(changes))
		}
	})

	t.Run("closed", func(t *testing.T) {
		if err := tbl.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := tbl.Apply(want); !errors.Is(err, errClosed) {
			t.Errorf("Apply after Close: %v, want %v", err, errClosed)
		}
		if _, err := tbl.Dump(); !errors.Is(err, errClosed) {
			t.Errorf("Dump after Close: %v, want %v", err, errClosed)
		}
		if !f.Closed() {
			t.Error("Close did not close the handle")
		}
	})
}

func TestDump(t *testing.T) {
	f := ipvstest.NewKernel()
	tbl := NewTable(f)
	mustApply(t, tbl, []Desired{
		{Service: service(vip3, SchedulerWLC), Destinations: lb7s(lb72)},
		mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1)),
	})
	if err := f.SetConns(vip1+":80", lb71, 5, 2, 40); err != nil {
		t.Fatal(err)
	}
	if err := f.SetConns(vip1+":80", lb73, 1, 0, 9); err != nil {
		t.Fatal(err)
	}
	// A destination added behind Apply's back goes to the head.
	if err := f.NewDestination(ipvstest.TCPService(vip1, "mh", 0), ipvstest.TunnelDest(lb74, 3)); err != nil {
		t.Fatal(err)
	}

	got, err := tbl.Dump()
	if err != nil {
		t.Fatal(err)
	}
	want := []Desired{
		{
			Service: service(vip1, SchedulerMH, FlagFallback, FlagPort),
			Destinations: []Destination{
				dest(lb74, 3),
				{Address: netip.MustParseAddr(lb71), Weight: 1, Stats: Stats{ActiveConns: 5, InactiveConns: 2, Connections: 40}},
				dest(lb72, 0),
				{Address: netip.MustParseAddr(lb73), Weight: 1, Stats: Stats{ActiveConns: 1, Connections: 9}},
			},
			Stats: Stats{ActiveConns: 6, InactiveConns: 2, Connections: 49},
		},
		{Service: service(vip3, SchedulerWLC), Destinations: lb7s(lb72)},
	}
	if diff := cmp.Diff(got, want, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Dump (-got +want):\n%s", diff)
	}
}

func TestFlagNames(t *testing.T) {
	cases := []struct {
		name  string
		flags uint32
		want  []string
	}{
		{name: "none", flags: 0},
		{name: "hashed is masked", flags: flagHashed},
		{name: "mh flags", flags: flagHashed | flagSched1 | flagSched2, want: []string{"fallback", "port"}},
		{name: "others", flags: flagPersistent | flagOnePacket | 0x0020 | 0x1000, want: []string{"0x0020", "0x1000", "onepacket", "persistent"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(flagNames(tc.flags), tc.want); diff != "" {
				t.Errorf("flagNames(%#x) (-got +want):\n%s", tc.flags, diff)
			}
		})
	}
}

// TestChangeLog pins the event-log lines of a history in which LB7s fail,
// recover, come and go.
func TestChangeLog(t *testing.T) {
	steps := []struct {
		name string
		want []Desired
	}{
		{"start", []Desired{mhService(lb7s(lb71, lb72, lb74)...)}},
		{"lb7-2 fails", []Desired{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb74, 1))}},
		{"lb7-3 joins", []Desired{mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1), dest(lb74, 1))}},
		{"lb7-2 recovers, lb7-1 leaves", []Desired{mhService(lb7s(lb72, lb73, lb74)...)}},
		{"mh to sh", []Desired{{Service: service(vip1, SchedulerSH, FlagPort), Destinations: lb7s(lb72, lb73, lb74)}}},
		{"stop", nil},
	}
	var b strings.Builder
	tbl := NewTable(ipvstest.NewKernel())
	for _, s := range steps {
		b.WriteString("# " + s.name + "\n")
		for _, l := range lines(mustApply(t, tbl, s.want)) {
			b.WriteString(l + "\n")
		}
	}
	testenv.Golden(t, filepath.Join("testdata", "changelog.golden"), []byte(b.String()))
}
