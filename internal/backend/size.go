package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// MaxSize is the largest generated body, 1 TiB.
const MaxSize = 1 << 40

// patternPeriod is the period of the generated content: a prime, so that a
// lost or repeated packet or buffer shows as a shifted pattern.
const patternPeriod = 251

// PatternByte returns the byte at offset off of every generated body: 250
// printable ASCII characters then a newline, repeated.
func PatternByte(off int64) byte {
	i := off % patternPeriod
	if i == patternPeriod-1 {
		return '\n'
	}
	return byte('!' + i%94)
}

// newBlock returns a whole number of pattern periods, about 64 KiB, written
// again and again to stream a body in constant memory.
func newBlock() []byte {
	b := make([]byte, patternPeriod*256)
	for i := range b {
		b[i] = PatternByte(int64(i))
	}
	return b
}

// parseSize parses "<N><unit>" with N a positive decimal without leading
// zero and unit K, M or G (powers of 1024), up to MaxSize bytes.
func parseSize(s string) (int64, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("size %q: want <N>K, <N>M or <N>G", s)
	}
	var shift uint
	switch s[len(s)-1] {
	case 'K':
		shift = 10
	case 'M':
		shift = 20
	case 'G':
		shift = 30
	default:
		return 0, fmt.Errorf("size %q: unit must be K, M or G", s)
	}
	digits := s[:len(s)-1]
	if digits[0] == '0' {
		return 0, fmt.Errorf("size %q: number must be positive, without leading zero", s)
	}
	var n int64
	for i := range len(digits) {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("size %q: %q is not a decimal number", s, digits)
		}
		n = 10*n + int64(c-'0')
		if n > MaxSize>>shift {
			return 0, fmt.Errorf("size %q: larger than %d bytes", s, int64(MaxSize))
		}
	}
	return n << shift, nil
}

// stream writes size bytes of the pattern to w from block, stopping early
// when ctx is done or a write fails (the client went away). It returns the
// number of bytes written.
func stream(ctx context.Context, w io.Writer, block []byte, size int64) (int64, error) {
	if len(block)%patternPeriod != 0 {
		return 0, errors.New("pattern block is not a whole number of periods")
	}
	var sent int64
	for sent < size {
		if err := ctx.Err(); err != nil {
			return sent, fmt.Errorf("stream body: %w", err)
		}
		n, err := w.Write(block[:min(int64(len(block)), size-sent)])
		sent += int64(n)
		if err != nil {
			return sent, fmt.Errorf("stream body: %w", err)
		}
	}
	return sent, nil
}
