package graph

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// svgFont is the SVG's font family: the Go font, that Layout measures,
// if the viewer has it, or a sans-serif about as wide.
const svgFont = "Go, Helvetica, Arial, sans-serif"

// writeSVG writes d as an SVG: lines, then boxes (each a group whose
// title is its tooltip), then texts.
func writeSVG(d *Drawing, w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %[1]s %[2]s" font-family="%s">`+"\n",
		num(d.Width), num(d.Height), esc(svgFont))
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	for _, ln := range d.Lines {
		var pts []string
		for _, pt := range ln.stroke() {
			pts = append(pts, num(pt.X)+","+num(pt.Y))
		}
		p(`<polyline points="%s" fill="none" stroke="%s" stroke-width="%s"%s/>`+"\n",
			strings.Join(pts, " "), esc(ln.Color), num(ln.Width), dash(ln.Dashed))
		if ln.Arrow {
			tip, l, r, _ := ln.arrowHead()
			p(`<polygon points="%s,%s %s,%s %s,%s" fill="%s"/>`+"\n",
				num(tip.X), num(tip.Y), num(l.X), num(l.Y), num(r.X), num(r.Y), esc(ln.Color))
		}
	}
	for _, bx := range d.Boxes {
		p(`<g class="%s">`, esc(string(bx.Kind)))
		if len(bx.Tooltip) > 0 {
			p(`<title>%s</title>`, esc(strings.Join(bx.Tooltip, "\n")))
		}
		style := fmt.Sprintf(`fill="%s" stroke="%s" stroke-width="1"%s`, esc(bx.Fill), esc(bx.Stroke), dash(bx.Dashed))
		x0, y0 := bx.X-bx.W/2, bx.Y-bx.H/2
		switch bx.Shape {
		case ShapeEllipse:
			p(`<ellipse cx="%s" cy="%s" rx="%s" ry="%s" %s/>`, num(bx.X), num(bx.Y), num(bx.W/2), num(bx.H/2), style)
		case ShapeCylinder:
			// The body with the back of its top, then the front of the top.
			rx, ry := bx.W/2, cylinderRY
			x1, y1 := x0+bx.W, y0+bx.H
			p(`<path d="M%s,%s V%s A%s,%s 0 0 0 %s,%s V%s A%s,%s 0 0 0 %s,%s Z" %s/>`,
				num(x0), num(y0+ry), num(y1-ry), num(rx), num(ry), num(x1), num(y1-ry),
				num(y0+ry), num(rx), num(ry), num(x0), num(y0+ry), style)
			p(`<path d="M%s,%s A%s,%s 0 0 0 %s,%s" fill="none" stroke="%s" stroke-width="1"/>`,
				num(x0), num(y0+ry), num(rx), num(ry), num(x1), num(y0+ry), esc(bx.Stroke))
		default:
			r := 0.0
			if bx.Shape == ShapeRounded {
				r = cornerRadius
			}
			p(`<rect x="%s" y="%s" width="%s" height="%s" rx="%s" %s/>`, num(x0), num(y0), num(bx.W), num(bx.H), num(r), style)
		}
		for _, t := range bx.textLines() {
			svgText(&b, t)
		}
		p("</g>\n")
	}
	for _, t := range d.Texts {
		svgText(&b, t)
		b.WriteString("\n")
	}
	p("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}

// The corners of rounded boxes and the top of cylinders, in pixels.
const (
	cornerRadius = 5.0
	cylinderRY   = 4.0
)

// svgText writes t as a text element, its baseline a third of its size
// below its middle.
func svgText(b *strings.Builder, t Text) {
	anchor := "middle"
	if t.Left {
		anchor = "start"
	}
	fmt.Fprintf(b, `<text x="%s" y="%s" font-size="%s" fill="%s" text-anchor="%s">%s</text>`,
		num(t.X), num(t.Y+baseline*t.Size), num(t.Size), esc(t.Color), anchor, esc(t.Text))
}

// baseline is how far below the middle of a line of text its baseline is,
// in font sizes.
const baseline = 0.35

// num writes v with one decimal at most.
func num(v float64) string {
	r := math.Round(v*10) / 10
	if r == 0 {
		r = 0 // not -0
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// dash is the dash attribute of a dashed line or outline.
func dash(dashed bool) string {
	if dashed {
		return ` stroke-dasharray="5,3"`
	}
	return ""
}

// esc escapes s for XML text and attributes.
func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s)) // writes to a bytes.Buffer: never fails
	return b.String()
}
