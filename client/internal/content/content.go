// Package content is the plaintext Doorless puts inside a Signal message: a
// small protobuf-encoded record of our own (version, timestamp, body text),
// padded as Signal pads its content.
//
// Encoding, version 1 (canonical protobuf, fields in ascending order, each at
// most once, varints minimal):
//
//	1 version   varint  required, 1
//	2 timestamp varint  required, the sender's clock in Unix milliseconds
//	3 body      bytes   optional, UTF-8 text, at most MaxBody bytes
//
// Padding (as Signal's PushTransportDetails): the encoding, then 0x80, then
// zero bytes up to a multiple of PadBlock bytes.
//
// Parse is strict: it refuses anything Encode would not have produced, so
// that one content has exactly one encoding. A later version adds fields
// under a new version number; a decoder for version 1 refuses it with
// ErrUnsupportedVersion rather than misreading it.
//
// The package holds pure functions and is safe for concurrent use.
package content

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers and constants of the format.
const (
	Version = 1

	fieldVersion   = 1
	fieldTimestamp = 2
	fieldBody      = 3

	// PadBlock is the padding block size, Signal's (PushTransportDetails pads
	// to multiples of 160 bytes).
	PadBlock = 160
	// padMarker ends the content before the zero padding.
	padMarker = 0x80

	// MaxBody bounds the body text.
	MaxBody = 64 << 10
)

var (
	// ErrMalformed is wrapped by every error for bytes that are no content.
	ErrMalformed = errors.New("client: malformed content")
	// ErrUnsupportedVersion is wrapped for content of a version this package
	// does not read.
	ErrUnsupportedVersion = errors.New("client: unsupported content version")
)

// Content is one message's plaintext.
type Content struct {
	Timestamp int64 // Unix milliseconds
	Body      string
}

// String hides the body: content is plaintext.
func (c *Content) String() string { return "content([redacted])" }

// Encode returns the padded encoding of c. It fails for a body that is not
// UTF-8, longer than MaxBody, or a negative timestamp.
func Encode(c *Content) ([]byte, error) {
	if c.Timestamp < 0 {
		return nil, errors.New("client: content timestamp is negative")
	}
	if len(c.Body) > MaxBody {
		return nil, errors.New("client: message text too long")
	}
	if !utf8.ValidString(c.Body) {
		return nil, errors.New("client: message text is not utf-8")
	}
	b := marshal(c)
	return Pad(b), nil
}

func marshal(c *Content) []byte {
	b := make([]byte, 0, 16+len(c.Body))
	b = protowire.AppendTag(b, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, Version)
	b = protowire.AppendTag(b, fieldTimestamp, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(c.Timestamp))
	if c.Body != "" {
		b = protowire.AppendTag(b, fieldBody, protowire.BytesType)
		b = protowire.AppendString(b, c.Body)
	}
	return b
}

// Pad appends the marker and zeros up to a multiple of PadBlock.
func Pad(b []byte) []byte {
	n := (len(b)/PadBlock + 1) * PadBlock
	out := make([]byte, n)
	copy(out, b)
	out[len(b)] = padMarker
	return out
}

// Unpad strips the padding: the length must be a positive multiple of
// PadBlock, and the last non-zero byte must be the marker.
func Unpad(b []byte) ([]byte, error) {
	if len(b) == 0 || len(b)%PadBlock != 0 {
		return nil, fmt.Errorf("%w: padding length", ErrMalformed)
	}
	i := len(b) - 1
	for i >= 0 && b[i] == 0 {
		i--
	}
	if i < 0 || b[i] != padMarker {
		return nil, fmt.Errorf("%w: padding", ErrMalformed)
	}
	if len(b)-i > PadBlock {
		return nil, fmt.Errorf("%w: padding longer than a block", ErrMalformed)
	}
	return b[:i], nil
}

// Parse decodes padded content, strictly.
func Parse(padded []byte) (*Content, error) {
	b, err := Unpad(padded)
	if err != nil {
		return nil, err
	}
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrMalformed, why) }
	var (
		c        Content
		last     protowire.Number
		version  uint64
		haveTime bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, bad("bad tag")
		}
		if protowire.SizeTag(num) != n {
			return nil, bad("non-minimal tag")
		}
		if num <= last {
			return nil, bad("fields out of order or repeated")
		}
		last = num
		b = b[n:]
		switch num {
		case fieldVersion, fieldTimestamp:
			if typ != protowire.VarintType {
				return nil, bad("wrong wire type")
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, bad("bad varint")
			}
			if protowire.SizeVarint(v) != n {
				return nil, bad("non-minimal varint")
			}
			b = b[n:]
			if num == fieldVersion {
				if v != Version {
					return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, v)
				}
				version = v
			} else {
				if v > 1<<63-1 {
					return nil, bad("timestamp out of range")
				}
				c.Timestamp = int64(v)
				haveTime = true
			}
		case fieldBody:
			if typ != protowire.BytesType {
				return nil, bad("wrong wire type")
			}
			if version != Version {
				// Fields are in order, so the version came first if at all.
				return nil, bad("no version")
			}
			l, n := protowire.ConsumeVarint(b)
			if n < 0 || protowire.SizeVarint(l) != n {
				return nil, bad("bad length")
			}
			if l > MaxBody || l > uint64(len(b)-n) {
				return nil, bad("body length")
			}
			if l == 0 {
				return nil, bad("empty body field")
			}
			body := b[n : n+int(l)]
			if !utf8.Valid(body) {
				return nil, bad("body is not utf-8")
			}
			c.Body = string(body)
			b = b[n+int(l):]
		default:
			if version != Version {
				return nil, bad("no version")
			}
			return nil, bad("unknown field")
		}
	}
	if version != Version {
		return nil, bad("no version")
	}
	if !haveTime {
		return nil, bad("no timestamp")
	}
	return &c, nil
}
