package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Apply makes the namespace's IPVS configuration equal to want, following
// the rules of the package documentation, and returns the changes it made.
// A second Apply with the same want changes nothing. On a kernel error it
// returns the changes made so far with the error.
func (t *Table) Apply(want []Desired) ([]Change, error) {
	ws, err := normalise(want)
	if err != nil {
		return nil, fmt.Errorf("invalid ipvs state: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h == nil {
		return nil, errClosed
	}
	r := reconciler{h: t.h}
	err = r.apply(ws)
	return r.changes, err
}

// reconciler carries one Apply's changes.
type reconciler struct {
	h       Handle
	changes []Change
}

func (r *reconciler) record(c Change) {
	r.changes = append(r.changes, c)
}

func (r *reconciler) apply(ws []wantService) error {
	current, err := listServices(r.h)
	if err != nil {
		return err
	}
	wanted := make(map[svcKey]bool, len(ws))
	for _, w := range ws {
		wanted[w.key] = true
	}
	existing := make(map[svcKey]*mobyipvs.Service, len(current))
	for _, ks := range current {
		if wanted[ks.key] {
			existing[ks.key] = ks.raw
			continue
		}
		if err := r.h.DelService(ks.raw); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete service %s: %w", fromMobyService(ks.raw), err)
		}
		r.record(Change{Action: ActionDelete, Service: fromMobyService(ks.raw), Detail: "not desired"})
	}
	for i := range ws {
		if err := r.applyService(&ws[i], existing[ws[i].key]); err != nil {
			return err
		}
	}
	return nil
}

// applyService creates or updates one service, then its destinations.
func (r *reconciler) applyService(w *wantService, cur *mobyipvs.Service) error {
	ms := w.moby()
	var dests []*mobyipvs.Destination
	if cur == nil {
		if err := r.h.NewService(ms); err != nil {
			return fmt.Errorf("add service %s: %w", w.svc, err)
		}
		r.record(Change{Action: ActionAdd, Service: w.svc})
	} else {
		if diff := serviceDiff(cur, ms); diff != "" {
			if err := r.h.UpdateService(ms); err != nil {
				return fmt.Errorf("update service %s (%s): %w", w.svc, diff, err)
			}
			r.record(Change{Action: ActionUpdate, Service: w.svc, Detail: diff})
		}
		var err error
		dests, err = r.h.GetDestinations(ms)
		if err != nil {
			return fmt.Errorf("list destinations of %s: %w", w.svc, err)
		}
	}
	return r.applyDestinations(w, ms, dests)
}

// serviceDiff describes how the kernel service differs from the desired
// one, or returns "" when it does not.
func serviceDiff(cur, want *mobyipvs.Service) string {
	var diffs []string
	if cur.SchedName != want.SchedName {
		diffs = append(diffs, "scheduler "+cur.SchedName+" -> "+want.SchedName)
	}
	if cur.Flags&^flagHashed != want.Flags {
		diffs = append(diffs, "flags "+flagList(cur.Flags)+" -> "+flagList(want.Flags))
	}
	if cur.Timeout != want.Timeout {
		diffs = append(diffs, fmt.Sprintf("timeout %d -> %d", cur.Timeout, want.Timeout))
	}
	return strings.Join(diffs, ", ")
}

func flagList(flags uint32) string {
	names := flagNames(flags)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// destinationDiff describes how a kernel destination differs from the
// desired one, or returns "" when it does not.
func destinationDiff(cur, want *mobyipvs.Destination) string {
	var diffs []string
	if cur.Weight != want.Weight {
		diffs = append(diffs, "weight "+strconv.Itoa(cur.Weight)+" -> "+strconv.Itoa(want.Weight))
	}
	if m := cur.ConnectionFlags & mobyipvs.ConnFwdMask; m != want.ConnectionFlags {
		diffs = append(diffs, "forwarding "+forwardingName(m)+" -> "+forwardingName(want.ConnectionFlags))
	}
	if cur.UpperThreshold != want.UpperThreshold || cur.LowerThreshold != want.LowerThreshold {
		diffs = append(diffs, fmt.Sprintf("thresholds %d/%d -> %d/%d",
			cur.LowerThreshold, cur.UpperThreshold, want.LowerThreshold, want.UpperThreshold))
	}
	return strings.Join(diffs, ", ")
}

func forwardingName(f uint32) string {
	switch f {
	case mobyipvs.ConnFwdMasq:
		return "masq"
	case mobyipvs.ConnFwdLocalNode:
		return "local"
	case mobyipvs.ConnFwdTunnel:
		return "tunnel"
	case mobyipvs.ConnFwdDirectRoute:
		return "route"
	case mobyipvs.ConnFwdBypass:
		return "bypass"
	}
	return strconv.FormatUint(uint64(f), 10)
}

// applyDestinations makes the kernel destination list of a service, read
// from its head, equal to the desired order (see the package
// documentation). cur is the kernel list, head first.
func (r *reconciler) applyDestinations(w *wantService, ms *mobyipvs.Service, cur []*mobyipvs.Destination) error {
	desired := make(map[netip.Addr]bool, len(w.dests))
	for _, d := range w.dests {
		desired[d.Address] = true
	}

	// Delete what is not desired; the others keep their relative order.
	var kept []*mobyipvs.Destination
	keptAt := map[netip.Addr]*mobyipvs.Destination{}
	for _, kd := range cur {
		a := addrOf(kd.Address)
		if desired[a] && kd.Port == w.key.port && keptAt[a] == nil {
			kept = append(kept, kd)
			keptAt[a] = kd
			continue
		}
		why := "not desired"
		if desired[a] {
			why = "port " + strconv.Itoa(int(kd.Port)) + " is not the service's"
		}
		if err := r.deleteDestination(w, ms, kd, why); err != nil {
			return err
		}
	}

	// The longest tail of the desired order that kept holds in that order
	// stays in place; everything before it is (re-)added.
	first := len(w.dests) // index of the first destination that stays
	for j := len(kept) - 1; j >= 0 && first > 0; j-- {
		if addrOf(kept[j].Address) == w.dests[first-1].Address {
			first--
		}
	}
	stays := make(map[netip.Addr]bool, len(w.dests)-first)
	for _, d := range w.dests[first:] {
		stays[d.Address] = true
	}

	// Update the destinations that stay, failures included.
	for _, d := range w.dests[first:] {
		md := w.mobyDestination(d.Address, d.Weight)
		diff := destinationDiff(keptAt[d.Address], md)
		if diff == "" {
			continue
		}
		if err := r.h.UpdateDestination(ms, md); err != nil {
			return fmt.Errorf("update destination %s of %s (%s): %w", d.Address, w.svc, diff, err)
		}
		r.record(Change{Action: ActionUpdate, Service: w.svc, Destination: &Destination{Address: d.Address, Weight: d.Weight}, Detail: diff})
	}

	// Delete the destinations that must move, then add in reverse order so
	// that the first desired destination ends at the head.
	for _, kd := range kept {
		if !stays[addrOf(kd.Address)] {
			if err := r.deleteDestination(w, ms, kd, "to re-add it in order"); err != nil {
				return err
			}
		}
	}
	for i := first - 1; i >= 0; i-- {
		d := w.dests[i]
		detail := "new"
		if keptAt[d.Address] != nil {
			detail = "re-added in order"
		}
		weight := d.Weight
		if weight == 0 {
			// The kernel sets last_weight on add, even to 0, and mh gives
			// no slot to a destination whose last_weight is 0.
			weight = 1
			detail += ", added with weight 1 then set to 0 so that mh gives it its slots"
		}
		if err := r.h.NewDestination(ms, w.mobyDestination(d.Address, weight)); err != nil {
			return fmt.Errorf("add destination %s to %s: %w", d.Address, w.svc, err)
		}
		if weight != d.Weight {
			if err := r.h.UpdateDestination(ms, w.mobyDestination(d.Address, d.Weight)); err != nil {
				return fmt.Errorf("set weight of new destination %s of %s to %d: %w", d.Address, w.svc, d.Weight, err)
			}
		}
		r.record(Change{Action: ActionAdd, Service: w.svc, Destination: &Destination{Address: d.Address, Weight: d.Weight}, Detail: detail})
	}
	return nil
}

func (r *reconciler) deleteDestination(w *wantService, ms *mobyipvs.Service, kd *mobyipvs.Destination, why string) error {
	if err := r.h.DelDestination(ms, kd); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete destination %s of %s: %w", addrOf(kd.Address), w.svc, err)
	}
	d := fromMobyDestination(kd)
	d.Stats = Stats{}
	r.record(Change{Action: ActionDelete, Service: w.svc, Destination: &d, Detail: why})
	return nil
}
