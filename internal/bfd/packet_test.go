package bfd

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPacketRoundTrip(t *testing.T) {
	for _, p := range []Packet{
		{State: Down, DetectMult: 3, MyDiscr: 1, DesiredMinTx: time.Second, RequiredMinRx: 20 * time.Millisecond},
		{Diag: DiagDetectExpired, State: Init, DetectMult: 1, MyDiscr: 0xffffffff, YourDiscr: 7},
		{State: Up, Poll: true, DetectMult: 255, MyDiscr: 9, YourDiscr: 8, DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 60 * time.Millisecond, RequiredMinEchoRx: time.Microsecond},
		{Diag: DiagReverseConcatPathDown, State: Up, Final: true, ControlPlaneIndependent: true, DetectMult: 5, MyDiscr: 2, YourDiscr: 3},
		{Diag: DiagAdminDown, State: AdminDown, DetectMult: 2, MyDiscr: 4},
	} {
		b := p.Marshal()
		if len(b) != 24 {
			t.Fatalf("Marshal(%+v) is %d bytes, want 24", p, len(b))
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(%+v)): %v", p, err)
		}
		if got != p {
			t.Errorf("Parse(Marshal(p)) = %+v, want %+v", got, p)
		}
	}
}

// golden is a control packet written out from the layout of RFC 5880 §4.1.
var golden = []byte{
	0x23,                   // version 1 (001), diag 3 (00011): neighbor signaled session down
	0xe0,                   // state up (11), poll (1), final 0, C 0, A 0, D 0, M 0
	0x03,                   // detect mult 3
	0x18,                   // length 24
	0x11, 0x22, 0x33, 0x44, // my discriminator
	0x55, 0x66, 0x77, 0x88, // your discriminator
	0x00, 0x00, 0x4e, 0x20, // desired min tx 20000 µs
	0x00, 0x04, 0x93, 0xe0, // required min rx 300000 µs
	0x00, 0x00, 0x00, 0x00, // required min echo rx 0
}

var goldenPacket = Packet{
	Diag:          DiagNeighborDown,
	State:         Up,
	Poll:          true,
	DetectMult:    3,
	MyDiscr:       0x11223344,
	YourDiscr:     0x55667788,
	DesiredMinTx:  20 * time.Millisecond,
	RequiredMinRx: 300 * time.Millisecond,
}

func TestPacketGolden(t *testing.T) {
	if got := goldenPacket.Marshal(); !bytes.Equal(got, golden) {
		t.Errorf("Marshal = % x\nwant      % x", got, golden)
	}
	got, err := Parse(golden)
	if err != nil {
		t.Fatalf("Parse(golden): %v", err)
	}
	if got != goldenPacket {
		t.Errorf("Parse(golden) = %+v, want %+v", got, goldenPacket)
	}
}

func TestParseAccepts(t *testing.T) {
	long := append(bytes.Clone(golden), 0, 0, 0, 0) // length field 24 in 28 bytes
	if _, err := Parse(long); err != nil {
		t.Errorf("Parse(golden + 4 bytes of padding): %v", err)
	}
	for _, st := range []State{Down, AdminDown} {
		p := Packet{State: st, DetectMult: 3, MyDiscr: 1}
		if _, err := Parse(p.Marshal()); err != nil {
			t.Errorf("Parse(%s with your discriminator 0): %v", st, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"short", func(b []byte) []byte { return b[:23] }, "23 bytes"},
		{"version 0", func(b []byte) []byte { b[0] &^= 0xe0; return b }, "version 0"},
		{"version 2", func(b []byte) []byte { b[0] = b[0]&0x1f | 2<<5; return b }, "version 2"},
		{"length below 24", func(b []byte) []byte { b[3] = 23; return b }, "length field 23"},
		{"length beyond packet", func(b []byte) []byte { b[3] = 28; return b }, "length field 28"},
		{"authentication", func(b []byte) []byte { b[1] |= 0x04; return b }, "authentication"},
		{"multipoint", func(b []byte) []byte { b[1] |= 0x01; return b }, "multipoint"},
		{"detect mult 0", func(b []byte) []byte { b[2] = 0; return b }, "multiplier 0"},
		{"my discriminator 0", func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }, "my discriminator 0"},
		{"up with your discriminator 0", func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b }, "state up with your discriminator 0"},
		{"init with your discriminator 0", func(b []byte) []byte {
			b[1] = b[1]&0x3f | byte(Init)<<6
			copy(b[8:12], []byte{0, 0, 0, 0})
			return b
		}, "state init with your discriminator 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.edit(bytes.Clone(golden)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestTextForms(t *testing.T) {
	b, err := json.Marshal(struct {
		S State
		D Diag
	}{Up, DiagDetectExpired})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"S":"up","D":"control detection time expired"}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	for st, want := range map[State]string{AdminDown: "admin-down", Down: "down", Init: "init", Up: "up", 4: "state(4)"} {
		if st.String() != want {
			t.Errorf("State(%d) = %q, want %q", st, st.String(), want)
		}
	}
	for d, want := range map[Diag]string{DiagNone: "", DiagNeighborDown: "neighbor signaled session down", DiagAdminDown: "administratively down", 31: "diag(31)"} {
		if d.String() != want {
			t.Errorf("Diag(%d) = %q, want %q", d, d.String(), want)
		}
	}
}

// TestSessionJSON checks that a Session survives JSON, as lab status
// carries it from the agents to the CLI.
func TestSessionJSON(t *testing.T) {
	for _, in := range []Session{
		{Peer: netip.MustParseAddr("192.0.2.4"), State: Up, LocalDiscr: 7, RemoteDiscr: 9, TxInterval: 200 * time.Millisecond},
		{Peer: netip.MustParseAddr("2001:db8::4"), State: Down, Diag: DiagDetectExpired, Downs: 2},
		{Peer: netip.MustParseAddr("2001:db8::5"), State: AdminDown, Diag: DiagNeighborDown},
	} {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out Session
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if out != in {
			t.Errorf("%s came back as %+v, want %+v", b, out, in)
		}
	}
	var s State
	if err := json.Unmarshal([]byte(`"sideways"`), &s); err == nil {
		t.Error("an unknown state was accepted")
	}
}
