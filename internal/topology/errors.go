package topology

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lab-lb/lab/internal/yamlerr"
)

// Error is one problem found in a topology, at a line of a file.
type Error = yamlerr.Error

// Errors is every problem found in a topology, sorted by file and line.
// Parse returns it as its error.
type Errors = yamlerr.Errors

// origin tells where a YAML node was written.
type origin struct {
	file string
	path string
}

// collector gathers problems, drops repeats and remembers where every node
// was written so that a problem found after merging still points at the
// user's line.
type collector struct {
	file   string // the topology file; its problems sort first
	list   []Error
	cols   []int // the column of each problem, to sort those of one line
	seen   map[Error]bool
	origin map[*yaml.Node]origin
}

func newCollector(file string) *collector {
	return &collector{file: file, seen: map[Error]bool{}, origin: map[*yaml.Node]origin{}}
}

// add records a problem unless the same one is already recorded.
func (c *collector) add(file string, line, col int, field, format string, args ...any) {
	e := Error{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	if c.seen[e] {
		return
	}
	c.seen[e] = true
	c.list = append(c.list, e)
	c.cols = append(c.cols, col)
}

// at records a problem with the value written at n, named by its path.
func (c *collector) at(n *yaml.Node, format string, args ...any) {
	o := c.where(n)
	c.add(o.file, yamlerr.Line(n), yamlerr.Column(n), o.path, format, args...)
}

// atField records a problem at the line of n, under an explicit field path.
func (c *collector) atField(n *yaml.Node, field, format string, args ...any) {
	c.add(c.where(n).file, yamlerr.Line(n), yamlerr.Column(n), field, format, args...)
}

// where returns the origin of n, defaulting to the topology file.
func (c *collector) where(n *yaml.Node) origin {
	if o, ok := c.origin[n]; ok {
		return o
	}
	return origin{file: c.file}
}

// note records where n was written unless it is already known.
func (c *collector) note(n *yaml.Node, file, path string) {
	if _, ok := c.origin[n]; !ok {
		c.origin[n] = origin{file: file, path: path}
	}
}

// err returns the problems sorted by file (the topology first), line and
// column, or nil when there are none.
func (c *collector) err() error {
	if len(c.list) == 0 {
		return nil
	}
	order := make([]int, len(c.list))
	for i := range order {
		order[i] = i
	}
	rank := func(f string) int {
		if f == c.file {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(order, func(i, j int) int {
		a, b := c.list[i], c.list[j]
		return cmp.Or(
			cmp.Compare(rank(a.File), rank(b.File)),
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(c.cols[i], c.cols[j]),
		)
	})
	list := make([]Error, len(order))
	for i, o := range order {
		list[i] = c.list[o]
	}
	return &Errors{List: list}
}
