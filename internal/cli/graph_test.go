package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lab-lb/lab/internal/graph"
)

const minimalFile = "../../topologies/minimal.yaml"

// TestGraphFile draws a topology file, which needs no lab: Mermaid on
// standard output is the graph package's; -o json is the model.
func TestGraphFile(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"graph", minimalFile, "--format", "mermaid"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "graph", "testdata", "minimal.mmd"))
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("lab graph %s --format mermaid printed\n%s\nwant internal/graph/testdata/minimal.mmd:\n%s", minimalFile, out.String(), want)
	}

	out.Reset()
	if err := Run(context.Background(), []string{"graph", minimalFile, "-o", "json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var g graph.Graph
	if err := json.Unmarshal(out.Bytes(), &g); err != nil {
		t.Fatalf("lab graph -o json: %v\n%s", err, out.String())
	}
	if g.Name != "minimal" || len(g.Nodes) != 8 || len(g.Segments) != 3 || g.Live {
		t.Errorf("lab graph -o json: %+v", g)
	}

	out.Reset()
	if err := Run(context.Background(), []string{"graph", minimalFile, "--addresses"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), `digraph "minimal" {`) || !strings.Contains(out.String(), "192.0.2.128/25") {
		t.Errorf("lab graph --addresses (DOT by default) printed:\n%s", out.String())
	}
}

// TestGraphFiles checks --svg: the file is written, and nothing goes to
// standard output unless --format asks.
func TestGraphFiles(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "minimal.svg")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"graph", minimalFile, "--svg", svg}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), ">lb7-2</text>") {
		t.Errorf("%s is not the minimal lab's SVG:\n%.300s", svg, b)
	}
	if out.Len() != 0 {
		t.Errorf("lab graph --svg FILE printed %q, want nothing", out.String())
	}
}

func TestGraphErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"graph", minimalFile, "--format", "gif"}, `--format "gif": want dot, mermaid, svg or png`},
		{[]string{"graph", minimalFile, "--format", "dot", "-o", "json"}, "-o json prints the model"},
		{[]string{"graph", minimalFile, "-o", "yaml"}, `-o "yaml": want text or json`},
		{[]string{"graph", "no-such-file.yaml"}, "no-such-file.yaml"},
		{[]string{"--name", "no-such-lab-here", "graph"}, "no-such-lab-here"},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lab %s: error %v, want one with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
