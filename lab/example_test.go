package lab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"time"

	"github.com/lab-lb/lab/lab"
)

func ExampleFamilyOf() {
	for _, a := range []string{"198.51.100.1", "2001:db8:100::1"} {
		fmt.Println(a, lab.FamilyOf(netip.MustParseAddr(a)))
	}
	// Output:
	// 198.51.100.1 IPv4
	// 2001:db8:100::1 IPv6
}

// A topology file is read without a lab: its nodes by role, with their
// addresses, and its VIPs.
func ExampleLoadTopology() {
	t, err := lab.LoadTopology("../topologies/minimal.yaml")
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range t.NodesByRole(lab.RoleLB4) {
		fmt.Println(n.Name, n.Interfaces[0].Name, n.Interfaces[0].Addresses)
	}
	for _, v := range t.VIPs {
		fmt.Println(v.Name, v.AddrPort(), v.Scheduler)
	}
	// Output:
	// lb4-1 infra [192.0.2.130/25 2001:db8:0:2::2/64]
	// lb4-2 infra [192.0.2.131/25 2001:db8:0:2::3/64]
	// www 198.51.100.1:80 mh
	// www [2001:db8:100::1]:80 mh
}

// A scenario file is checked against its topology without a lab, as `lab
// test --check` does in a pull request.
func ExampleCheckScenario() {
	s, err := lab.CheckScenario("../testdata/scenarios/lb4-crash.yaml")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Name, "on", s.Topology, "with", s.Load.Workers, "workers")
	for _, st := range s.Steps {
		fmt.Printf("line %d: %s\n", st.Line, st.Label)
	}
	fmt.Println(s.Assertions)
	// Output:
	// lb4-crash on ../topologies/minimal.yaml with 40 workers
	// line 11: load start
	// line 12: sleep 10s
	// line 13: kill lb4-2
	// line 14: sleep 20s
	// line 15: load stop
	// line 16: revive lb4-2
	// line 17: wait converged
	// [broken <= 0 [scheduler mh]]
}

// Plan tells what a lab would be made of, without root.
func ExamplePlan() {
	p, err := lab.Plan("../topologies/minimal.yaml", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Lab, len(p.Namespaces), "namespaces")
	for _, v := range p.VIPs {
		fmt.Println(v.Name, v.Names)
	}
	// Output:
	// minimal 9 namespaces
	// www [www.example.org.]
	// www [www.example.org.]
}

// A lab is brought up from a topology file and taken down after. (Go
// tests use labtest.Up, which does both and skips where no lab can run.)
func ExampleUp() {
	ctx := context.Background()
	l, err := lab.Up(ctx, "topologies/minimal.yaml", lab.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Down(context.Background())
	st, err := l.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range st.Nodes {
		fmt.Println(n.Name, n.Role, n.Agent.State, n.Agent.Ready)
	}
}

// A load runs while an LB4 is killed; its report counts, per VIP, what
// broke.
func ExampleLab_StartLoad() {
	ctx := context.Background()
	l, err := lab.Open("minimal")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	ld, err := l.StartLoad(ctx, lab.LoadConfig{Workers: 40})
	if err != nil {
		log.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := l.Kill(ctx, "lb4-2"); err != nil {
		log.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	rep, err := ld.Stop(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for target, c := range rep.ByTarget() {
		fmt.Printf("%s: %d of %d broken\n", target, c.Broken, c.Total)
	}
	_ = rep.WriteText(os.Stdout)
}

// The event log tells what the lab did: here, when each router changed
// its route to a VIP.
func ExampleLab_Events() {
	l, err := lab.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	evs, err := l.Events(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == lab.EventRoute {
			fmt.Println(e.Time.Format(time.TimeOnly), e.Node, e.Route.Prefix, len(e.Route.NextHops), "next hops")
		}
	}
}
