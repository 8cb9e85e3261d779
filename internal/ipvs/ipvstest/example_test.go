package ipvstest_test

import (
	"fmt"
	"net/netip"

	"github.com/lab-lb/lab/internal/ipvs"
	"github.com/lab-lb/lab/internal/ipvs/ipvstest"
)

var _ ipvs.Handle = (*ipvstest.Kernel)(nil)

// A table over the in-memory kernel: the real Apply, whose destination
// order and last weights the kernel's state shows.
func Example() {
	k := ipvstest.NewKernel()
	tbl := ipvs.NewTable(k)
	vip := ipvs.Service{Address: netip.MustParseAddr("198.51.100.1"), Port: 80, Protocol: ipvs.ProtocolTCP, Scheduler: ipvs.SchedulerMH}
	for _, weights := range [][2]int{{1, 1}, {1, 0}} {
		_, err := tbl.Apply([]ipvs.Desired{{Service: vip, Destinations: []ipvs.Destination{
			{Address: netip.MustParseAddr("192.0.2.139"), Weight: weights[0]},
			{Address: netip.MustParseAddr("192.0.2.140"), Weight: weights[1]},
		}}})
		if err != nil {
			fmt.Println(err)
		}
	}
	for _, s := range k.State() {
		fmt.Println(s.Key, s.Scheduler)
		for _, d := range s.Dests {
			fmt.Printf("  %s weight %d last weight %d\n", d.Addr, d.Weight, d.LastWeight)
		}
	}
	// Output:
	// 2/6/198.51.100.1:80 mh
	//   192.0.2.139:80 weight 1 last weight 1
	//   192.0.2.140:80 weight 0 last weight 1
}
