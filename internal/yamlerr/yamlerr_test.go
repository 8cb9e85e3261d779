package yamlerr

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "a.yaml", Line: 3, Field: "nodes.r1", Msg: "bad"}, "a.yaml:3: nodes.r1: bad"},
		{"no field", Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{"no line", Error{File: "a.yaml", Field: "steps[0]", Msg: "bad"}, "a.yaml: steps[0]: bad"},
		{"no file", Error{Line: 7, Msg: "bad"}, ":7: bad"},
		{"no file no line", Error{Field: "steps", Msg: "bad"}, "steps: bad"},
		{"message only", Error{Msg: "bad"}, "bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorsFormat(t *testing.T) {
	tests := []struct {
		name string
		errs Errors
		want string
	}{
		{"none", Errors{}, ""},
		{"one", Errors{List: []Error{{File: "a.yaml", Line: 1, Msg: "x"}}}, "a.yaml:1: x"},
		{"two", Errors{List: []Error{{File: "a.yaml", Line: 1, Msg: "x"}, {File: "b.yaml", Line: 2, Field: "f", Msg: "y"}}}, "a.yaml:1: x\nb.yaml:2: f: y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.errs.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"name", "nodes", "links", "hold-time", "keepalive", "at"}
	tests := []struct {
		name  string
		key   string
		known []string
		want  string
	}{
		{"exact key", "nodes", known, ` (did you mean "nodes"?)`},
		{"one substitution", "linkz", known, ` (did you mean "links"?)`},
		{"swap of neighbours", "hodl-time", known, ` (did you mean "hold-time"?)`},
		{"two edits on a long key", "kepaliv", known, ` (did you mean "keepalive"?)`},
		{"swap on a short key", "lniks", known, ` (did you mean "links"?)`},
		{"too far on a short key", "lnkx", known, ""},
		{"one edit on a two-letter key", "a", known, ` (did you mean "at"?)`},
		{"closest wins", "keepalivee", []string{"keepalive-x", "keepalive"}, ` (did you mean "keepalive"?)`},
		{"first of equals wins", "nam", []string{"name", "nap"}, ` (did you mean "name"?)`},
		{"nothing close", "zzzzzz", known, ""},
		{"no known keys", "name", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Suggest(tc.key, tc.known); got != tc.want {
				t.Errorf("Suggest(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestNodeHelpers(t *testing.T) {
	var doc yaml.Node
	src := "a: &x 1\nb: *x\nc: ~\nd: [1]\ne: {f: 2}\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	m := doc.Content[0]
	value := func(i int) *yaml.Node { return m.Content[2*i+1] }
	tests := []struct {
		name           string
		n              *yaml.Node
		line, column   int
		null           bool
		describe       string
		derefIsAnchorA bool
	}{
		{"scalar", value(0), 1, 4, false, `"1"`, true},
		{"alias", value(1), 2, 4, false, "nothing", true},
		{"null", value(2), 3, 4, true, `"~"`, false},
		{"list", value(3), 4, 4, false, "a list", false},
		{"mapping", value(4), 5, 4, false, "a mapping", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Line(tc.n); got != tc.line {
				t.Errorf("Line = %d, want %d", got, tc.line)
			}
			if got := Column(tc.n); got != tc.column {
				t.Errorf("Column = %d, want %d", got, tc.column)
			}
			if got := IsNull(tc.n); got != tc.null {
				t.Errorf("IsNull = %v, want %v", got, tc.null)
			}
			if got := Describe(tc.n); got != tc.describe {
				t.Errorf("Describe = %q, want %q", got, tc.describe)
			}
			if got := Deref(tc.n) == value(0); got != tc.derefIsAnchorA {
				t.Errorf("Deref is the anchored node = %v, want %v", got, tc.derefIsAnchorA)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		if Line(nil) != 0 || Column(nil) != 0 || IsNull(nil) || Deref(nil) != nil {
			t.Errorf("Line, Column, IsNull, Deref of nil = %d, %d, %v, %v, want 0, 0, false, nil",
				Line(nil), Column(nil), IsNull(nil), Deref(nil))
		}
	})
	t.Run("alias loop", func(t *testing.T) {
		loop := &yaml.Node{Kind: yaml.AliasNode}
		loop.Alias = loop
		if got := Deref(loop); got != nil {
			t.Errorf("Deref of a loop = %v, want nil", got)
		}
	})
}
