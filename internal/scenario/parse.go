package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lab-lb/lab/internal/yamlerr"
)

// The parser walks the YAML nodes itself rather than decoding into
// structs: a step is a one-key mapping whose key says what the value means,
// and every value must report its own line. It reports the shape of the file
// (unknown or repeated keys, wrong kinds, values that do not parse);
// validate then checks the meaning.

// Keys of each mapping, in the order messages list them.
var (
	topKeys    = []string{"name", "description", "claim", "topology", "load", "steps", "assert"}
	loadKeys   = []string{"mode", "rate", "keepalive", "from", "vips", "names", "workers", "path", "pause", "read-size", "read-timeout", "stall-threshold", "early-stop", "seed"}
	stepKinds  = []string{"load", "sleep", "wait", "kill", "freeze", "revive", "maint", "agent", "link", "impair", "add", "remove", "exec"}
	waitKeys   = []string{"converged", "vip", "next-hops", "lb7", "weight", "timeout"}
	metricKeys = []string{"broken", "broken-ratio", "interrupted", "failover", "reroute", "dns-failures", "fallbacks", "error-ratio", "p99", "repair"}
	scopeKeys  = []string{"vip", "scheduler", "after", "settled", "before", "except-lb7"}
	// nodesKeys are those of a kill, freeze, revive or remove step given
	// as a mapping.
	nodesKeys  = []string{"nodes", "role", "share", "seed"}
	actionKeys = map[string][]string{
		"maint":  {"node", "vip", "state"},
		"agent":  {"node", "state"},
		"link":   {"node", "peer", "state"},
		"impair": {"node", "peer", "delay", "jitter", "loss"},
		"add":    {"node", "like"},
		"exec":   {"node", "argv"},
	}
)

// parser turns YAML nodes into a Scenario, reporting to c.
type parser struct {
	c *collector
}

// fields is a checked mapping: its values by key, and the path of the
// mapping.
type fields struct {
	path string
	vals map[string]*yaml.Node
	// unknown counts the unknown keys.
	unknown int
}

// at returns the path of key in f.
func (f fields) at(key string) string {
	if f.path == "" {
		return key
	}
	return f.path + "." + key
}

// has reports whether key is present with a non-null value.
func (f fields) has(key string) bool {
	n, ok := f.vals[key]
	return ok && !yamlerr.IsNull(n)
}

// parse reads data into a Scenario, or returns nil when the file is not a
// mapping at all.
func parse(c *collector, file string, data []byte) *Scenario {
	root := document(c, data)
	if root == nil {
		return nil
	}
	p := &parser{c: c}
	f, ok := p.mapping(root, "", topKeys)
	if !ok {
		return nil
	}
	s := &Scenario{File: file}
	s.Name = p.text(f, "name")
	s.Description = p.text(f, "description")
	s.Claim = p.text(f, "claim")
	if t := p.text(f, "topology"); t != "" {
		s.Topology = t
		if !filepath.IsAbs(t) {
			s.Topology = filepath.Join(filepath.Dir(file), t)
		}
	}
	if f.has("load") {
		s.Load = p.load(f.vals["load"], "load")
	}
	for i, n := range p.list(f, "steps") {
		s.Steps = append(s.Steps, p.step(n, fmt.Sprintf("steps[%d]", i)))
	}
	for i, n := range p.list(f, "assert") {
		s.Assert = append(s.Assert, p.assertion(n, fmt.Sprintf("assert[%d]", i)))
	}
	return s
}

func (p *parser) load(n *yaml.Node, path string) Load {
	var l Load
	f, ok := p.mapping(n, path, loadKeys)
	if !ok {
		return l
	}
	l.Mode = p.text(f, "mode")
	if f.has("rate") {
		s, _ := p.scalar(f.vals["rate"], f.at("rate"))
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			p.errorAt(f.vals["rate"], f.at("rate"), "%q is not a number of requests a second", s)
		}
		l.Rate = v
	}
	if f.has("keepalive") {
		s, _ := p.scalar(f.vals["keepalive"], f.at("keepalive"))
		v, err := strconv.ParseBool(s)
		if err != nil {
			p.errorAt(f.vals["keepalive"], f.at("keepalive"), "%q: want true or false", s)
		}
		l.KeepAlive = v
	}
	l.From = p.text(f, "from")
	for i, v := range p.list(f, "vips") {
		if s, ok := p.scalar(v, fmt.Sprintf("%s.vips[%d]", path, i)); ok {
			l.VIPs = append(l.VIPs, s)
		}
	}
	for i, v := range p.list(f, "names") {
		if s, ok := p.scalar(v, fmt.Sprintf("%s.names[%d]", path, i)); ok {
			l.Names = append(l.Names, s)
		}
	}
	l.Workers = p.integer(f, "workers")
	l.Path = p.text(f, "path")
	if d, ok := p.duration(f, "pause"); ok {
		l.Pause = d
		if d == 0 {
			l.Pause = -1
		}
	}
	l.ReadSize = p.integer(f, "read-size")
	l.ReadTimeout, _ = p.duration(f, "read-timeout")
	l.StallThreshold, _ = p.duration(f, "stall-threshold")
	if v, ok := p.percent(f, "early-stop"); ok {
		l.EarlyStop = v
		if v == 0 {
			l.EarlyStop = -1
		}
	}
	l.Seed = p.seed(f)
	return l
}

// seed reads the seed of f, a whole number.
func (p *parser) seed(f fields) int64 {
	if !f.has("seed") {
		return 0
	}
	s, _ := p.scalar(f.vals["seed"], f.at("seed"))
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		p.errorAt(f.vals["seed"], f.at("seed"), "%q is not a whole number", s)
	}
	return v
}

// nodes reads the target of a kill, freeze, revive or remove step: a node,
// a list of nodes, or a mapping {nodes: [...]} or {role, share, seed}.
func (p *parser) nodes(n *yaml.Node, path string, a *Action) {
	switch n.Kind {
	case yaml.SequenceNode:
		for i, v := range n.Content {
			if s, ok := p.scalar(v, fmt.Sprintf("%s[%d]", path, i)); ok {
				a.Nodes = append(a.Nodes, s)
			}
		}
		return
	case yaml.MappingNode:
		f, ok := p.mapping(n, path, nodesKeys)
		if !ok {
			return
		}
		for i, v := range p.list(f, "nodes") {
			if s, ok := p.scalar(v, fmt.Sprintf("%s.nodes[%d]", path, i)); ok {
				a.Nodes = append(a.Nodes, s)
			}
		}
		a.Role = p.text(f, "role")
		a.Share, _ = p.percent(f, "share")
		a.Seed = p.seed(f)
		return
	}
	a.Node, _ = p.scalar(n, path)
}

func (p *parser) step(n *yaml.Node, path string) Step {
	st := Step{Line: yamlerr.Line(n)}
	f, ok := p.mapping(n, path, append(append([]string(nil), stepKinds...), "label"))
	if !ok {
		return st
	}
	st.Label = p.text(f, "label")
	var kinds []string
	for _, k := range stepKinds {
		if _, ok := f.vals[k]; ok {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		if f.unknown > 0 {
			p.c.mark(path) // The unknown key is the better message.
			return st
		}
		p.errorAt(n, path, "no action: want one of %s (and an optional label)", strings.Join(stepKinds, ", "))
		return st
	case 1:
	default:
		p.errorAt(n, path, "one action per step, got %s", strings.Join(kinds, " and "))
		return st
	}
	kind := kinds[0]
	v, vpath := f.vals[kind], f.at(kind)
	st.Kind = Kind(kind)
	st.Action.Kind = st.Kind
	switch kind {
	case "load":
		switch s, ok := p.scalar(v, vpath); {
		case s == "start":
			st.Kind = KindLoadStart
		case s == "stop":
			st.Kind = KindLoadStop
		case ok:
			p.errorAt(v, vpath, "%q: want start or stop", s)
		case yamlerr.IsNull(v):
			p.errorAt(v, vpath, "want start or stop")
		}
		if st.Kind == "load" {
			p.c.mark(path)
		}
		st.Action = Action{}
	case "sleep":
		st.Sleep, _ = p.durationAt(v, vpath)
		st.Action = Action{}
	case "wait":
		st.Wait = p.condition(v, vpath)
		st.Action = Action{}
	case "kill", "freeze", "revive", "remove":
		p.nodes(v, vpath, &st.Action)
	default:
		p.action(v, vpath, &st.Action)
	}
	return st
}

// action reads the mapping of a maint, agent, link, impair, add or exec
// step into a.
func (p *parser) action(n *yaml.Node, path string, a *Action) {
	f, ok := p.mapping(n, path, actionKeys[string(a.Kind)])
	if !ok {
		return
	}
	a.Node = p.text(f, "node")
	a.VIP = p.text(f, "vip")
	a.Peer = p.text(f, "peer")
	a.State = p.text(f, "state")
	a.Like = p.text(f, "like")
	a.Delay, _ = p.duration(f, "delay")
	a.Jitter, _ = p.duration(f, "jitter")
	if v, ok := p.percent(f, "loss"); ok {
		a.Loss = v * 100
	}
	for i, v := range p.list(f, "argv") {
		if s, ok := p.scalar(v, fmt.Sprintf("%s.argv[%d]", path, i)); ok {
			a.Argv = append(a.Argv, s)
		}
	}
}

func (p *parser) condition(n *yaml.Node, path string) Condition {
	var w Condition
	f, ok := p.mapping(n, path, waitKeys)
	if !ok {
		return w
	}
	if f.has("converged") {
		switch s, _ := p.scalar(f.vals["converged"], f.at("converged")); s {
		case "true":
			w.Converged = true
		case "false":
		default:
			p.errorAt(f.vals["converged"], f.at("converged"), "%q: want true or false", s)
			p.c.mark(path)
		}
	}
	w.VIP = p.text(f, "vip")
	w.LB7 = p.text(f, "lb7")
	if f.has("next-hops") {
		v := p.integer(f, "next-hops")
		w.NextHops = &v
	}
	if f.has("weight") {
		v := p.integer(f, "weight")
		w.Weight = &v
	}
	if d, ok := p.duration(f, "timeout"); ok {
		w.Timeout = d
		if d == 0 {
			p.errorAt(f.vals["timeout"], f.at("timeout"), "want a positive duration such as 30s")
		}
	}
	return w
}

func (p *parser) assertion(n *yaml.Node, path string) Assertion {
	a := Assertion{Line: yamlerr.Line(n)}
	f, ok := p.mapping(n, path, append(append([]string(nil), metricKeys...), scopeKeys...))
	if !ok {
		return a
	}
	var metrics []string
	for _, k := range metricKeys {
		if _, ok := f.vals[k]; ok {
			metrics = append(metrics, k)
		}
	}
	switch len(metrics) {
	case 0:
		if f.unknown > 0 {
			p.c.mark(path)
			break
		}
		p.errorAt(n, path, "no metric: want one of %s", strings.Join(metricKeys, ", "))
	case 1:
		a.Metric = Metric(metrics[0])
		v, vpath := f.vals[metrics[0]], f.at(metrics[0])
		switch a.Metric {
		case MetricBroken, MetricInterrupted, MetricDNSFailures, MetricFallbacks:
			a.Limit = float64(p.integerAt(v, vpath))
		case MetricBrokenRatio, MetricErrorRatio:
			r, _ := p.percentAt(v, vpath)
			a.Limit = r
		case MetricFailover, MetricReroute, MetricP99, MetricRepair:
			d, _ := p.durationAt(v, vpath)
			a.Limit = float64(d)
		}
	default:
		p.errorAt(n, path, "one metric per assertion, got %s", strings.Join(metrics, " and "))
	}
	a.Scope.VIP = p.text(f, "vip")
	a.Scope.After = p.text(f, "after")
	a.Scope.Before = p.text(f, "before")
	a.Scope.ExceptLB7 = p.text(f, "except-lb7")
	a.Scope.Scheduler = p.text(f, "scheduler")
	a.Scope.Settled, _ = p.duration(f, "settled")
	return a
}

// mapping checks that n is a mapping with string keys among known, each
// once, and returns its values. It reports n when it is not a mapping.
func (p *parser) mapping(n *yaml.Node, path string, known []string) (fields, bool) {
	n = yamlerr.Deref(n)
	f := fields{path: path, vals: map[string]*yaml.Node{}}
	if n == nil {
		return f, false
	}
	p.c.see(path, n.Line)
	if n.Kind != yaml.MappingNode {
		p.errorAt(n, path, "want a mapping, got %s", yamlerr.Describe(n))
		return f, false
	}
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := yamlerr.Deref(n.Content[i]), yamlerr.Deref(n.Content[i+1])
		if key == nil || key.Kind != yaml.ScalarNode {
			p.c.record(yamlerr.Line(n.Content[i]), yamlerr.Column(n.Content[i]), path, "keys must be plain strings")
			continue
		}
		kpath := f.at(key.Value)
		if key.Value == "<<" {
			p.c.record(key.Line, key.Column, path, "merge keys (<<) are not supported")
			p.c.mark(path)
			continue
		}
		if l, ok := first[key.Value]; ok {
			p.c.record(key.Line, key.Column, kpath, fmt.Sprintf("duplicate key (first at line %d)", l))
			continue
		}
		first[key.Value] = key.Line
		if !slices.Contains(known, key.Value) {
			p.c.record(key.Line, key.Column, path, fmt.Sprintf("unknown key %q%s", key.Value, yamlerr.Suggest(key.Value, known)))
			f.unknown++
			continue
		}
		if val == nil {
			continue
		}
		p.c.see(kpath, val.Line)
		f.vals[key.Value] = val
	}
	return f, true
}

// list returns the items of the list at key, or nil (after a report when
// the value is not a list). Null items are reported and left out.
func (p *parser) list(f fields, key string) []*yaml.Node {
	if !f.has(key) {
		return nil
	}
	n, path := f.vals[key], f.at(key)
	if n.Kind != yaml.SequenceNode {
		p.errorAt(n, path, "want a list, got %s", yamlerr.Describe(n))
		return nil
	}
	items := make([]*yaml.Node, 0, len(n.Content))
	for i, it := range n.Content {
		it = yamlerr.Deref(it)
		ipath := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case it == nil:
			p.c.add(yamlerr.Line(n.Content[i]), yamlerr.Column(n.Content[i]), ipath, "alias loop")
		case yamlerr.IsNull(it):
			p.errorAt(it, ipath, "empty list item")
		default:
			p.c.see(ipath, it.Line)
			items = append(items, it)
			continue
		}
		items = append(items, &yaml.Node{Kind: yaml.MappingNode, Line: yamlerr.Line(it), Column: yamlerr.Column(it)})
	}
	return items
}

// scalar returns the text of n, reporting a value that is not a scalar.
// A null value is "" and false, silently.
func (p *parser) scalar(n *yaml.Node, path string) (string, bool) {
	n = yamlerr.Deref(n)
	switch {
	case n == nil || yamlerr.IsNull(n):
		return "", false
	case n.Kind != yaml.ScalarNode:
		p.errorAt(n, path, "want a single value, got %s", yamlerr.Describe(n))
		return "", false
	}
	return n.Value, true
}

// text returns the scalar at key, "" when absent.
func (p *parser) text(f fields, key string) string {
	s, _ := p.scalar(f.vals[key], f.at(key))
	return s
}

// duration returns the duration at key; ok is false when absent or wrong.
func (p *parser) duration(f fields, key string) (time.Duration, bool) {
	if !f.has(key) {
		return 0, false
	}
	return p.durationAt(f.vals[key], f.at(key))
}

func (p *parser) durationAt(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.errorAt(n, path, "%q is not a duration (want e.g. 5s or 200ms)", s)
		return 0, false
	case d < 0:
		p.errorAt(n, path, "%q must not be negative", s)
		return 0, false
	}
	return d, true
}

// integer returns the whole number at key, 0 when absent or wrong.
func (p *parser) integer(f fields, key string) int {
	if !f.has(key) {
		return 0
	}
	return p.integerAt(f.vals[key], f.at(key))
}

func (p *parser) integerAt(n *yaml.Node, path string) int {
	s, ok := p.scalar(n, path)
	if !ok {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 32)
	switch {
	case err != nil:
		p.errorAt(n, path, "%q is not a whole number", s)
		return 0
	case v < 0:
		p.errorAt(n, path, "%d must not be negative", v)
		return 0
	}
	return int(v)
}

// percent returns the percentage at key as a fraction.
func (p *parser) percent(f fields, key string) (float64, bool) {
	if !f.has(key) {
		return 0, false
	}
	return p.percentAt(f.vals[key], f.at(key))
}

func (p *parser) percentAt(n *yaml.Node, path string) (float64, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	num, found := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(num, 64)
	if !found || err != nil || v < 0 || v > 100 || strings.TrimSpace(num) != num {
		p.errorAt(n, path, "%q is not a percentage (want e.g. 1%% or 0.5%%, up to 100%%)", s)
		return 0, false
	}
	return v / 100, true
}

// errorAt reports a problem with the value n written at path.
func (p *parser) errorAt(n *yaml.Node, path, format string, args ...any) {
	p.c.add(yamlerr.Line(n), yamlerr.Column(n), path, format, args...)
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data as a single YAML document and returns its root, or
// nil after reporting why there is none.
func document(c *collector, data []byte) (root *yaml.Node) {
	defer func() {
		// The YAML parser is not ours; a panic in it is one more problem.
		if r := recover(); r != nil {
			c.add(0, 0, "", "cannot parse YAML: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.add(1, 0, "", "empty file")
			return nil
		}
		syntaxError(c, err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		c.add(next.Line, next.Column, "", "only one YAML document is allowed")
	case !errors.Is(err, io.EOF):
		syntaxError(c, err)
	}
	if len(doc.Content) == 0 || yamlerr.IsNull(yamlerr.Deref(doc.Content[0])) {
		c.add(1, 0, "", "empty file")
		return nil
	}
	return doc.Content[0]
}

func syntaxError(c *collector, err error) {
	msg := err.Error()
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		c.add(l, 0, "", "syntax error: %s", m[2])
		return
	}
	c.add(0, 0, "", "syntax error: %s", strings.TrimPrefix(msg, "yaml: "))
}
