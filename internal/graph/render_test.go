package graph

import (
	"bytes"
	"context"
	"encoding/xml"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRenderReference renders the reference lab and checks what is in
// the pictures: every node's name in the SVG; a PNG wide enough to read
// with the fill colour of every tier in it.
func TestRenderReference(t *testing.T) {
	g := Build(load(t, "reference"), nil)
	ctx := context.Background()

	var svg bytes.Buffer
	start := time.Now()
	if err := g.Render(ctx, SVG, &svg); err != nil {
		t.Fatal(err)
	}
	t.Logf("SVG of %d nodes: %d bytes in %v", len(g.Nodes), svg.Len(), time.Since(start).Round(time.Millisecond))
	if !strings.HasPrefix(strings.TrimSpace(svg.String()), "<?xml") || !strings.Contains(svg.String(), "<svg") {
		t.Fatalf("not an SVG: %.200q", svg.String())
	}
	for _, n := range g.Nodes {
		if !strings.Contains(svg.String(), ">"+n.Name+"</text>") {
			t.Errorf("SVG lacks node %s", n.Name)
		}
	}
	for _, s := range g.Segments {
		if !strings.Contains(svg.String(), ">"+s.Name+"</text>") {
			t.Errorf("SVG lacks segment %s", s.Name)
		}
	}
	if err := xml.Unmarshal(svg.Bytes(), new(struct{})); err != nil {
		t.Errorf("SVG is not well-formed XML: %v", err)
	}

	var pngData bytes.Buffer
	start = time.Now()
	if err := g.Render(ctx, PNG, &pngData); err != nil {
		t.Fatal(err)
	}
	t.Logf("PNG: %d bytes in %v", pngData.Len(), time.Since(start).Round(time.Millisecond))
	img, err := png.Decode(&pngData)
	if err != nil {
		t.Fatalf("PNG does not decode: %v", err)
	}
	b := img.Bounds()
	t.Logf("PNG: %dx%d", b.Dx(), b.Dy())
	if b.Dx() < 1800 || b.Dy() < 800 {
		t.Errorf("PNG is %dx%d: want at least 1800x800", b.Dx(), b.Dy())
	}
	count := countColors(img)
	for rank := RankClients; rank <= RankServers; rank++ {
		// A node is some 120x60 pixels, less its text: ask for 1000
		// pixels (the hosts' tier has one node, internet).
		if c := RankColor(rank); count[rgb(t, c)] < 1000 {
			t.Errorf("PNG has %d pixels of tier %d's colour %s: want 1000 or more", count[rgb(t, c)], rank, c)
		}
	}
}

// countColors counts the pixels of each colour (0xrrggbb) of img.
func countColors(img image.Image) map[uint32]int {
	count := map[uint32]int{}
	if nrgba, ok := img.(*image.NRGBA); ok { // what gg's PNGs decode to, quicker to read
		for i := 0; i+3 < len(nrgba.Pix); i += 4 {
			count[uint32(nrgba.Pix[i])<<16|uint32(nrgba.Pix[i+1])<<8|uint32(nrgba.Pix[i+2])]++
		}
		return count
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			count[uint32(c.R)<<16|uint32(c.G)<<8|uint32(c.B)]++
		}
	}
	return count
}

// rgb reads a #rrggbb colour.
func rgb(t *testing.T, s string) uint32 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 16, 32)
	if err != nil || len(s) != 7 {
		t.Fatalf("colour %q: %v", s, err)
	}
	return uint32(v)
}

func TestRenderFormat(t *testing.T) {
	g := Build(load(t, "minimal"), nil)
	err := g.Render(context.Background(), "gif", &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `format "gif": want svg or png`) {
		t.Errorf("Render gif: error %v", err)
	}
}
