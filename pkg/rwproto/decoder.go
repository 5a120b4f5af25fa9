package rwproto

import (
	"encoding/binary"
	"fmt"
)

// Protobuf wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// maxGroupDepth bounds the nesting of deprecated protobuf groups we skip.
const maxGroupDepth = 64

// decoder walks one protobuf message.
type decoder struct {
	buf []byte
	pos int
}

func (d *decoder) more() bool { return d.pos < len(d.buf) }

func (d *decoder) varint() (uint64, error) {
	// One-byte varints are nearly all of them: keep this path inlinable.
	if d.pos < len(d.buf) && d.buf[d.pos] < 0x80 {
		v := uint64(d.buf[d.pos])
		d.pos++
		return v, nil
	}
	return d.varintSlow()
}

func (d *decoder) varintSlow() (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, ErrVarint
		}
		if d.pos >= len(d.buf) {
			return 0, ErrTruncated
		}
		b := d.buf[d.pos]
		d.pos++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
}

func (d *decoder) tag() (field uint64, wire int, err error) {
	v, err := d.varint()
	if err != nil {
		return 0, 0, err
	}
	field, wire = v>>3, int(v&7)
	if field == 0 {
		return 0, 0, fmt.Errorf("invalid protobuf field number 0 at byte %d", d.pos)
	}
	return field, wire, nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.buf)-d.pos) {
		return nil, ErrTruncated
	}
	b := d.buf[d.pos : d.pos+int(n) : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

func (d *decoder) fixed64() (uint64, error) {
	if len(d.buf)-d.pos < 8 {
		return 0, ErrTruncated
	}
	v := binary.LittleEndian.Uint64(d.buf[d.pos:])
	d.pos += 8
	return v, nil
}

func (d *decoder) skip(wire int) error {
	switch wire {
	case wireVarint:
		_, err := d.varint()
		return err
	case wireFixed64:
		_, err := d.fixed64()
		return err
	case wireBytes:
		_, err := d.bytes()
		return err
	case wireFixed32:
		if len(d.buf)-d.pos < 4 {
			return ErrTruncated
		}
		d.pos += 4
		return nil
	case wireStartGroup:
		return d.skipGroup()
	}
	return fmt.Errorf("unsupported protobuf wire type %d at byte %d", wire, d.pos)
}

// skipGroup skips a deprecated protobuf group up to its end-group tag; nobody
// sends them, but other decoders accept them and so do we.
func (d *decoder) skipGroup() error {
	depth := 1
	for depth > 0 {
		if depth > maxGroupDepth {
			return fmt.Errorf("protobuf groups nested deeper than %d", maxGroupDepth)
		}
		v, err := d.varint() // field numbers are not checked inside a skipped group
		if err != nil {
			return err
		}
		switch wire := int(v & 7); wire {
		case wireStartGroup:
			depth++
		case wireEndGroup:
			depth--
		default:
			if err := d.skip(wire); err != nil {
				return err
			}
		}
	}
	return nil
}
