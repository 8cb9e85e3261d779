package graph

import (
	"context"
	"fmt"
	"io"
)

// Format is a format Render writes.
type Format string

// The formats Render writes.
const (
	SVG Format = "svg"
	PNG Format = "png"
)

// Render lays g out (Layout) and writes it to w in format f: SVG, or PNG
// drawn in Go with the Go font. No system tool, nothing at start: lab
// runs its own binary many times over in the VM, so drawing costs only
// when asked.
func (g *Graph) Render(ctx context.Context, f Format, w io.Writer) error {
	switch f {
	case SVG:
		return writeSVG(Layout(g), w)
	case PNG:
		return drawPNG(Layout(g), w)
	}
	return fmt.Errorf("render graph: format %q: want svg or png", f)
}
