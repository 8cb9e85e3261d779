// Package bfd implements Bidirectional Forwarding Detection in asynchronous
// mode (RFC 5880) over single-hop UDP (RFC 5881), for IPv4 and IPv6, with
// an echo function made of ICMP echo requests that the peer's kernel
// answers (see echo.go), without authentication or demand mode.
//
// A [Server] runs one session per configured peer. Routers use it to notice
// within a fraction of a second that a load balancer went silent; the load
// balancers run the same server to answer them.
package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// State is a session state, as on the wire (RFC 5880 §4.1).
type State uint8

// Session states.
const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

var stateNames = [...]string{"admin-down", "down", "init", "up"}

// String returns "admin-down", "down", "init" or "up".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText returns the String form, so that JSON shows "up".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the String form back.
func (s *State) UnmarshalText(b []byte) error {
	i, err := parseName(stateNames[:], string(b), "bfd state")
	*s = State(i)
	return err
}

// Diag is the diagnostic code (RFC 5880 §4.1): why the session last left Up.
type Diag uint8

// Diagnostic codes.
const (
	DiagNone                  Diag = 0
	DiagDetectExpired         Diag = 1
	DiagEchoFailed            Diag = 2
	DiagNeighborDown          Diag = 3
	DiagForwardingReset       Diag = 4
	DiagPathDown              Diag = 5
	DiagConcatPathDown        Diag = 6
	DiagAdminDown             Diag = 7
	DiagReverseConcatPathDown Diag = 8
)

var diagNames = [...]string{
	"",
	"control detection time expired",
	"echo function failed",
	"neighbor signaled session down",
	"forwarding plane reset",
	"path down",
	"concatenated path down",
	"administratively down",
	"reverse concatenated path down",
}

// String describes the code as RFC 5880 §4.1 does; DiagNone is "".
func (d Diag) String() string {
	if int(d) < len(diagNames) {
		return diagNames[d]
	}
	return fmt.Sprintf("diag(%d)", uint8(d))
}

// MarshalText returns the String form.
func (d Diag) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads the String form back.
func (d *Diag) UnmarshalText(b []byte) error {
	i, err := parseName(diagNames[:], string(b), "bfd diagnostic")
	*d = Diag(i)
	return err
}

// parseName returns the index of name in names.
func parseName(names []string, name, what string) (int, error) {
	if i := slices.Index(names, name); i >= 0 {
		return i, nil
	}
	return 0, fmt.Errorf("unknown %s %q", what, name)
}

// Packet is a BFD control packet without authentication.
type Packet struct {
	Diag                    Diag
	State                   State
	Poll, Final             bool
	ControlPlaneIndependent bool
	DetectMult              uint8
	MyDiscr, YourDiscr      uint32
	// The intervals travel as microseconds.
	DesiredMinTx, RequiredMinRx, RequiredMinEchoRx time.Duration
}

// packetLen is the length of a control packet without authentication.
const packetLen = 24

// Flag bits of the second byte, after the two state bits. The demand bit
// (1 << 1) is neither sent nor honoured: sessions always stay asynchronous.
const (
	flagPoll  = 1 << 5
	flagFinal = 1 << 4
	flagCPI   = 1 << 3
	flagAuth  = 1 << 2
	flagMulti = 1 << 0
)

// Marshal encodes p as a 24-byte packet of version 1.
func (p Packet) Marshal() []byte {
	b := make([]byte, packetLen)
	b[0] = 1<<5 | byte(p.Diag&0x1f)
	b[1] = byte(p.State&3) << 6
	if p.Poll {
		b[1] |= flagPoll
	}
	if p.Final {
		b[1] |= flagFinal
	}
	if p.ControlPlaneIndependent {
		b[1] |= flagCPI
	}
	b[2] = p.DetectMult
	b[3] = packetLen
	binary.BigEndian.PutUint32(b[4:], p.MyDiscr)
	binary.BigEndian.PutUint32(b[8:], p.YourDiscr)
	binary.BigEndian.PutUint32(b[12:], micros(p.DesiredMinTx))
	binary.BigEndian.PutUint32(b[16:], micros(p.RequiredMinRx))
	binary.BigEndian.PutUint32(b[20:], micros(p.RequiredMinEchoRx))
	return b
}

// micros converts d to whole microseconds, clamped to what the wire holds.
func micros(d time.Duration) uint32 {
	return uint32(min(max(d/time.Microsecond, 0), math.MaxUint32))
}

// Parse decodes a control packet and applies the reception checks of RFC 5880
// §6.8.6 that need only the packet. Packets with authentication are rejected,
// since no session uses it.
func Parse(b []byte) (Packet, error) {
	if len(b) < packetLen {
		return Packet{}, fmt.Errorf("bfd packet of %d bytes, want at least %d", len(b), packetLen)
	}
	if v := b[0] >> 5; v != 1 {
		return Packet{}, fmt.Errorf("bfd version %d, want 1", v)
	}
	if n := int(b[3]); n < packetLen || n > len(b) {
		return Packet{}, fmt.Errorf("bfd length field %d out of range [%d, %d]", n, packetLen, len(b))
	}
	flags := b[1]
	if flags&flagAuth != 0 {
		return Packet{}, errors.New("bfd packet with authentication, which is not in use")
	}
	if flags&flagMulti != 0 {
		return Packet{}, errors.New("bfd packet with multipoint bit set")
	}
	p := Packet{
		Diag:                    Diag(b[0] & 0x1f),
		State:                   State(flags >> 6),
		Poll:                    flags&flagPoll != 0,
		Final:                   flags&flagFinal != 0,
		ControlPlaneIndependent: flags&flagCPI != 0,
		DetectMult:              b[2],
		MyDiscr:                 binary.BigEndian.Uint32(b[4:]),
		YourDiscr:               binary.BigEndian.Uint32(b[8:]),
		DesiredMinTx:            time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond,
		RequiredMinRx:           time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond,
		RequiredMinEchoRx:       time.Duration(binary.BigEndian.Uint32(b[20:])) * time.Microsecond,
	}
	switch {
	case p.DetectMult == 0:
		return Packet{}, errors.New("bfd packet with detect multiplier 0")
	case p.MyDiscr == 0:
		return Packet{}, errors.New("bfd packet with my discriminator 0")
	case p.YourDiscr == 0 && p.State != Down && p.State != AdminDown:
		return Packet{}, fmt.Errorf("bfd packet in state %s with your discriminator 0", p.State)
	}
	return p, nil
}
