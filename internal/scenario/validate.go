package scenario

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/lab-lb/lab/internal/agentcheck"
	"github.com/lab-lb/lab/internal/traffic"
	"github.com/lab-lb/lab/internal/yamlerr"
)

var (
	scenarioNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	// nodeNameRE is the topology's rule for node and VIP names.
	nodeNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	// vipNameRE is a VIP's name, or its label when the name has a VIP of
	// each family (www/v6).
	vipNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*(/v[46])?$`)
	// dnsNameRE is a service name: labels of letters, digits and dashes,
	// an optional final dot.
	dnsNameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$`)
)

// maxNameLen bounds scenario, node and VIP names.
const maxNameLen = 63

// validator checks the meaning of a scenario whose shape the parser has
// checked (or that was built in code), reporting to c.
type validator struct {
	c *collector
	s *Scenario
	// labels maps each step label to the indexes of its steps.
	labels map[string][]int
}

// validate reports every problem of s, which has its defaults filled.
func validate(c *collector, s *Scenario) {
	v := &validator{c: c, s: s, labels: map[string][]int{}}
	switch {
	case s.Name == "":
		c.field("name", "missing (want a name such as lb4-crash)")
	case len(s.Name) > maxNameLen || !scenarioNameRE.MatchString(s.Name):
		c.field("name", "%q: want lower-case letters, digits and dashes, at most %d", s.Name, maxNameLen)
	}
	v.load()
	if len(s.Steps) == 0 {
		c.field("steps", "no step: a scenario needs at least one")
	}
	for i := range s.Steps {
		v.labels[s.Steps[i].Label] = append(v.labels[s.Steps[i].Label], i)
	}
	started, stopped := -1, -1
	for i, st := range s.Steps {
		path := fmt.Sprintf("steps[%d]", i)
		switch st.Kind {
		case KindLoadStart:
			if started >= 0 {
				c.field(path, "the load is started twice (first in steps[%d])", started)
			}
			started = i
		case KindLoadStop:
			switch {
			case started < 0:
				c.field(path, "load stop before any load start")
			case stopped >= 0:
				c.field(path, "the load is stopped twice (first in steps[%d])", stopped)
			default:
				stopped = i
			}
		default:
			v.step(path, st)
		}
		if st.Label == "" {
			c.field(path+".label", "empty label")
		}
	}
	if started < 0 && !s.Load.isZero() {
		c.field("load", "no step starts this load: add a step \"load: start\"")
	}
	for i, a := range s.Assert {
		v.assertion(fmt.Sprintf("assert[%d]", i), a, started >= 0)
	}
}

func (v *validator) load() {
	l := v.s.Load
	switch l.Mode {
	case "", string(traffic.ModeDownloads):
		if l.Rate != 0 || l.KeepAlive {
			v.c.field("load.rate", "rate and keepalive apply to a request load: set mode: requests")
		}
	case string(traffic.ModeRequests):
		if l.Rate < 0 {
			v.c.field("load.rate", "%g must not be negative", l.Rate)
		}
	default:
		v.c.field("load.mode", "%q: want %s or %s", l.Mode, traffic.ModeDownloads, traffic.ModeRequests)
	}
	if l.From != "" {
		v.name("load.from", l.From)
	}
	seen := map[string]bool{}
	for i, n := range l.VIPs {
		path := fmt.Sprintf("load.vips[%d]", i)
		v.vipName(path, n)
		if seen[n] {
			v.c.field(path, "vip %s is listed twice", n)
		}
		seen[n] = true
	}
	for i, n := range l.Names {
		if !dnsNameRE.MatchString(strings.ToLower(n)) || len(n) > 253 {
			v.c.field(fmt.Sprintf("load.names[%d]", i), "%q is not a DNS name (such as www, or www.example.org)", n)
		}
	}
	if l.Workers < 0 {
		v.c.field("load.workers", "%d must not be negative", l.Workers)
	}
	if l.Path != "" && (!strings.HasPrefix(l.Path, "/") || strings.ContainsAny(l.Path, " \t\r\n")) {
		v.c.field("load.path", "%q: want an absolute path without blanks, such as /10M", l.Path)
	}
	if l.ReadSize < 0 {
		v.c.field("load.read-size", "%d must not be negative", l.ReadSize)
	}
	if l.ReadTimeout < 0 {
		v.c.field("load.read-timeout", "%s must not be negative", l.ReadTimeout)
	}
	if l.EarlyStop >= 1 {
		v.c.field("load.early-stop", "%s: want below 100%%", formatPercent(l.EarlyStop))
	}
	rt := orDefault(l.ReadTimeout, traffic.DefaultReadTimeout)
	st := orDefault(l.StallThreshold, traffic.DefaultStallThreshold)
	if st < 0 || st >= rt {
		v.c.field("load.stall-threshold", "%s: want below the read timeout (%s)", st, rt)
	}
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// isZero reports whether the load sets nothing.
func (l Load) isZero() bool {
	return l.Mode == "" && l.Rate == 0 && !l.KeepAlive && l.From == "" && len(l.VIPs) == 0 && len(l.Names) == 0 && l.Workers == 0 && l.Path == "" && l.Pause == 0 &&
		l.ReadSize == 0 && l.ReadTimeout == 0 && l.StallThreshold == 0 && l.EarlyStop == 0 && l.Seed == 0
}

// step checks a sleep, wait or injection step.
func (v *validator) step(path string, st Step) {
	kpath := path + "." + string(st.Kind)
	a := st.Action
	switch st.Kind {
	case KindSleep:
		if st.Sleep <= 0 {
			v.c.field(kpath, "want a positive duration such as 5s")
		}
		return
	case KindWait:
		v.wait(kpath, st.Wait)
		return
	case KindKill, KindFreeze, KindRevive, KindRemove:
		v.nodes(kpath, a)
		return
	case KindMaint, KindAgent, KindLink, KindImpair, KindAdd, KindExec:
	case "":
		v.c.field(path, "no action")
		return
	default:
		v.c.field(path, "unknown step kind %q", st.Kind)
		return
	}
	if a.Kind != st.Kind {
		v.c.field(kpath, "action kind %q in a %s step", a.Kind, st.Kind)
	}
	switch {
	case st.Kind == KindMaint && a.VIP != "":
		if a.Node != "" {
			v.c.field(kpath, "node and vip: want one of them")
		}
		v.vipName(kpath+".vip", a.VIP)
	default:
		v.node(kpath+".node", a.Node)
	}
	switch st.Kind {
	case KindMaint:
		v.state(kpath, a.State, "on", "off")
	case KindLink:
		v.peer(kpath, a.Peer)
		v.state(kpath, a.State, "up", "down")
	case KindAgent:
		switch _, err := agentcheck.Parse(a.State); {
		case strings.TrimSpace(a.State) == "":
			v.c.field(kpath+".state", "missing (want an agent-check line such as drain, down or \"up 50%%\")")
		case err != nil:
			v.c.field(kpath+".state", "%q is not an agent-check line: %v", a.State, err)
		}
	case KindImpair:
		v.peer(kpath, a.Peer)
		if a.Jitter > 0 && a.Delay == 0 {
			v.c.field(kpath+".jitter", "jitter needs a delay")
		}
		if a.Loss < 0 || a.Loss > 100 {
			v.c.field(kpath+".loss", "%g%% is not a percentage", a.Loss)
		}
		if a.Delay < 0 || a.Jitter < 0 {
			v.c.field(kpath, "delay and jitter must not be negative")
		}
	case KindAdd:
		if a.Like != "" {
			v.name(kpath+".like", a.Like)
		}
	case KindExec:
		if len(a.Argv) == 0 {
			v.c.field(kpath+".argv", "missing (want a command such as [touch, /etc/lb/disable])")
		}
	}
}

// state checks that s is one of the words.
func (v *validator) state(path, s string, words ...string) {
	for _, w := range words {
		if s == w {
			return
		}
	}
	if s == "" {
		v.c.field(path+".state", "missing (want %s)", strings.Join(words, " or "))
		return
	}
	v.c.field(path+".state", "%q: want %s", s, strings.Join(words, " or "))
}

func (v *validator) wait(path string, w Condition) {
	switch {
	case w.Converged:
		if w.VIP != "" || w.LB7 != "" || w.NextHops != nil || w.Weight != nil {
			v.c.field(path, "converged waits for the whole lab: it takes no vip, lb7, next-hops or weight")
		}
	case w.NextHops != nil:
		if w.VIP == "" {
			v.c.field(path+".vip", "missing: next-hops counts the routes of one vip")
		}
		if w.LB7 != "" || w.Weight != nil {
			v.c.field(path, "wait for next-hops or for a weight, not both")
		}
		if *w.NextHops < 0 {
			v.c.field(path+".next-hops", "%d must not be negative", *w.NextHops)
		}
	case w.Weight != nil:
		if w.VIP == "" {
			v.c.field(path+".vip", "missing: weight is an lb7's weight in one vip's service")
		}
		if w.LB7 == "" {
			v.c.field(path+".lb7", "missing: weight is an lb7's weight in one vip's service")
		}
		if *w.Weight < 0 {
			v.c.field(path+".weight", "%d must not be negative", *w.Weight)
		}
	default:
		v.c.field(path, "nothing to wait for: want converged: true, {vip, next-hops} or {vip, lb7, weight}")
	}
	if w.VIP != "" {
		v.vipName(path+".vip", w.VIP)
	}
	if w.LB7 != "" {
		v.name(path+".lb7", w.LB7)
	}
	if w.Timeout <= 0 {
		v.c.field(path+".timeout", "want a positive duration such as 30s")
	}
}

func (v *validator) assertion(path string, a Assertion, loaded bool) {
	known := false
	for _, m := range Metrics() {
		known = known || a.Metric == m
	}
	switch {
	case a.Metric == "":
		v.c.field(path, "no metric")
	case !known:
		v.c.field(path, "unknown metric %q", a.Metric)
	case a.Limit < 0:
		v.c.field(path+"."+string(a.Metric), "must not be negative")
	case (a.Metric == MetricBrokenRatio || a.Metric == MetricErrorRatio) && a.Limit > 1:
		v.c.field(path+"."+string(a.Metric), "%s is not a percentage", formatPercent(a.Limit))
	case (a.Metric == MetricFailover || a.Metric == MetricReroute || a.Metric == MetricRepair) && a.Scope.After == "":
		v.c.field(path+".after", "missing: %s is measured from a step", a.Metric)
	case a.Metric.requests() && v.s.Load.Mode != string(traffic.ModeRequests):
		v.c.field(path+"."+string(a.Metric), "%s is measured on a request load: set load.mode: requests", a.Metric)
	}
	sc := a.Scope
	if sc.VIP != "" {
		v.vipName(path+".vip", sc.VIP)
	}
	if sc.ExceptLB7 != "" {
		v.name(path+".except-lb7", sc.ExceptLB7)
	}
	if sc.Scheduler != "" {
		v.name(path+".scheduler", sc.Scheduler)
	}
	v.label(path+".after", sc.After)
	v.label(path+".before", sc.Before)
	switch {
	case sc.Settled < 0:
		v.c.field(path+".settled", "must not be negative")
	case sc.Settled > 0 && sc.After == "":
		v.c.field(path+".settled", "settled counts from the after step: add after")
	}
	if !loaded {
		v.c.field(path, "nothing to measure: no step starts the load (add \"load: start\")")
	}
}

// label checks that label, when set, names exactly one step.
func (v *validator) label(path, label string) {
	if label == "" {
		return
	}
	idx := v.labels[label]
	switch len(idx) {
	case 0:
		var known []string
		for _, st := range v.s.Steps {
			known = append(known, st.Label)
		}
		v.c.field(path, "no step is labelled %q%s", label, yamlerr.Suggest(label, known))
	case 1:
	default:
		lines := make([]string, len(idx))
		for i, j := range idx {
			lines[i] = fmt.Sprintf("steps[%d]", j)
			if l := v.s.Steps[j].Line; l > 0 {
				lines[i] = fmt.Sprintf("line %d", l)
			}
		}
		v.c.field(path, "%q labels several steps (%s): give one a label of its own", label, strings.Join(lines, ", "))
	}
}

// node checks a node name, which is required.
func (v *validator) node(path, name string) {
	if name == "" {
		v.c.field(path, "missing node name")
		return
	}
	v.name(path, name)
}

// nodes checks the target of a kill, freeze, revive or remove step: one
// node, a list, or a share of a role.
func (v *validator) nodes(path string, a Action) {
	switch {
	case a.Role != "":
		if a.Node != "" || len(a.Nodes) > 0 {
			v.c.field(path, "role and nodes: want one of them")
		}
		v.name(path+".role", a.Role)
		if a.Share <= 0 || a.Share > 1 {
			v.c.field(path+".share", "want a share of the role's nodes, above 0%% and at most 100%%, such as 12.5%%")
		}
	case len(a.Nodes) > 0:
		seen := map[string]bool{}
		for i, n := range a.Nodes {
			p := fmt.Sprintf("%s.nodes[%d]", path, i)
			v.node(p, n)
			if seen[n] {
				v.c.field(p, "%s is listed twice", n)
			}
			seen[n] = true
		}
	case a.Share != 0 || a.Seed != 0:
		v.c.field(path+".role", "missing: share and seed pick among the nodes of a role")
	default:
		v.node(path, a.Node)
	}
}

// peer checks the other end of a link, which is required.
func (v *validator) peer(path, peer string) {
	if peer == "" {
		v.c.field(path+".peer", "missing (want the segment or node at the other end of the link)")
		return
	}
	v.name(path+".peer", peer)
}

// vipName checks the name of a VIP, or its label (www/v6).
func (v *validator) vipName(path, name string) {
	if len(name) > maxNameLen+3 || !vipNameRE.MatchString(name) {
		v.c.field(path, "%q is not a VIP name (lower-case letters, digits and dashes, starting with a letter; /v4 or /v6 for one family of a dual-stack name)", name)
	}
}

// name checks the syntax of a node name.
func (v *validator) name(path, name string) {
	if len(name) > maxNameLen || !nodeNameRE.MatchString(name) {
		v.c.field(path, "%q is not a valid name (lower-case letters, digits and dashes, starting with a letter)", name)
	}
}
