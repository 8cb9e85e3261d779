package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lab-lb/lab/internal/yamlerr"
)

// The raw types mirror the YAML schema. Their leaves are values that keep
// the node they were written in, so that every conversion can report its
// own line; the strict checker walks the same types to find unknown keys.

// rawFile is a topology file.
type rawFile struct {
	Name     value             `yaml:"name"`
	VIPs     []item[rawVIP]    `yaml:"vips"`
	BGP      item[rawBGP]      `yaml:"bgp"`
	DNS      item[rawDNS]      `yaml:"dns"`
	P2PPool  values            `yaml:"p2p-pool"`
	VIPPool  values            `yaml:"vip-pool"`
	Segments omap[rawSegment]  `yaml:"segments"`
	Nodes    omap[rawNode]     `yaml:"nodes"`
	Defaults item[rawSettings] `yaml:"defaults"`
	Roles    omap[rawSettings] `yaml:"roles"`
}

// rawConfigs is configs/defaults.yaml.
type rawConfigs struct {
	Defaults item[rawSettings] `yaml:"defaults"`
	Roles    omap[rawSettings] `yaml:"roles"`
}

type rawVIP struct {
	Name      value   `yaml:"name"`
	Address   values  `yaml:"address"`
	Port      value   `yaml:"port"`
	Protocol  value   `yaml:"protocol"`
	Scheduler value   `yaml:"scheduler"`
	Flags     []value `yaml:"flags"`
	Names     []value `yaml:"names"`
}

type rawBGP struct {
	ASN             value   `yaml:"asn"`
	RouteReflectors []value `yaml:"route-reflectors"`
}

type rawDNS struct {
	Zone     value `yaml:"zone"`
	TTL      value `yaml:"ttl"`
	FailOpen value `yaml:"fail-open"`
}

type rawSegment struct {
	Prefix values `yaml:"prefix"`
	MTU    value  `yaml:"mtu"`
}

type rawNode struct {
	Role      value            `yaml:"role"`
	Count     value            `yaml:"count"`
	Links     []value          `yaml:"links"`
	Addresses omap[values]     `yaml:"addresses"`
	Loopback  []value          `yaml:"loopback"`
	Routes    []item[rawRoute] `yaml:"routes"`
	Settings  rawSettings      `yaml:",inline"`
}

type rawRoute struct {
	To  value `yaml:"to"`
	Via value `yaml:"via"`
}

type rawSettings struct {
	Sysctls omap[value]  `yaml:"sysctls"`
	BGP     rawBGPTimers `yaml:"bgp"`
	Health  rawHealth    `yaml:"health"`
	HAProxy rawHAProxy   `yaml:"haproxy"`
	BFD     rawBFD       `yaml:"bfd"`
}

type rawBFD struct {
	Enabled    value `yaml:"enabled"`
	Interval   value `yaml:"interval"`
	Multiplier value `yaml:"multiplier"`
	Echo       value `yaml:"echo"`
}

type rawBGPTimers struct {
	HoldTime     value `yaml:"hold-time"`
	Keepalive    value `yaml:"keepalive"`
	ConnectRetry value `yaml:"connect-retry"`
}

type rawHealth struct {
	Interval     value `yaml:"interval"`
	Timeout      value `yaml:"timeout"`
	Rise         value `yaml:"rise"`
	Fall         value `yaml:"fall"`
	RemoveFailed value `yaml:"remove-failed"`
}

type rawHAProxy struct {
	Maxconn        value `yaml:"maxconn"`
	TimeoutConnect value `yaml:"timeout-connect"`
	TimeoutClient  value `yaml:"timeout-client"`
	TimeoutServer  value `yaml:"timeout-server"`
	CheckInterval  value `yaml:"check-interval"`
	Rise           value `yaml:"rise"`
	Fall           value `yaml:"fall"`
	AgentPort      value `yaml:"agent-port"`
	AgentInterval  value `yaml:"agent-interval"`
	SendProxy      value `yaml:"send-proxy"`
}

// value is a scalar as written. Node is nil when the key is absent or null.
type value struct {
	Node *yaml.Node
}

// UnmarshalYAML keeps the node; conversions happen later, with messages.
func (v *value) UnmarshalYAML(n *yaml.Node) error {
	v.Node = n
	return nil
}

// str returns the scalar text, and false when the value is absent or not a
// scalar (the checker reports the latter).
func (v value) str() (string, bool) {
	if v.Node == nil || v.Node.Kind != yaml.ScalarNode || yamlerr.IsNull(v.Node) {
		return "", false
	}
	return v.Node.Value, true
}

// values is one scalar or a list of them, as written: `prefix:
// 192.0.2.0/24` or `prefix: [192.0.2.0/24, 2001:db8:1::/64]`. It is nil
// when the key is absent or null.
type values []value

// UnmarshalYAML keeps the nodes; conversions happen later, with messages.
func (vs *values) UnmarshalYAML(n *yaml.Node) error {
	*vs = nil
	if d := yamlerr.Deref(n); d != nil && d.Kind == yaml.SequenceNode {
		*vs = values{} // present, if empty: the checker reports it
		for _, it := range d.Content {
			*vs = append(*vs, value{Node: yamlerr.Deref(it)})
		}
		return nil
	}
	*vs = values{{Node: n}}
	return nil
}

// item is a decoded T that remembers the node it was decoded from.
type item[T any] struct {
	Node *yaml.Node
	V    T
}

// UnmarshalYAML decodes the node into V and keeps it.
func (i *item[T]) UnmarshalYAML(n *yaml.Node) error {
	i.Node = n
	return n.Decode(&i.V)
}

func (item[T]) schema() reflect.Type { return reflect.TypeFor[T]() }

// omap is a mapping with free keys, in file order. Repeated keys are
// dropped (the checker reports them).
type omap[T any] []entry[T]

// entry is one key of an omap with its value node and decoded value.
type entry[T any] struct {
	Key  *yaml.Node
	Node *yaml.Node
	V    T
}

// UnmarshalYAML decodes every value in order.
func (m *omap[T]) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	seen := map[string]bool{}
	var msgs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := yamlerr.Deref(n.Content[i])
		if k == nil || k.Kind != yaml.ScalarNode || seen[k.Value] {
			continue
		}
		seen[k.Value] = true
		e := entry[T]{Key: k, Node: yamlerr.Deref(n.Content[i+1])}
		if err := n.Content[i+1].Decode(&e.V); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return err
			}
			msgs = append(msgs, te.Errors...)
		}
		*m = append(*m, e)
	}
	if len(msgs) > 0 {
		return &yaml.TypeError{Errors: msgs}
	}
	return nil
}

func (omap[T]) elem() reflect.Type { return reflect.TypeFor[T]() }

type schemaer interface{ schema() reflect.Type }
type elemer interface{ elem() reflect.Type }

var (
	valueType  = reflect.TypeFor[value]()
	valuesType = reflect.TypeFor[values]()
)

// field is one key of a struct schema.
type field struct {
	name string
	typ  reflect.Type
}

// names lists the keys of fields, in order.
func names(fields []field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.name
	}
	return out
}

// fieldsOf lists the YAML keys of a struct type, inline structs flattened.
func fieldsOf(t reflect.Type) []field {
	var fields []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" {
			fields = append(fields, fieldsOf(f.Type)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields = append(fields, field{name, f.Type})
	}
	return fields
}

// checker walks a YAML tree against a raw type. It is the one source of
// unknown-key, duplicate-key and wrong-kind problems, and it records where
// every node was written.
type checker struct {
	c    *collector
	file string
}

// check validates n (written at path) against type t.
func (k *checker) check(n *yaml.Node, t reflect.Type, path string) {
	n = yamlerr.Deref(n)
	if n == nil {
		return
	}
	k.c.note(n, k.file, path)
	if yamlerr.IsNull(n) {
		return
	}
	if s, ok := reflect.Zero(t).Interface().(schemaer); ok {
		k.check(n, s.schema(), path)
		return
	}
	switch {
	case t == valueType:
		if n.Kind != yaml.ScalarNode {
			k.c.at(n, "want a single value, got %s", yamlerr.Describe(n))
		}
	case t == valuesType && n.Kind == yaml.SequenceNode:
		if len(n.Content) == 0 {
			k.c.at(n, "empty list (want one value or a list of them)")
		}
		for i, it := range n.Content {
			d := yamlerr.Deref(it)
			k.c.note(d, k.file, fmt.Sprintf("%s[%d]", path, i))
			switch {
			case d == nil:
			case yamlerr.IsNull(d):
				k.c.at(d, "empty list item")
			case d.Kind != yaml.ScalarNode:
				k.c.at(d, "want a single value, got %s", yamlerr.Describe(d))
			}
		}
	case t == valuesType:
		if n.Kind != yaml.ScalarNode {
			k.c.at(n, "want one value or a list of them, got %s", yamlerr.Describe(n))
		}
	case t.Implements(reflect.TypeFor[elemer]()):
		k.mapping(n, path, nil, reflect.Zero(t).Interface().(elemer).elem())
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			k.c.at(n, "want a list, got %s", yamlerr.Describe(n))
			return
		}
		for i, it := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if d := yamlerr.Deref(it); d != nil && yamlerr.IsNull(d) {
				k.c.note(d, k.file, p)
				k.c.at(d, "empty list item")
				continue
			}
			k.check(it, t.Elem(), p)
		}
	case t.Kind() == reflect.Struct:
		k.mapping(n, path, fieldsOf(t), nil)
	default:
		panic(fmt.Sprintf("topology: no schema for %v", t))
	}
}

// mapping checks the keys of a mapping node: against fields, or, when elem
// is set, any key with values of type elem.
func (k *checker) mapping(n *yaml.Node, path string, fields []field, elem reflect.Type) {
	if n.Kind != yaml.MappingNode {
		k.c.at(n, "want a mapping, got %s", yamlerr.Describe(n))
		return
	}
	first := map[string]int{}
	// Repeated keys are reported, then dropped: the YAML decoder refuses a
	// whole mapping that has one, and the rest of it deserves checking.
	kept := n.Content[:0:0]
	defer func() { n.Content = kept }()
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := yamlerr.Deref(n.Content[i]), n.Content[i+1]
		if key == nil || key.Kind != yaml.ScalarNode {
			k.c.atField(n.Content[i], path, "keys must be plain strings")
			continue
		}
		p := key.Value
		if path != "" {
			p = path + "." + key.Value
		}
		k.c.note(key, k.file, p)
		if l, ok := first[key.Value]; ok {
			k.c.atField(key, p, "duplicate key (first at line %d)", l)
			continue
		}
		first[key.Value] = key.Line
		kept = append(kept, n.Content[i], val)
		if key.Value == "<<" {
			k.c.atField(key, path, "merge keys (<<) are not supported")
			continue
		}
		t := elem
		if t == nil {
			for _, f := range fields {
				if f.name == key.Value {
					t = f.typ
				}
			}
		}
		if t == nil {
			k.c.atField(key, path, "unknown key %q%s", key.Value, yamlerr.Suggest(key.Value, names(fields)))
			continue
		}
		k.check(val, t, p)
	}
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data as a single YAML document and returns its root, or
// nil after reporting why there is none.
func document(c *collector, file string, data []byte) (root *yaml.Node) {
	defer func() {
		// The YAML parser is not ours; a panic in it is one more problem.
		if r := recover(); r != nil {
			c.add(file, 0, 0, "", "cannot parse YAML: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.add(file, 1, 0, "", "empty file")
			return nil
		}
		syntaxError(c, file, err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		c.add(file, next.Line, next.Column, "", "only one YAML document is allowed")
	case !errors.Is(err, io.EOF):
		syntaxError(c, file, err)
	}
	if len(doc.Content) == 0 {
		c.add(file, 1, 0, "", "empty file")
		return nil
	}
	return doc.Content[0]
}

func syntaxError(c *collector, file string, err error) {
	msg := err.Error()
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		c.add(file, l, 0, "", "syntax error: %s", m[2])
		return
	}
	c.add(file, 0, 0, "", "syntax error: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decode checks root against out's type, then decodes it into out. Decoding
// problems are reported only when the checker found none, as a safety net:
// the checker's messages are the better ones.
func decode(c *collector, file string, root *yaml.Node, out any) {
	before := len(c.list)
	k := checker{c: c, file: file}
	k.check(root, reflect.TypeOf(out).Elem(), "")
	err := root.Decode(out)
	if err == nil || len(c.list) > before {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		c.add(file, 0, 0, "", "%v", err)
		return
	}
	for _, msg := range te.Errors {
		l := 0
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			n, after, _ := strings.Cut(rest, ": ")
			if v, err := strconv.Atoi(n); err == nil {
				l, msg = v, after
			}
		}
		c.add(file, l, 0, "", "%s", msg)
	}
}
