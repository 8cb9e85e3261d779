package graph

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/fogleman/gg"
	"github.com/golang/freetype/truetype"
	"golang.org/x/image/font"
)

// The scale of the PNGs drawPNG writes, in pixels of the PNG to a pixel
// of the drawing: twice, so that the text of a graph as wide as the
// reference lab's stays readable on a screen that scales it down; less
// for a drawing so wide (with --addresses) that it would pass
// pngMaxWidth, but never under one.
const (
	pngScale    = 2
	pngMaxWidth = 4000
)

// drawPNG draws d as a PNG, as writeSVG writes it: lines, boxes, texts.
// Text is set in the Go font, whatever fonts the host has.
func drawPNG(d *Drawing, w io.Writer) error {
	scale := max(1, min(pngScale, pngMaxWidth/d.Width))
	p := &painter{
		dc:    gg.NewContext(int(math.Ceil(d.Width*scale)), int(math.Ceil(d.Height*scale))),
		scale: scale,
		faces: map[float64]font.Face{},
	}
	p.dc.SetColor(color.White)
	p.dc.Clear()
	p.dc.SetLineJoinRound()
	for _, ln := range d.Lines {
		p.line(ln)
	}
	for _, b := range d.Boxes {
		p.box(b)
	}
	for _, t := range d.Texts {
		p.text(t)
	}
	if err := p.dc.EncodePNG(w); err != nil {
		return fmt.Errorf("draw png: %w", err)
	}
	return nil
}

// painter draws a Drawing on an image.
type painter struct {
	dc    *gg.Context
	scale float64               // pixels of the image to a pixel of the drawing
	faces map[float64]font.Face // by size in pixels of the image
}

func (p *painter) line(ln Line) {
	for i, pt := range ln.stroke() {
		if i == 0 {
			p.dc.MoveTo(pt.X*p.scale, pt.Y*p.scale)
		} else {
			p.dc.LineTo(pt.X*p.scale, pt.Y*p.scale)
		}
	}
	p.stroke(ln.Color, ln.Width, ln.Dashed)
	if ln.Arrow {
		tip, l, r, _ := ln.arrowHead()
		for _, pt := range []Point{tip, l, r} {
			p.dc.LineTo(pt.X*p.scale, pt.Y*p.scale)
		}
		p.dc.ClosePath()
		p.dc.SetColor(parseColor(ln.Color))
		p.dc.Fill()
	}
}

// box draws b's shape, filled and outlined, then its text.
func (p *painter) box(b Box) {
	s := p.scale
	x0, y0, w, h := (b.X-b.W/2)*s, (b.Y-b.H/2)*s, b.W*s, b.H*s
	switch b.Shape {
	case ShapeEllipse:
		p.dc.DrawEllipse(b.X*s, b.Y*s, w/2, h/2)
	case ShapeCylinder:
		// The body with the back of its top, then the front of the top.
		rx, ry, cx := w/2, cylinderRY*s, b.X*s
		p.dc.MoveTo(x0, y0+ry)
		p.dc.LineTo(x0, y0+h-ry)
		p.dc.DrawEllipticalArc(cx, y0+h-ry, rx, ry, math.Pi, 0)
		p.dc.LineTo(x0+w, y0+ry)
		p.dc.DrawEllipticalArc(cx, y0+ry, rx, ry, 0, -math.Pi)
		p.dc.ClosePath()
		p.fill(b.Fill)
		p.stroke(b.Stroke, 1, b.Dashed)
		p.dc.DrawEllipticalArc(cx, y0+ry, rx, ry, math.Pi, 0)
	case ShapeRounded:
		p.dc.DrawRoundedRectangle(x0, y0, w, h, cornerRadius*s)
	default:
		p.dc.DrawRectangle(x0, y0, w, h)
	}
	if b.Shape != ShapeCylinder {
		p.fill(b.Fill)
	}
	p.stroke(b.Stroke, 1, b.Dashed)
	for _, t := range b.textLines() {
		p.text(t)
	}
}

// fill fills the current path, and keeps it.
func (p *painter) fill(c string) {
	p.dc.SetColor(parseColor(c))
	p.dc.FillPreserve()
}

// stroke strokes the current path, and clears it.
func (p *painter) stroke(c string, width float64, dashed bool) {
	p.dc.SetColor(parseColor(c))
	p.dc.SetLineWidth(width * p.scale)
	if dashed {
		p.dc.SetDash(5*p.scale, 3*p.scale)
	} else {
		p.dc.SetDash()
	}
	p.dc.Stroke()
}

// text draws t, its baseline as in the SVG.
func (p *painter) text(t Text) {
	p.dc.SetFontFace(p.face(t.Size * p.scale))
	p.dc.SetColor(parseColor(t.Color))
	ax := 0.5
	if t.Left {
		ax = 0
	}
	p.dc.DrawStringAnchored(t.Text, t.X*p.scale, (t.Y+baseline*t.Size)*p.scale, ax, 0)
}

// face returns the Go font at size pixels, rounded to a tenth.
func (p *painter) face(size float64) font.Face {
	size = math.Round(size*10) / 10
	if f, ok := p.faces[size]; ok {
		return f
	}
	f := truetype.NewFace(goFont(), &truetype.Options{Size: size, Hinting: font.HintingFull})
	p.faces[size] = f
	return f
}

// parseColor reads a #rrggbb colour; anything else is black.
func parseColor(s string) color.Color {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 16, 32)
	if err != nil || len(s) != 7 {
		return color.Black
	}
	return color.NRGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}
