package testenv

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image"
	"image/color"
	"io"
	"testing"
)

// Pixels counts the pixels of img, from row top down, whose colour is c
// give or take a little (anti-aliasing): how tests of drawn images check
// that a series or a node of some colour is there.
func Pixels(img image.Image, top int, c color.RGBA) int {
	near := func(a, b uint8) bool { return max(a, b)-min(a, b) <= 6 }
	n := 0
	r := img.Bounds()
	for y := max(top, r.Min.Y); y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			p := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			if near(p.R, c.R) && near(p.G, c.G) && near(p.B, c.B) {
				n++
			}
		}
	}
	return n
}

// SVGTexts returns the texts of an SVG document's text elements, failing
// the test when the document is not well-formed XML.
func SVGTexts(t testing.TB, data []byte) []string {
	t.Helper()
	var texts []string
	dec := xml.NewDecoder(bytes.NewReader(data))
	inText := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return texts
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inText = tok.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				texts = append(texts, string(tok))
			}
		}
	}
}
