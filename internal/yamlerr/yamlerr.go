// Package yamlerr provides positioned problems in YAML files, formatted as
// FILE:LINE: field: message, and did-you-mean suggestions for unknown keys.
// It also holds the small yaml.Node helpers that the parsers of topologies
// and scenarios share.
package yamlerr

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem found in a YAML file, at one of its lines.
type Error struct {
	File  string
	Line  int    // 1-based; 0 when the problem has no line
	Field string // path such as nodes.r1.links[1] or steps[2].kill; may be empty
	Msg   string
}

// Error formats the problem as FILE:LINE: FIELD: MSG, leaving out what
// is unknown.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" || e.Line > 0 {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in the order its collector
// sorted them.
type Errors struct {
	List []Error
}

// Error returns one problem per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, err := range e.List {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Line returns the line of n, 0 when n is nil.
func Line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

// Column returns the column of n, 0 when n is nil.
func Column(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Column
}

// Deref follows aliases to the anchored node. It gives up on a loop of
// aliases (which the YAML parser does not produce) and returns nil.
func Deref(n *yaml.Node) *yaml.Node {
	for range 100 {
		if n == nil || n.Kind != yaml.AliasNode {
			return n
		}
		n = n.Alias
	}
	return nil
}

// IsNull tells whether n is a null scalar (null, ~ or nothing at all).
func IsNull(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Describe names what a node holds, for "want X, got Y" messages.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// Suggest returns ` (did you mean "x"?)` for the known key closest to key,
// or "" when none is close enough: at most two edits away and at most one
// edit per four characters of the known key (at least one).
func Suggest(key string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if d := distance(key, k); d < dist && d <= max(1, len(k)/4) {
			best, dist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the edit distance between a and b, a swap of two neighbours
// counting as one edit (optimal string alignment).
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
