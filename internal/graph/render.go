package graph

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/goccy/go-graphviz"
)

// Format is a format Render writes.
type Format string

// The formats Render writes.
const (
	SVG Format = "svg"
	PNG Format = "png"
)

// PNGDPI is the resolution of the PNGs Render writes: twice Graphviz's
// 72, so that the text of a graph as wide as the reference lab's stays
// readable on a screen that scales it down.
const PNGDPI = 144

// renderMu serialises the calls into Graphviz: go-graphviz runs one
// WebAssembly instance for the whole process.
var renderMu sync.Mutex

// Render lays g out with Graphviz's dot, which go-graphviz embeds as
// WebAssembly (no system tool), and writes it to w in format f.
//
// SVG is Graphviz's own. A PNG is drawn here, from the layout Graphviz
// gives as JSON (its xdot drawing operations; see drawPNG), because
// go-graphviz's own PNG renderer (v0.2.10) draws fills but no strokes:
// no edges, no outlines.
func (g *Graph) Render(ctx context.Context, f Format, w io.Writer) error {
	switch f {
	case SVG:
		return layout(ctx, g.DOT(), "svg", w)
	case PNG:
		var js bytes.Buffer
		if err := layout(ctx, g.DOT(), "json", &js); err != nil {
			return err
		}
		return drawPNG(js.Bytes(), PNGDPI, w)
	}
	return fmt.Errorf("render graph: format %q: want svg or png", f)
}

// layout lays out the DOT graph src with Graphviz's dot and writes it in
// Graphviz's output format.
func layout(ctx context.Context, src, format string, w io.Writer) error {
	renderMu.Lock()
	defer renderMu.Unlock()
	gv, err := graphviz.New(ctx)
	if err != nil {
		return fmt.Errorf("render graph: start graphviz: %w", err)
	}
	defer gv.Close()
	parsed, err := graphviz.ParseBytes([]byte(src))
	if err != nil {
		return fmt.Errorf("render graph: parse dot: %w", err)
	}
	defer parsed.Close()
	if err := gv.Render(ctx, parsed, graphviz.Format(format), w); err != nil {
		return fmt.Errorf("render graph as %s: %w", format, err)
	}
	return nil
}
