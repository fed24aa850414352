package group

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/keys"
)

// The encodings are canonical protobuf, our own: fields in ascending order,
// each at most once except the repeated member field (whose entries are
// sorted by account id), varints, tags and lengths minimal, optional fields
// omitted when zero and refused when present with a zero value. The parsers
// refuse anything the encoders would not have produced, so every state and
// change has exactly one encoding, and hashes and signatures over encodings
// are unambiguous.
//
// State:
//
//	1 format   varint  required, FormatVersion (1)
//	2 id       bytes   required, IDSize bytes, not all zero
//	3 version  varint  required, >= 1
//	4 title    bytes   optional, UTF-8, at most MaxTitle bytes
//	5 timer    varint  optional, seconds, at most 2^32-1
//	6 member   bytes   repeated, 1 to MaxMembers, ascending by account id
//
// Member:
//
//	1 account  bytes   required, the 16 bytes of a version-4 UUID
//	2 username bytes   required, api.ValidUsername
//	3 identity bytes   required, keys.PublicKey serialized (0x05 and 32 bytes)
//	4 admin    varint  optional, 1 for an admin
//
// Change (the signed bytes follow ChangeLabel):
//
//	1 previous bytes   required, SHA-256 of the encoding of the state the
//	                   change applies to; 32 zero bytes for version 1 (and
//	                   only for it)
//	2 author   bytes   required, the 16 bytes of the author's account id
//	3 state    bytes   required, the encoding of the new state (which holds
//	                   the group id and the new version)
//
// SignedChange:
//
//	1 change    bytes  required, the encoding of a Change
//	2 signature bytes  required, XEdDSA (64 bytes) by the author's identity
//	                   key over ChangeLabel ‖ change
const (
	stateFormat  = 1
	stateID      = 2
	stateVersion = 3
	stateTitle   = 4
	stateTimer   = 5
	stateMember  = 6

	memberAccount  = 1
	memberUsername = 2
	memberIdentity = 3
	memberAdmin    = 4

	changePrevious = 1
	changeAuthor   = 2
	changeState    = 3

	signedChange    = 1
	signedSignature = 2

	uuidSize = 16

	// MaxStateSize bounds an encoded state: MaxMembers members with the
	// longest usernames, all admins, the longest title and the largest
	// version and timer take 91,184 bytes (TestMaxStateSize).
	MaxStateSize = 96 << 10
	// MaxChangeSize bounds an encoded signed change: a state and its
	// overhead (previous hash, author, signature, tags).
	MaxChangeSize = MaxStateSize + 256
)

func (s *State) marshal() []byte {
	b := make([]byte, 0, 64+len(s.title)+len(s.members)*80)
	b = protowire.AppendTag(b, stateFormat, protowire.VarintType)
	b = protowire.AppendVarint(b, FormatVersion)
	b = protowire.AppendTag(b, stateID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.id[:])
	b = protowire.AppendTag(b, stateVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, s.version)
	if s.title != "" {
		b = protowire.AppendTag(b, stateTitle, protowire.BytesType)
		b = protowire.AppendString(b, s.title)
	}
	if s.timer != 0 {
		b = protowire.AppendTag(b, stateTimer, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.timer))
	}
	var m []byte
	for _, mem := range s.members {
		m = m[:0]
		m = protowire.AppendTag(m, memberAccount, protowire.BytesType)
		m = protowire.AppendBytes(m, uuidBytes(mem.AccountID))
		m = protowire.AppendTag(m, memberUsername, protowire.BytesType)
		m = protowire.AppendString(m, mem.Username)
		m = protowire.AppendTag(m, memberIdentity, protowire.BytesType)
		m = protowire.AppendVarint(m, keys.PublicKeySize)
		m = mem.Identity.AppendBytes(m)
		if mem.Admin {
			m = protowire.AppendTag(m, memberAdmin, protowire.VarintType)
			m = protowire.AppendVarint(m, 1)
		}
		b = protowire.AppendTag(b, stateMember, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b
}

func marshalChange(previous [32]byte, author string, state []byte) []byte {
	b := make([]byte, 0, 64+len(state))
	b = protowire.AppendTag(b, changePrevious, protowire.BytesType)
	b = protowire.AppendBytes(b, previous[:])
	b = protowire.AppendTag(b, changeAuthor, protowire.BytesType)
	b = protowire.AppendBytes(b, uuidBytes(author))
	b = protowire.AppendTag(b, changeState, protowire.BytesType)
	b = protowire.AppendBytes(b, state)
	return b
}

func marshalSigned(change, sig []byte) []byte {
	b := make([]byte, 0, 16+len(change)+len(sig))
	b = protowire.AppendTag(b, signedChange, protowire.BytesType)
	b = protowire.AppendBytes(b, change)
	b = protowire.AppendTag(b, signedSignature, protowire.BytesType)
	b = protowire.AppendBytes(b, sig)
	return b
}

// ParseState decodes a stored state, strictly, and checks its invariants.
func ParseState(b []byte) (*State, error) {
	return parseState(slices.Clone(b))
}

// parseState is ParseState on bytes it may keep.
func parseState(b []byte) (*State, error) {
	if len(b) > MaxStateSize {
		return nil, malformed("state longer than %d bytes", MaxStateSize)
	}
	d, err := newDecoder(b, stateMember)
	if err != nil {
		return nil, err
	}
	format, ok, err := d.varint(stateFormat)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, malformed("no format version")
	}
	if format != FormatVersion {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, format)
	}
	s := &State{}
	id, err := d.fixed(stateID, IDSize)
	if err != nil {
		return nil, err
	}
	copy(s.id[:], id)
	if s.version, ok, err = d.varint(stateVersion); err != nil {
		return nil, err
	} else if !ok {
		return nil, malformed("no version")
	}
	title, ok, err := d.bytes(stateTitle)
	if err != nil {
		return nil, err
	}
	if ok && len(title) == 0 {
		return nil, malformed("empty title field")
	}
	s.title = string(title)
	timer, ok, err := d.varint(stateTimer)
	if err != nil {
		return nil, err
	}
	if ok && (timer == 0 || timer > math.MaxUint32) {
		return nil, malformed("timer out of range")
	}
	s.timer = uint32(timer)
	for {
		mb, ok, err := d.bytes(stateMember)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if len(s.members) == MaxMembers {
			return nil, fmt.Errorf("%w: %w: more than %d members", ErrInvalidState, ErrTooManyMembers, MaxMembers)
		}
		m, err := parseMember(mb)
		if err != nil {
			return nil, err
		}
		if n := len(s.members); n > 0 && s.members[n-1].AccountID > m.AccountID {
			return nil, malformed("members out of order")
		}
		s.members = append(s.members, m)
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	s.enc = b
	s.hash = sha256.Sum256(s.enc)
	return s, nil
}

func parseMember(b []byte) (Member, error) {
	d, err := newDecoder(b, 0)
	if err != nil {
		return Member{}, err
	}
	var m Member
	acct, err := d.fixed(memberAccount, uuidSize)
	if err != nil {
		return Member{}, err
	}
	m.AccountID = uuidString(acct)
	name, ok, err := d.bytes(memberUsername)
	if err != nil {
		return Member{}, err
	}
	if !ok {
		return Member{}, malformed("member without username")
	}
	m.Username = string(name)
	key, err := d.fixed(memberIdentity, keys.PublicKeySize)
	if err != nil {
		return Member{}, err
	}
	if m.Identity, err = keys.ParsePublicKey(key); err != nil {
		return Member{}, fmt.Errorf("%w: member identity key: %v", ErrInvalidState, err)
	}
	admin, ok, err := d.varint(memberAdmin)
	if err != nil {
		return Member{}, err
	}
	if ok && admin != 1 {
		return Member{}, malformed("admin flag not 1")
	}
	m.Admin = ok
	if err := d.done(); err != nil {
		return Member{}, err
	}
	return m, nil
}

// ParseSignedChange decodes a signed change, strictly, and checks the
// invariants of the state it carries. It does not verify the signature or
// judge the change: Apply does.
func ParseSignedChange(b []byte) (*SignedChange, error) {
	if len(b) > MaxChangeSize {
		return nil, malformed("change longer than %d bytes", MaxChangeSize)
	}
	// One copy, which the change, its body and its state share.
	b = slices.Clone(b)
	d, err := newDecoder(b, 0)
	if err != nil {
		return nil, err
	}
	body, ok, err := d.bytes(signedChange)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, malformed("no change")
	}
	sig, err := d.fixed(signedSignature, keys.SignatureSize)
	if err != nil {
		return nil, err
	}
	if err := d.done(); err != nil {
		return nil, err
	}

	d, err = newDecoder(body, 0)
	if err != nil {
		return nil, err
	}
	c := &SignedChange{}
	prev, err := d.fixed(changePrevious, 32)
	if err != nil {
		return nil, err
	}
	copy(c.previous[:], prev)
	author, err := d.fixed(changeAuthor, uuidSize)
	if err != nil {
		return nil, err
	}
	c.author = uuidString(author)
	if !validUUID(c.author) {
		return nil, malformed("author is not a version-4 uuid")
	}
	sb, ok, err := d.bytes(changeState)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, malformed("no state")
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	if c.state, err = parseState(sb); err != nil {
		return nil, err
	}
	if (c.previous == [32]byte{}) != (c.state.version == 1) {
		return nil, malformed("previous hash must be zero exactly for version 1")
	}
	c.body, c.signature, c.enc = body, sig, b
	return c, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// field is one decoded protobuf field: a varint or a byte string.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// decoder reads the fields of one message in order.
type decoder struct{ fs []field }

// newDecoder splits b into fields, strictly: minimal tags, varints and
// lengths, only the varint and bytes wire types, field numbers ascending and
// distinct except that repeated (when not 0) may appear several times in a row.
func newDecoder(b []byte, repeated protowire.Number) (*decoder, error) {
	d := &decoder{fs: make([]field, 0, 4)} // a member has at most 4 fields
	var last protowire.Number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, malformed("bad tag")
		}
		if protowire.SizeTag(num) != n {
			return nil, malformed("non-minimal tag")
		}
		if num < last || num == last && num != repeated {
			return nil, malformed("fields out of order or repeated")
		}
		last = num
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
			if n < 0 || protowire.SizeVarint(f.v) != n {
				return nil, malformed("bad varint")
			}
		case protowire.BytesType:
			l, m := protowire.ConsumeVarint(b)
			if m < 0 || protowire.SizeVarint(l) != m {
				return nil, malformed("bad length")
			}
			if l > uint64(len(b)-m) {
				return nil, malformed("truncated field")
			}
			f.b = b[m : m+int(l)]
			n = m + int(l)
		default:
			return nil, malformed("unexpected wire type")
		}
		b = b[n:]
		d.fs = append(d.fs, f)
	}
	return d, nil
}

// take consumes the next field if it has number num, checking its wire type.
func (d *decoder) take(num protowire.Number, typ protowire.Type) (field, bool, error) {
	if len(d.fs) == 0 || d.fs[0].num != num {
		return field{}, false, nil
	}
	f := d.fs[0]
	if f.typ != typ {
		return field{}, false, malformed("field %d: wrong wire type", num)
	}
	d.fs = d.fs[1:]
	return f, true, nil
}

func (d *decoder) varint(num protowire.Number) (uint64, bool, error) {
	f, ok, err := d.take(num, protowire.VarintType)
	return f.v, ok, err
}

func (d *decoder) bytes(num protowire.Number) ([]byte, bool, error) {
	f, ok, err := d.take(num, protowire.BytesType)
	return f.b, ok, err
}

// fixed reads a required byte string of exactly size bytes.
func (d *decoder) fixed(num protowire.Number, size int) ([]byte, error) {
	b, ok, err := d.bytes(num)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, malformed("field %d missing", num)
	}
	if len(b) != size {
		return nil, malformed("field %d: %d bytes, want %d", num, len(b), size)
	}
	return b, nil
}

// done refuses fields left over: unknown, or out of place.
func (d *decoder) done() error {
	if len(d.fs) > 0 {
		return malformed("unexpected field %d", d.fs[0].num)
	}
	return nil
}

// uuidBytes returns the 16 bytes of a valid hyphenated UUID.
func uuidBytes(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != uuidSize {
		panic("group: uuidBytes of an unchecked uuid")
	}
	return b
}

// uuidString formats 16 bytes as a lower-case hyphenated UUID.
func uuidString(b []byte) string { return api.FormatUUID([16]byte(b)) }
