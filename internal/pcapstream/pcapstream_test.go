package pcapstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// stream builds a pcap stream in byte order o with one record per packet.
func stream(o binary.AppendByteOrder, magic, linkType uint32, packets ...[]byte) []byte {
	b := o.AppendUint32(nil, magic)
	b = o.AppendUint16(b, 2)
	b = o.AppendUint16(b, 4)
	b = o.AppendUint32(b, 0)      // thiszone
	b = o.AppendUint32(b, 0)      // sigfigs
	b = o.AppendUint32(b, 262144) // snaplen
	b = o.AppendUint32(b, linkType)
	for i, p := range packets {
		b = o.AppendUint32(b, uint32(1700000000+i))
		b = o.AppendUint32(b, 0)
		b = o.AppendUint32(b, uint32(len(p)))
		b = o.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// TestWholeRecords feeds streams in chunks of every size and cuts them
// everywhere: what comes out is always the stream up to the end of the
// last complete record, whatever the byte order and timestamp precision.
func TestWholeRecords(t *testing.T) {
	packets := [][]byte{bytes.Repeat([]byte{0xaa}, 60), {}, bytes.Repeat([]byte{0x55}, 1514), bytes.Repeat([]byte{0x0f}, 7)}
	for _, tc := range []struct {
		name  string
		order binary.AppendByteOrder
		magic uint32
	}{
		{"little-endian µs", binary.LittleEndian, magicMicro},
		{"big-endian µs", binary.BigEndian, magicMicro},
		{"little-endian ns", binary.LittleEndian, magicNano},
	} {
		full := stream(tc.order, tc.magic, LinkTypeLinuxSLL2, packets...)
		// ends[i] is where the stream's i-th unit ends: the header, then each record.
		ends := []int{fileHeaderLen}
		for _, p := range packets {
			ends = append(ends, ends[len(ends)-1]+recordHeaderLen+len(p))
		}
		for _, chunk := range []int{1, 3, 16, 24, 100, 4096} {
			for cut := 0; cut <= len(full); cut += 1 + cut/7 {
				var out bytes.Buffer
				w := NewWriter(&out)
				for off := 0; off < cut; off += chunk {
					end := min(off+chunk, cut)
					if n, err := w.Write(full[off:end]); err != nil || n != end-off {
						t.Fatalf("%s: Write = %d, %v", tc.name, n, err)
					}
				}
				complete, units := 0, 0
				for _, e := range ends {
					if e <= cut {
						complete, units = e, units+1
					}
				}
				if !bytes.Equal(out.Bytes(), full[:complete]) {
					t.Fatalf("%s, chunks of %d, cut at %d: wrote %d bytes, want the first %d", tc.name, chunk, cut, out.Len(), complete)
				}
				if want := max(units-1, 0); w.Packets() != want {
					t.Errorf("%s, cut at %d: %d packets, want %d", tc.name, cut, w.Packets(), want)
				}
				if w.Pending() != cut-complete {
					t.Errorf("%s, cut at %d: %d bytes pending, want %d", tc.name, cut, w.Pending(), cut-complete)
				}
				if units > 0 && (!w.Started() || w.LinkType() != LinkTypeLinuxSLL2) {
					t.Errorf("%s: started %v, link type %d", tc.name, w.Started(), w.LinkType())
				}
			}
		}
	}
}

func TestNotPcap(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	_, err := w.Write([]byte("tcpdump: listening on any, link-type LINUX_SLL2"))
	if err == nil || !strings.Contains(err.Error(), "not a pcap stream") {
		t.Errorf("text: error %v", err)
	}
	// A record longer than any snapshot length.
	b := stream(binary.LittleEndian, magicMicro, LinkTypeEthernet)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 1<<30)
	b = binary.LittleEndian.AppendUint32(b, 1<<30)
	w = NewWriter(&bytes.Buffer{})
	if _, err := w.Write(b); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("huge record: error %v", err)
	}
}

type failWriter struct{}

var errFull = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errFull }

func TestWriteError(t *testing.T) {
	w := NewWriter(failWriter{})
	if _, err := w.Write(stream(binary.LittleEndian, magicMicro, LinkTypeEthernet)); !errors.Is(err, errFull) {
		t.Errorf("error %v, want the underlying writer's", err)
	}
	if _, err := w.Write([]byte{0}); !errors.Is(err, errFull) || !errors.Is(w.Err(), errFull) {
		t.Errorf("after a failure: Write %v, Err %v; want the first error", err, w.Err())
	}
}
