package topology

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lab-lb/lab/internal/yamlerr"

	"github.com/lab-lb/lab/configs"
)

// defaultsFile names the shipped defaults in messages.
const defaultsFile = "configs/defaults.yaml"

// parseConfigs parses the shipped defaults; their problems are reported
// like any other, under defaultsFile.
func parseConfigs(c *collector) *rawConfigs {
	cfg := &rawConfigs{}
	root := document(c, defaultsFile, configs.Defaults)
	if root == nil {
		return cfg
	}
	decode(c, defaultsFile, root, cfg)
	checkRoles(c, cfg.Roles)
	for _, s := range settingsBlocks(cfg.Defaults, cfg.Roles) {
		decodeSettings(c, s, false)
	}
	return cfg
}

// checkRoles reports keys of a roles: mapping that are not roles.
func checkRoles(c *collector, rs omap[rawSettings]) {
	for _, e := range rs {
		if !knownRole(e.Key.Value) {
			c.at(e.Key, "unknown role %q (want %s)", e.Key.Value, roleList())
		}
	}
}

func knownRole(s string) bool {
	return slices.Contains(roles(), Role(s))
}

func roleList() string {
	var names []string
	for _, r := range roles() {
		names = append(names, string(r))
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// settingsBlocks returns the nodes of a defaults block and of every role.
func settingsBlocks(defaults item[rawSettings], rs omap[rawSettings]) []*yaml.Node {
	blocks := []*yaml.Node{defaults.Node}
	for _, e := range rs {
		blocks = append(blocks, e.Node)
	}
	return blocks
}

// roleBlock returns the settings node of role r, or nil.
func roleBlock(rs omap[rawSettings], r Role) *yaml.Node {
	for _, e := range rs {
		if e.Key.Value == string(r) {
			return e.Node
		}
	}
	return nil
}

// settingsKeys are the keys of a node entry that are settings.
func settingsKeys() []string {
	var keys []string
	for _, f := range fieldsOf(reflect.TypeFor[rawSettings]()) {
		keys = append(keys, f.name)
	}
	return keys
}

// inlineSettings returns a mapping of the settings keys of a node entry.
func inlineSettings(n *yaml.Node) *yaml.Node {
	n = yamlerr.Deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	keys := settingsKeys()
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlerr.Deref(n.Content[i]); k != nil && slices.Contains(keys, k.Value) {
			out.Content = append(out.Content, k, n.Content[i+1])
		}
	}
	return out
}

// merge returns a mapping with the keys of every layer, later layers
// winning: mappings merge key by key, anything else replaces, and null
// values leave the lower layers alone. Values keep their nodes, so their
// lines and origins survive.
func merge(layers ...*yaml.Node) *yaml.Node {
	return mergeAt(0, layers)
}

// maxMergeDepth bounds the merge: settings nest two levels deep, and an
// alias can make a mapping contain itself.
const maxMergeDepth = 4

func mergeAt(depth int, layers []*yaml.Node) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, l := range layers {
		l = yamlerr.Deref(l)
		if l == nil || l.Kind != yaml.MappingNode {
			continue
		}
		out.Line, out.Column = l.Line, l.Column
		for i := 0; i+1 < len(l.Content); i += 2 {
			k, v := yamlerr.Deref(l.Content[i]), yamlerr.Deref(l.Content[i+1])
			if k == nil || v == nil || yamlerr.IsNull(v) {
				continue
			}
			j := -1
			for i := 0; i < len(out.Content); i += 2 {
				if out.Content[i].Value == k.Value {
					j = i
				}
			}
			switch {
			case j < 0:
				out.Content = append(out.Content, k, v)
			case out.Content[j+1].Kind == yaml.MappingNode && v.Kind == yaml.MappingNode && depth < maxMergeDepth:
				out.Content[j], out.Content[j+1] = k, mergeAt(depth+1, []*yaml.Node{out.Content[j+1], v})
			default:
				out.Content[j], out.Content[j+1] = k, v
			}
		}
	}
	return out
}

// decodeSettings decodes and converts a settings mapping. With whole set,
// the mapping is a node's merged settings and the checks that involve two
// values run too.
func decodeSettings(c *collector, n *yaml.Node, whole bool) Settings {
	var raw rawSettings
	if n = yamlerr.Deref(n); n == nil || n.Kind != yaml.MappingNode {
		return Settings{}
	}
	_ = n.Decode(&raw) // Shapes were checked; leaves are converted below.
	v := conv{c: c}
	s := Settings{
		Sysctls: map[string]string{},
		BGP: BGPTimers{
			HoldTime:     v.holdTime(raw.BGP.HoldTime),
			Keepalive:    v.duration(raw.BGP.Keepalive),
			ConnectRetry: v.duration(raw.BGP.ConnectRetry),
		},
		Health: Health{
			Interval:     v.duration(raw.Health.Interval),
			Timeout:      v.duration(raw.Health.Timeout),
			Rise:         v.integer(raw.Health.Rise, 1, 1000),
			Fall:         v.integer(raw.Health.Fall, 1, 1000),
			RemoveFailed: v.boolean(raw.Health.RemoveFailed),
		},
		HAProxy: HAProxy{
			Maxconn:        v.integer(raw.HAProxy.Maxconn, 1, 1<<30),
			TimeoutConnect: v.duration(raw.HAProxy.TimeoutConnect),
			TimeoutClient:  v.duration(raw.HAProxy.TimeoutClient),
			TimeoutServer:  v.duration(raw.HAProxy.TimeoutServer),
			CheckInterval:  v.duration(raw.HAProxy.CheckInterval),
			AgentInterval:  v.duration(raw.HAProxy.AgentInterval),
			Rise:           v.integer(raw.HAProxy.Rise, 1, 1000),
			Fall:           v.integer(raw.HAProxy.Fall, 1, 1000),
			AgentPort:      v.integer(raw.HAProxy.AgentPort, 1, 65535),
			SendProxy:      v.boolean(raw.HAProxy.SendProxy),
		},
		BFD: BFD{
			Enabled:    v.boolean(raw.BFD.Enabled),
			Interval:   v.bfdInterval(raw.BFD.Interval),
			Multiplier: v.integer(raw.BFD.Multiplier, 1, 255),
			Echo:       v.bfdEcho(raw.BFD.Echo),
		},
	}
	for _, e := range raw.Sysctls {
		if !sysctlKey.MatchString(e.Key.Value) {
			c.at(e.Key, "bad sysctl name (want dotted words such as net.ipv4.ip_forward)")
			continue
		}
		if ok, why := namespacedSysctl(e.Key.Value); !ok {
			c.at(e.Key, "%s", why)
			continue
		}
		val, ok := e.V.str()
		if !ok {
			continue
		}
		if val == "" || strings.ContainsAny(val, "\n\x00") {
			c.at(e.V.Node, "bad sysctl value %q", val)
			continue
		}
		s.Sysctls[e.Key.Value] = val
	}
	if whole {
		hold, keep := raw.BGP.HoldTime, raw.BGP.Keepalive
		if s.BGP.HoldTime > 0 && s.BGP.Keepalive >= s.BGP.HoldTime {
			at := keep.Node
			if c.where(at).file != c.file && c.where(hold.Node).file == c.file {
				at = hold.Node
			}
			c.at(at, "keepalive %v must be shorter than hold-time %v", s.BGP.Keepalive, s.BGP.HoldTime)
		}
	}
	return s
}

// clone returns a copy of s that shares no map with it.
func (s Settings) clone() Settings {
	s.Sysctls = maps.Clone(s.Sysctls)
	return s
}

var sysctlKey = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$`)

// conv converts scalar values, reporting problems at their nodes.
type conv struct {
	c *collector
}

func (v conv) duration(x value) time.Duration {
	s, ok := x.str()
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.c.at(x.Node, "%q is not a duration (want e.g. 1s or 500ms)", s)
	case d <= 0:
		v.c.at(x.Node, "%q must be positive", s)
	}
	return d
}

func (v conv) holdTime(x value) time.Duration {
	s, ok := x.str()
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.c.at(x.Node, "%q is not a duration (want e.g. 3s)", s)
	case d < 3*time.Second:
		// GoBGP's minimum. RFC 4271 allows 0 (no hold timer), but then a
		// silent peer is never dropped: refused rather than silently
		// turned into a default.
		v.c.at(x.Node, "%q: hold time must be at least 3s", s)
	}
	return d
}

// bfdInterval is a BFD interval: whole microseconds on the wire, and no
// shorter than 10ms, below which a Go timer in a busy VM is noise.
func (v conv) bfdInterval(x value) time.Duration { return v.bfdDuration(x, "10ms to 1m") }

// bfdDuration is bfdInterval, want saying what is in range.
func (v conv) bfdDuration(x value, want string) time.Duration {
	d := v.duration(x)
	switch {
	case d <= 0:
	case d < 10*time.Millisecond || d > time.Minute:
		v.c.at(x.Node, "%q is out of range (want %s)", d, want)
	case d%time.Microsecond != 0:
		v.c.at(x.Node, "%q is not a whole number of microseconds", d)
	}
	return d
}

// bfdEcho is an echo interval: 0 (or 0s) for none, else as bfdInterval.
func (v conv) bfdEcho(x value) time.Duration {
	if s, ok := x.str(); ok {
		if d, err := time.ParseDuration(s); err == nil && d == 0 {
			return 0
		}
	}
	return v.bfdDuration(x, "10ms to 1m, or 0 for none")
}

func (v conv) integer(x value, lo, hi int) int {
	s, ok := x.str()
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		v.c.at(x.Node, "%q is not a whole number", s)
	case n < lo && n < 0 && lo > 0:
		v.c.at(x.Node, "%d must be positive", n)
	case n < lo || n > hi:
		v.c.at(x.Node, "%d is out of range (want %d-%d)", n, lo, hi)
	}
	return n
}

func (v conv) boolean(x value) bool {
	s, ok := x.str()
	if !ok {
		return false
	}
	if x.Node.ShortTag() != "!!bool" {
		v.c.at(x.Node, "%q is not a boolean (want true or false)", s)
		return false
	}
	b, _ := strconv.ParseBool(strings.ToLower(s))
	return b
}
