// Package pcapstream passes a pcap stream on in whole records.
//
// tcpdump run in a node writes its pcap to a pipe, which `lab capture`
// receives in chunks that need not end where a packet record ends. Cut
// there (^C, --duration, the lab going down), the file would end with half
// a record, which readers call corrupt. A Writer holds a record back until
// all of it has arrived, so whatever it has written is always a complete,
// readable pcap file.
package pcapstream

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The classic pcap format (not pcapng): a 24-byte file header, then
// records of a 16-byte header and the captured bytes.
const (
	fileHeaderLen   = 24
	recordHeaderLen = 16
	magicMicro      = 0xa1b2c3d4
	magicNano       = 0xa1b23c4d
	// maxRecord bounds one record's captured length: tcpdump's largest
	// snapshot length. A larger one means the stream is not pcap.
	maxRecord = 262144
)

// Link types a capture on Linux commonly has.
const (
	LinkTypeEthernet = 1   // DLT_EN10MB: one interface of a node
	LinkTypeLinuxSLL = 113 // Linux cooked capture: tcpdump -i any, libpcap < 1.10
	LinkTypeRaw      = 101 // raw IP: IPIP and ip6ip6 tunnel devices
	// LinkTypeLinuxSLL2 is Linux cooked capture v2: tcpdump -i any with
	// libpcap 1.10 and later.
	LinkTypeLinuxSLL2 = 276
)

// Writer writes a pcap stream to an underlying writer in whole records:
// the file header once it has all of it, then each packet record once it
// has all of it. It is not safe for concurrent use.
type Writer struct {
	w        io.Writer
	buf      []byte
	order    binary.ByteOrder // nil until the file header has arrived
	linkType uint32
	packets  int
	bytes    int64
	err      error // the first error: it ends the stream
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write takes the next chunk of the stream and writes out every record it
// completes. It fails when the stream is not a classic pcap stream or
// when the underlying writer fails.
func (p *Writer) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	p.buf = append(p.buf, b...)
	off := 0
	for {
		n, err := p.next(p.buf[off:])
		if err != nil {
			p.err = err
			return 0, err
		}
		if n == 0 {
			break
		}
		if _, err := p.w.Write(p.buf[off : off+n]); err != nil {
			p.err = fmt.Errorf("write pcap: %w", err)
			return 0, p.err
		}
		off += n
	}
	p.buf = append(p.buf[:0], p.buf[off:]...)
	return len(b), nil
}

// Err returns the error that ended the stream, if any: the stream is not
// pcap, or the underlying writer failed.
func (p *Writer) Err() error { return p.err }

// next returns the length of the complete unit (file header or record)
// at the start of b, 0 when b does not hold all of it yet.
func (p *Writer) next(b []byte) (int, error) {
	if p.order == nil {
		if len(b) < fileHeaderLen {
			return 0, nil
		}
		switch {
		case isMagic(binary.LittleEndian.Uint32(b)):
			p.order = binary.LittleEndian
		case isMagic(binary.BigEndian.Uint32(b)):
			p.order = binary.BigEndian
		default:
			return 0, fmt.Errorf("not a pcap stream: magic number %#08x", binary.LittleEndian.Uint32(b))
		}
		// The top bits of the link type field may carry FCS information.
		p.linkType = p.order.Uint32(b[20:]) & 0x0fffffff
		return fileHeaderLen, nil
	}
	if len(b) < recordHeaderLen {
		return 0, nil
	}
	n := p.order.Uint32(b[8:]) // captured length
	if n > maxRecord {
		return 0, fmt.Errorf("corrupt pcap stream: a record of %d bytes (at most %d)", n, maxRecord)
	}
	if len(b) < recordHeaderLen+int(n) {
		return 0, nil
	}
	p.packets++
	p.bytes += int64(n)
	return recordHeaderLen + int(n), nil
}

func isMagic(m uint32) bool { return m == magicMicro || m == magicNano }

// Started reports whether the file header has been written.
func (p *Writer) Started() bool { return p.order != nil }

// LinkType is the stream's link type (LinkTypeEthernet...), 0 before the
// file header has arrived.
func (p *Writer) LinkType() uint32 { return p.linkType }

// Packets is the number of packet records written.
func (p *Writer) Packets() int { return p.packets }

// Bytes is the number of captured packet bytes written (without headers).
func (p *Writer) Bytes() int64 { return p.bytes }

// Pending is the number of bytes held back: the start of a record that
// has not all arrived. They are dropped when the stream ends there.
func (p *Writer) Pending() int { return len(p.buf) }
