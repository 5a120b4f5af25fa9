package rwproto

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// AppendSeries appends a series, given as its own protobuf encoding
// (TimeSeries.Raw), to dst, an encoded WriteRequest under construction. A
// request built this way from the series of decoded requests is a valid
// WriteRequest: nothing of the series is encoded again.
func AppendSeries(dst, raw []byte) []byte {
	return appendField(dst, 1, raw)
}

// AppendMetadata appends metadata, given as its own encoding (Metadata.Raw).
func AppendMetadata(dst, raw []byte) []byte {
	return appendField(dst, 3, raw)
}

func appendField(dst []byte, field uint64, raw []byte) []byte {
	dst = binary.AppendUvarint(dst, field<<3|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(raw)))
	return append(dst, raw...)
}

// Encode returns the series' protobuf encoding (a TimeSeries message body)
// built from its fields, for a series whose fields no longer match Raw
// (validation dropped some of its exemplars, or the HA replica label was
// removed). All its labels must be held.
func (ts *TimeSeries) Encode() ([]byte, error) {
	return ts.AppendEncoded(nil)
}

// AppendEncoded appends the series' remote-write 1.0 encoding (a TimeSeries
// message body) to dst, the start timestamps of samples included (field 3
// of a sample, which 1.0 senders leave out and 1.0 readers skip).
func (ts *TimeSeries) AppendEncoded(dst []byte) ([]byte, error) {
	for _, l := range ts.Labels {
		dst = appendLabel(dst, 1, l.Name, l.Value)
	}
	for _, s := range ts.Samples {
		size := 1 + 8 + 1 + sizeVarint(uint64(s.Timestamp))
		if s.StartTimestamp != 0 {
			size += 1 + sizeVarint(uint64(s.StartTimestamp))
		}
		dst = binary.AppendUvarint(dst, 2<<3|wireBytes)
		dst = binary.AppendUvarint(dst, uint64(size))
		dst = append(dst, 1<<3|wireFixed64)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.Value))
		dst = append(dst, 2<<3|wireVarint)
		dst = binary.AppendUvarint(dst, uint64(s.Timestamp))
		if s.StartTimestamp != 0 {
			dst = append(dst, 3<<3|wireVarint)
			dst = binary.AppendUvarint(dst, uint64(s.StartTimestamp))
		}
	}
	for _, e := range ts.Exemplars {
		size := 1 + 8 + 1 + sizeVarint(uint64(e.Timestamp))
		for _, l := range e.Labels {
			size += sizeBytesField(labelSize(l.Name, l.Value))
		}
		dst = binary.AppendUvarint(dst, 3<<3|wireBytes)
		dst = binary.AppendUvarint(dst, uint64(size))
		for _, l := range e.Labels {
			dst = appendLabel(dst, 1, l.Name, l.Value)
		}
		dst = append(dst, 2<<3|wireFixed64)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.Value))
		dst = append(dst, 3<<3|wireVarint)
		dst = binary.AppendUvarint(dst, uint64(e.Timestamp))
	}
	for i := range ts.Histograms {
		h := &ts.Histograms[i]
		size := h.Size()
		dst = binary.AppendUvarint(dst, 4<<3|wireBytes)
		dst = binary.AppendUvarint(dst, uint64(size))
		dst = slices.Grow(dst, size)
		if _, err := h.MarshalToSizedBuffer(dst[len(dst) : len(dst)+size]); err != nil {
			return dst, fmt.Errorf("encode native histogram: %w", err)
		}
		dst = dst[:len(dst)+size]
	}
	return dst, nil
}

// AppendEncodedMetadata appends the metadata's remote-write 1.0 encoding
// (a MetricMetadata message body) to dst.
func (m *Metadata) AppendEncodedMetadata(dst []byte) []byte {
	dst = append(dst, 1<<3|wireVarint)
	dst = binary.AppendUvarint(dst, uint64(m.Type))
	dst = appendString(dst, 2, m.MetricFamilyName)
	dst = appendString(dst, 4, m.Help)
	return appendString(dst, 5, m.Unit)
}

func labelSize(name, value string) int {
	return sizeBytesField(len(name)) + sizeBytesField(len(value))
}

// sizeBytesField is the size of a length-delimited field of n bytes with a
// one-byte tag.
func sizeBytesField(n int) int { return 1 + sizeVarint(uint64(n)) + n }

func sizeVarint(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func appendLabel(dst []byte, field uint64, name, value string) []byte {
	dst = binary.AppendUvarint(dst, field<<3|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(labelSize(name, value)))
	dst = appendString(dst, 1, name)
	return appendString(dst, 2, value)
}

func appendString(dst []byte, field uint64, s string) []byte {
	dst = binary.AppendUvarint(dst, field<<3|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
