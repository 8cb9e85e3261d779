package lab_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

// dnsBound is how long after its withdrawal a VIP may stay in the answers
// of the services lab's name server: fall (2) checks 1 s apart, each given
// 500 ms, plus one interval of slack for a check in flight.
const dnsBound = 3500 * time.Millisecond

// TestE2EDNS brings up the services lab and asks its name server, through
// a client's /etc/resolv.conf, as a program of the node would: www answers
// with both VIPs in both families, www1 with mh-1's; lab curl reaches a
// backend by name; when every LB4 withdraws mh-1 it leaves the answers of
// www (and www1 answers nothing) within dnsBound, and comes back once put
// back.
func TestE2EDNS(t *testing.T) {
	const name = "e2e-dns"
	requireE2E(t)
	_ = lab.Down(context.Background(), name, nil)
	checkDNSTier(t, up(t, "../topologies/services.yaml", name))
}

// checkDNSTier checks the DNS tier of l, a lab of topologies/services.yaml
// (TestE2EDNS in the VM, TestE2ENative natively).
func checkDNSTier(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx := context.Background()

	lookup := func(host string) ([]netip.Addr, error) {
		out, code := execOut(t, l, "client1", "getent", "ahosts", host)
		if code != 0 {
			return nil, fmt.Errorf("getent ahosts %s: exit %d %s", host, code, out)
		}
		var addrs []netip.Addr
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[1] == "STREAM" {
				addrs = append(addrs, netip.MustParseAddr(f[0]))
			}
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		return addrs, nil
	}
	// www1 names mh-1, www2 names mh-2, www both.
	www1 := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:100::1")}
	www2 := []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:100::2")}
	all := append(slices.Clone(www1), www2...)
	slices.SortFunc(all, netip.Addr.Compare)
	want := func(host string, addrs []netip.Addr) func() error {
		return func() error {
			got, err := lookup(host)
			if err != nil && len(addrs) > 0 {
				return err
			}
			if !slices.Equal(got, addrs) {
				return fmt.Errorf("%s answers %v, want %v", host, got, addrs)
			}
			return nil
		}
	}
	if err := want("www.example.org", all)(); err != nil {
		t.Fatal(err)
	}
	if err := want("www1", www1)(); err != nil { // the search domain of resolv.conf
		t.Fatal(err)
	}
	// dig (bind9-dnsutils), as a person would, at the server of resolv.conf.
	if out, code := execOut(t, l, "client1", "dig", "+short", "www1.example.org", "A"); code != 0 || strings.TrimSpace(out) != "198.51.100.1" {
		t.Errorf("dig +short www1.example.org A: exit %d %q, want 198.51.100.1", code, out)
	}
	res, err := l.Get(ctx, "client1", "http://www.example.org/", "", 10*time.Second)
	if err != nil || res.Error != "" || res.Status != 200 || !strings.HasPrefix(res.Body, "server-") {
		t.Fatalf("curl by name: %v %+v", err, res)
	}

	start := time.Now()
	if err := l.MaintVIP(ctx, "mh-1", true); err != nil {
		t.Fatalf("maint --vip mh-1 on: %v", err)
	}
	testenv.EventuallyEvery(t, dnsBound+5*time.Second, 100*time.Millisecond, "mh-1 out of the answers", want("www.example.org", www2))
	t.Logf("mh-1 left the answers of www %.2fs after its withdrawal (bound %s)", time.Since(start).Seconds(), dnsBound)
	if err := want("www1.example.org", nil)(); err != nil {
		t.Errorf("www1 with its VIP withdrawn: %v", err)
	}

	start = time.Now()
	if err := l.MaintVIP(ctx, "mh-1", false); err != nil {
		t.Fatalf("maint --vip mh-1 off: %v", err)
	}
	testenv.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, "mh-1 back in the answers", want("www.example.org", all))
	t.Logf("mh-1 back in the answers %.2fs after it was put back", time.Since(start).Seconds())
}
