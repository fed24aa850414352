// Package content is the plaintext Doorless puts inside a Signal message (or
// a sender-key group message): a small protobuf-encoded record of our own,
// padded as Signal pads its content.
//
// Encoding (canonical protobuf: fields in ascending order, each at most
// once, varints and tags minimal, no empty bytes fields, booleans only as 1
// and only when true):
//
//	 1 version       varint  required: 3 when franking is present, else 2 when
//	                         a field from 13 on is present, else 1 (so older
//	                         readers still read what they know)
//	 2 timestamp     varint  required, the sender's clock in Unix milliseconds
//	 3 body          bytes   UTF-8 text, at most MaxBody bytes
//	 4 attachment    bytes   an Attachment (below)
//	 5 expire_timer  varint  the conversation's disappearing-message timer, seconds
//	 6 timer_update  bool    this message sets the conversation's timer to expire_timer
//	 7 view_once     bool    the attachment may be opened once (needs attachment)
//	 8 group_id      bytes   32 bytes: the message belongs to this group
//	 9 group_change  bytes   a signed group change (needs group_id)
//	10 sender_key    bytes   a sender key distribution message (needs group_id)
//	11 sync          bool    a transcript of a message this account sent, for its
//	                         other devices: to destination, or to group_id
//	12 destination   bytes   with sync and no group_id: the recipient's username
//	13 profile_key   bytes   32 bytes: the sender's profile key, from which the
//	                         recipient derives the sender's unidentified access
//	                         key (version 2)
//	14 receipt       bytes   a Receipt (below); a receipt carries nothing but
//	                         timestamp, receipt and profile_key (version 2)
//	15 franking      bytes   64 bytes: the message's franking key (32) and
//	                         the sender's binding of the commitment to its
//	                         account (32), internal/franking (version 3).
//	                         Being the last field, it follows everything it
//	                         commits to: see Committed
//
// Receipt:
//
//	1 type          varint 1 delivered, 2 read
//	2 timestamps    bytes  packed varints: the sender timestamps of the messages
//	                       acknowledged, strictly ascending, 1..MaxReceiptTimestamps
//
// Attachment:
//
//	1 id            bytes  the server's id of the encrypted blob (1..64 url-safe base64 characters)
//	2 key           bytes  64 bytes: AES-256 key and HMAC-SHA256 key
//	3 digest        bytes  32 bytes: SHA-256 of the blob
//	4 size          varint the plaintext's size
//	5 blob_size     varint the blob's size
//	6 content_type  bytes  what the sender's client detected (at most 127 printable ASCII bytes)
//	7 file_name     bytes  the sender's file name (UTF-8, at most 255 bytes); the
//	                       receiver sanitises it before use
//
// Padding (as Signal's PushTransportDetails): the encoding, then 0x80, then
// zero bytes up to a multiple of PadBlock bytes.
//
// Parse is strict: it refuses anything Encode would not have produced, so
// that one content has exactly one encoding. A version adds fields under a
// new version number; a decoder that knows only older versions refuses it
// with ErrUnsupportedVersion rather than misreading it.
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
	// Version is the newest version this package reads and writes;
	// version 1 is content without fields 13 to 15, version 2 without 15.
	Version = 3

	fieldVersion     = 1
	fieldTimestamp   = 2
	fieldBody        = 3
	fieldAttachment  = 4
	fieldExpireTimer = 5
	fieldTimerUpdate = 6
	fieldViewOnce    = 7
	fieldGroupID     = 8
	fieldGroupChange = 9
	fieldSenderKey   = 10
	fieldSync        = 11
	fieldDestination = 12
	fieldProfileKey  = 13
	fieldReceipt     = 14
	fieldFranking    = 15

	receiptType       = 1
	receiptTimestamps = 2

	attID          = 1
	attKey         = 2
	attDigest      = 3
	attSize        = 4
	attBlobSize    = 5
	attContentType = 6
	attFileName    = 7

	// PadBlock is the padding block size, Signal's (PushTransportDetails pads
	// to multiples of 160 bytes).
	PadBlock = 160
	// padMarker ends the content before the zero padding.
	padMarker = 0x80

	// MaxBody bounds the body text.
	MaxBody = 64 << 10
	// GroupIDSize is the size of a group id.
	GroupIDSize = 32
	// MaxGroupChange bounds a signed group change (a 1,000-member group's
	// state is about 100 KiB).
	MaxGroupChange = 512 << 10
	// MaxSenderKey bounds a sender key distribution message.
	MaxSenderKey = 1 << 10
	// MaxTimer bounds the disappearing-message timer: one year.
	MaxTimer = 365 * 24 * 3600
	// MaxAttachmentSize bounds an attachment's declared sizes (1 TiB: the
	// server enforces its own, much smaller, limit).
	MaxAttachmentSize = 1 << 40
	// MaxAttachmentID, MaxContentType and MaxFileName bound those fields.
	MaxAttachmentID = 64
	MaxContentType  = 127
	MaxFileName     = 255
	// AttachmentKeySize is the size of an attachment key (AES-256 key and
	// HMAC-SHA256 key), AttachmentDigestSize that of a blob's SHA-256: the
	// sizes client/internal/attachment works with.
	AttachmentKeySize    = 64
	AttachmentDigestSize = 32
	// ProfileKeySize is the size of a profile key.
	ProfileKeySize = 32
	// MaxReceiptTimestamps bounds the messages one receipt acknowledges.
	MaxReceiptTimestamps = 100
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
	Timestamp   int64 // Unix milliseconds
	Body        string
	Attachment  *Attachment
	ExpireTimer uint32 // seconds; 0: messages do not disappear
	TimerUpdate bool
	ViewOnce    bool
	GroupID     []byte
	GroupChange []byte
	SenderKey   []byte // a sender key distribution message
	Sync        bool
	Destination string
	ProfileKey  []byte
	Receipt     *Receipt
	// Franking opens the message's franking commitment; see Committed.
	Franking *Franking
}

// FrankingSize is the size of the franking field.
const FrankingSize = 64

// Franking is what a franked message carries inside its encryption: the
// random key its commitment is made under, and the sender's account
// binding of that commitment (internal/franking).
type Franking struct {
	Key       [32]byte
	SenderTag [32]byte
}

// Committed returns the bytes a franking commitment covers: the unpadded
// encoding of c up to, not including, the franking field, which is the
// last. c must have been checked (made by Parse, or accepted by Encode).
// Because the encoding is canonical, the sender, the recipient and a
// moderator compute the same bytes.
func (c *Content) Committed() []byte {
	b := marshal(c)
	if c.Franking != nil {
		b = b[:len(b)-2-FrankingSize] // tag 15 and length 64 take a byte each
	}
	return b
}

// ReceiptType says what a receipt acknowledges.
type ReceiptType uint8

// Receipt types.
const (
	ReceiptDelivered ReceiptType = 1 // the message reached a device of the recipient
	ReceiptRead      ReceiptType = 2 // the recipient displayed it
)

// Receipt acknowledges messages of the receipt's recipient, named by their
// sender timestamps (Content.Timestamp), as Signal's receipts do.
type Receipt struct {
	Type       ReceiptType
	Timestamps []int64
}

// version is the version c is encoded under.
func (c *Content) version() uint64 {
	if c.Franking != nil {
		return 3
	}
	if c.ProfileKey != nil || c.Receipt != nil {
		return 2
	}
	return 1
}

// Attachment points at an encrypted blob on the server and carries what
// decrypts and verifies it.
type Attachment struct {
	ID          string
	Key         []byte
	Digest      []byte
	Size        int64
	BlobSize    int64
	ContentType string
	FileName    string
}

// String hides the content: it is plaintext.
func (c *Content) String() string { return "content([redacted])" }

// String hides the franking key.
func (f *Franking) String() string { return "franking([redacted])" }

// String hides the attachment's key and name.
func (a *Attachment) String() string { return "attachment([redacted])" }

// Encode returns the padded encoding of c, after checking it as Parse checks
// what it reads.
func Encode(c *Content) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return Pad(marshal(c)), nil
}

// check enforces the rules the format states.
func (c *Content) check() error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrMalformed, why) }
	switch {
	case c.Timestamp < 0:
		return bad("timestamp is negative")
	case len(c.Body) > MaxBody:
		return bad("text too long")
	case !utf8.ValidString(c.Body):
		return bad("text is not utf-8")
	case c.ExpireTimer > MaxTimer:
		return bad("timer too long")
	case c.ViewOnce && c.Attachment == nil:
		return bad("view-once without an attachment")
	case c.GroupID != nil && len(c.GroupID) != GroupIDSize:
		return bad("group id size")
	case c.GroupChange != nil && (len(c.GroupChange) == 0 || len(c.GroupChange) > MaxGroupChange):
		return bad("group change size")
	case c.GroupChange != nil && c.GroupID == nil:
		return bad("group change without a group id")
	case c.SenderKey != nil && (len(c.SenderKey) == 0 || len(c.SenderKey) > MaxSenderKey):
		return bad("sender key size")
	case c.SenderKey != nil && c.GroupID == nil:
		return bad("sender key without a group id")
	case c.Destination != "" && !c.Sync:
		return bad("destination without sync")
	case c.Sync && (c.Destination == "") == (c.GroupID == nil):
		return bad("sync needs a destination or a group id, not both")
	case len(c.Destination) > 64 || !utf8.ValidString(c.Destination):
		return bad("destination")
	case c.ProfileKey != nil && len(c.ProfileKey) != ProfileKeySize:
		return bad("profile key size")
	}
	if r := c.Receipt; r != nil {
		switch {
		case c.Body != "" || c.Attachment != nil || c.ExpireTimer != 0 || c.TimerUpdate || c.ViewOnce ||
			c.GroupID != nil || c.GroupChange != nil || c.SenderKey != nil || c.Sync || c.Destination != "":
			return bad("a receipt carries nothing else")
		case r.Type != ReceiptDelivered && r.Type != ReceiptRead:
			return bad("receipt type")
		case len(r.Timestamps) == 0 || len(r.Timestamps) > MaxReceiptTimestamps:
			return bad("receipt timestamps count")
		}
		for i, ts := range r.Timestamps {
			if ts <= 0 || i > 0 && ts <= r.Timestamps[i-1] {
				return bad("receipt timestamps not positive and ascending")
			}
		}
	}
	if a := c.Attachment; a != nil {
		switch {
		case len(a.ID) == 0 || len(a.ID) > MaxAttachmentID || !urlSafe(a.ID):
			return bad("attachment id")
		case len(a.Key) != AttachmentKeySize:
			return bad("attachment key size")
		case len(a.Digest) != AttachmentDigestSize:
			return bad("attachment digest size")
		case a.Size < 0 || a.Size > MaxAttachmentSize || a.BlobSize <= a.Size || a.BlobSize > 2*MaxAttachmentSize:
			return bad("attachment size")
		case len(a.ContentType) > MaxContentType || !printable(a.ContentType):
			return bad("attachment content type")
		case len(a.FileName) > MaxFileName || !utf8.ValidString(a.FileName):
			return bad("attachment file name")
		}
	}
	return nil
}

func urlSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func boolInt(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

func marshal(c *Content) []byte {
	b := make([]byte, 0, 32+len(c.Body)+len(c.GroupChange))
	b = protowire.AppendTag(b, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, c.version())
	b = protowire.AppendTag(b, fieldTimestamp, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(c.Timestamp))
	b = appendBytes(b, fieldBody, []byte(c.Body))
	if a := c.Attachment; a != nil {
		var ab []byte
		ab = appendBytes(ab, attID, []byte(a.ID))
		ab = appendBytes(ab, attKey, a.Key)
		ab = appendBytes(ab, attDigest, a.Digest)
		ab = appendVarint(ab, attSize, uint64(a.Size))
		ab = appendVarint(ab, attBlobSize, uint64(a.BlobSize))
		ab = appendBytes(ab, attContentType, []byte(a.ContentType))
		ab = appendBytes(ab, attFileName, []byte(a.FileName))
		b = appendBytes(b, fieldAttachment, ab)
	}
	b = appendVarint(b, fieldExpireTimer, uint64(c.ExpireTimer))
	b = appendVarint(b, fieldTimerUpdate, boolInt(c.TimerUpdate))
	b = appendVarint(b, fieldViewOnce, boolInt(c.ViewOnce))
	b = appendBytes(b, fieldGroupID, c.GroupID)
	b = appendBytes(b, fieldGroupChange, c.GroupChange)
	b = appendBytes(b, fieldSenderKey, c.SenderKey)
	b = appendVarint(b, fieldSync, boolInt(c.Sync))
	b = appendBytes(b, fieldDestination, []byte(c.Destination))
	b = appendBytes(b, fieldProfileKey, c.ProfileKey)
	if r := c.Receipt; r != nil {
		var ts []byte
		for _, t := range r.Timestamps {
			ts = protowire.AppendVarint(ts, uint64(t))
		}
		var rb []byte
		rb = appendVarint(rb, receiptType, uint64(r.Type))
		rb = appendBytes(rb, receiptTimestamps, ts)
		b = appendBytes(b, fieldReceipt, rb)
	}
	if f := c.Franking; f != nil {
		b = appendBytes(b, fieldFranking, append(f.Key[:], f.SenderTag[:]...))
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

// field is one field read by fields.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	value uint64 // varint fields
	bytes []byte // bytes fields: a sub-slice of the input
}

// fields reads a canonical protobuf message: fields in strictly ascending
// order, minimal tags and varints, only varint and bytes fields, no zero
// varints (absent instead) and no empty bytes (absent instead).
func fields(b []byte) ([]field, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrMalformed, why) }
	var (
		out  []field
		last protowire.Number
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
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 || protowire.SizeVarint(v) != n {
				return nil, bad("bad varint")
			}
			f.value = v
			b = b[n:]
		case protowire.BytesType:
			l, n := protowire.ConsumeVarint(b)
			if n < 0 || protowire.SizeVarint(l) != n {
				return nil, bad("bad length")
			}
			if l > uint64(len(b)-n) {
				return nil, bad("length past the end")
			}
			if l == 0 {
				return nil, bad("empty bytes field")
			}
			f.bytes = b[n : n+int(l)]
			b = b[n+int(l):]
		default:
			return nil, bad("unsupported wire type")
		}
		out = append(out, f)
	}
	return out, nil
}

// Parse decodes padded content, strictly.
func Parse(padded []byte) (*Content, error) {
	b, err := Unpad(padded)
	if err != nil {
		return nil, err
	}
	fs, err := fields(b)
	if err != nil {
		return nil, err
	}
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrMalformed, why) }
	if len(fs) == 0 || fs[0].num != fieldVersion {
		return nil, bad("no version")
	}
	if fs[0].typ != protowire.VarintType {
		return nil, bad("wrong wire type")
	}
	if fs[0].value < 1 || fs[0].value > Version {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, fs[0].value)
	}
	var (
		c        Content
		haveTime bool
	)
	for _, f := range fs[1:] {
		wantBytes := false
		switch f.num {
		case fieldBody, fieldAttachment, fieldGroupID, fieldGroupChange, fieldSenderKey, fieldDestination,
			fieldProfileKey, fieldReceipt, fieldFranking:
			wantBytes = true
		case fieldTimestamp, fieldExpireTimer, fieldTimerUpdate, fieldViewOnce, fieldSync:
		default:
			return nil, bad("unknown field")
		}
		if wantBytes != (f.typ == protowire.BytesType) {
			return nil, bad("wrong wire type")
		}
		if !wantBytes && f.num != fieldTimestamp && f.value == 0 {
			return nil, bad("zero varint present")
		}
		switch f.num {
		case fieldTimestamp:
			if f.value > 1<<63-1 {
				return nil, bad("timestamp out of range")
			}
			c.Timestamp, haveTime = int64(f.value), true
		case fieldBody:
			c.Body = string(f.bytes)
		case fieldAttachment:
			if c.Attachment, err = parseAttachment(f.bytes); err != nil {
				return nil, err
			}
		case fieldExpireTimer:
			if f.value > MaxTimer {
				return nil, bad("timer too long")
			}
			c.ExpireTimer = uint32(f.value)
		case fieldTimerUpdate, fieldViewOnce, fieldSync:
			if f.value != 1 {
				return nil, bad("boolean not 1")
			}
			switch f.num {
			case fieldTimerUpdate:
				c.TimerUpdate = true
			case fieldViewOnce:
				c.ViewOnce = true
			default:
				c.Sync = true
			}
		case fieldGroupID:
			c.GroupID = clone(f.bytes)
		case fieldGroupChange:
			c.GroupChange = clone(f.bytes)
		case fieldSenderKey:
			c.SenderKey = clone(f.bytes)
		case fieldDestination:
			c.Destination = string(f.bytes)
		case fieldProfileKey:
			c.ProfileKey = clone(f.bytes)
		case fieldReceipt:
			if c.Receipt, err = parseReceipt(f.bytes); err != nil {
				return nil, err
			}
		case fieldFranking:
			if len(f.bytes) != FrankingSize {
				return nil, bad("franking size")
			}
			c.Franking = new(Franking)
			copy(c.Franking.Key[:], f.bytes)
			copy(c.Franking.SenderTag[:], f.bytes[32:])
		}
	}
	if !haveTime {
		return nil, bad("no timestamp")
	}
	if c.version() != fs[0].value {
		return nil, bad("version does not match the fields")
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func parseAttachment(b []byte) (*Attachment, error) {
	fs, err := fields(b)
	if err != nil {
		return nil, err
	}
	bad := func(why string) error { return fmt.Errorf("%w: attachment: %s", ErrMalformed, why) }
	var a Attachment
	for _, f := range fs {
		isVarint := f.num == attSize || f.num == attBlobSize
		if f.num < attID || f.num > attFileName {
			return nil, bad("unknown field")
		}
		if isVarint != (f.typ == protowire.VarintType) {
			return nil, bad("wrong wire type")
		}
		if isVarint && f.value == 0 {
			return nil, bad("zero varint present")
		}
		switch f.num {
		case attID:
			a.ID = string(f.bytes)
		case attKey:
			a.Key = clone(f.bytes)
		case attDigest:
			a.Digest = clone(f.bytes)
		case attSize, attBlobSize:
			if f.value > 2*MaxAttachmentSize {
				return nil, bad("size out of range")
			}
			if f.num == attSize {
				a.Size = int64(f.value)
			} else {
				a.BlobSize = int64(f.value)
			}
		case attContentType:
			a.ContentType = string(f.bytes)
		case attFileName:
			a.FileName = string(f.bytes)
		}
	}
	return &a, nil
}

func parseReceipt(b []byte) (*Receipt, error) {
	fs, err := fields(b)
	if err != nil {
		return nil, err
	}
	bad := func(why string) error { return fmt.Errorf("%w: receipt: %s", ErrMalformed, why) }
	if len(fs) != 2 || fs[0].num != receiptType || fs[0].typ != protowire.VarintType ||
		fs[1].num != receiptTimestamps || fs[1].typ != protowire.BytesType {
		return nil, bad("fields")
	}
	if fs[0].value > 0xff {
		return nil, bad("type")
	}
	r := &Receipt{Type: ReceiptType(fs[0].value)}
	for p := fs[1].bytes; len(p) > 0; {
		v, n := protowire.ConsumeVarint(p)
		if n < 0 || protowire.SizeVarint(v) != n || v > 1<<63-1 {
			return nil, bad("timestamp")
		}
		if len(r.Timestamps) == MaxReceiptTimestamps {
			return nil, bad("too many timestamps")
		}
		r.Timestamps = append(r.Timestamps, int64(v))
		p = p[n:]
	}
	return r, nil
}
