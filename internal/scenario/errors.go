package scenario

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/yamlerr"
)

// Error is one problem found in a scenario, at a line of its file.
type Error = yamlerr.Error

// Errors is every problem found in a scenario, sorted by line.
type Errors = yamlerr.Errors

// collector gathers problems. It keeps the first problem of each field
// only, so that a value that failed to parse is not reported again by the
// checks that follow, and it knows the line of every field the parser saw.
type collector struct {
	file  string
	list  []Error
	cols  []int
	bad   map[string]bool
	lines map[string]int // field path to the line of its value
}

// add records a problem at line and column and marks its field, so that
// the checks of validate leave that field alone.
// A field gets one problem only.
func (c *collector) add(line, col int, field, format string, args ...any) {
	if field != "" && c.bad[field] {
		return
	}
	c.record(line, col, field, fmt.Sprintf(format, args...))
	c.mark(field)
}

// record records a problem unless the same one is already recorded.
func (c *collector) record(line, col int, field, msg string) {
	e := Error{File: c.file, Line: line, Field: field, Msg: msg}
	for _, old := range c.list {
		if old == e {
			return
		}
	}
	c.list = append(c.list, e)
	c.cols = append(c.cols, col)
}

// mark notes that field has a problem already.
func (c *collector) mark(field string) {
	if field == "" {
		return
	}
	if c.bad == nil {
		c.bad = map[string]bool{}
	}
	c.bad[field] = true
}

// field records a problem found by validate with a field, at the line
// where the parser saw the field or else its closest parent. It is dropped
// when the field or one of its parents already has a problem.
func (c *collector) field(field, format string, args ...any) {
	for f := field; f != ""; f = parent(f) {
		if c.bad[f] {
			return
		}
	}
	c.add(c.lineOf(field), 0, field, format, args...)
}

// parent returns the path of the field that holds field, "" at the top.
func parent(field string) string {
	if i := strings.LastIndexAny(field, ".["); i >= 0 {
		return field[:i]
	}
	return ""
}

// lineOf returns the line of field or of its closest parent that the
// parser saw, 0 when none.
func (c *collector) lineOf(field string) int {
	for {
		if l, ok := c.lines[field]; ok {
			return l
		}
		if field == "" {
			return 0
		}
		field = parent(field)
	}
}

// see remembers the line of a field.
func (c *collector) see(field string, line int) {
	if c.lines == nil {
		c.lines = map[string]int{}
	}
	if _, ok := c.lines[field]; !ok {
		c.lines[field] = line
	}
}

// err returns the problems sorted by line and column, or nil.
func (c *collector) err() error {
	if len(c.list) == 0 {
		return nil
	}
	order := make([]int, len(c.list))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		return cmp.Or(cmp.Compare(c.list[i].Line, c.list[j].Line), cmp.Compare(c.cols[i], c.cols[j]))
	})
	list := make([]Error, len(order))
	for i, o := range order {
		list[i] = c.list[o]
	}
	return &Errors{List: list}
}
