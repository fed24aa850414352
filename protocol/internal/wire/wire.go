// Package wire encodes and decodes the protobuf messages that the Signal protocol puts on
// the wire, with libsignal's field numbers (rust/protocol/src/proto/wire.proto, proto2).
//
// The messages are small and on the hot path of every encryption, so they are encoded
// by hand with protowire instead of generated code: decoding allocates nothing (bytes
// fields alias the input) and encoding appends to a caller's buffer. The schema, in
// proto2 terms, is written out in docs/protocol.md.
//
// Decoders follow protobuf semantics: fields may come in any order, a repeated scalar
// field keeps its last value, unknown fields are skipped, and a field whose wire type
// does not match the schema is an error. Presence is tracked for every optional field.
package wire

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is returned for bytes that are not a valid encoding of the message.
var ErrMalformed = errors.New("wire: malformed protobuf")

// SignalMessage field numbers.
const (
	smRatchetKey      = 1
	smCounter         = 2
	smPreviousCounter = 3
	smCiphertext      = 4
	smPQRatchet       = 5
	smAddresses       = 6
)

// SignalMessage is the body of a Double Ratchet message (without the version byte and
// the MAC that frame it).
type SignalMessage struct {
	RatchetKey      []byte
	Counter         uint32
	PreviousCounter uint32
	Ciphertext      []byte
	PQRatchet       []byte // SPQR message; empty when absent
	Addresses       []byte // sender and recipient service ids; nil when absent

	HasRatchetKey, HasCounter, HasPreviousCounter, HasCiphertext bool
}

// Append appends the encoding of m to b. Every field present in libsignal's encoding is
// written; PQRatchet and Addresses only when non-empty, as libsignal does.
func (m *SignalMessage) Append(b []byte) []byte {
	b = m.AppendPrefix(b, len(m.Ciphertext))
	b = append(b, m.Ciphertext...)
	return m.AppendSuffix(b)
}

// AppendPrefix appends the fields before the ciphertext and the ciphertext's tag and
// length, so that a caller can encrypt straight into the message buffer; AppendSuffix
// then appends the fields after it.
func (m *SignalMessage) AppendPrefix(b []byte, ciphertextLen int) []byte {
	b = protowire.AppendTag(b, smRatchetKey, protowire.BytesType)
	b = protowire.AppendBytes(b, m.RatchetKey)
	b = protowire.AppendTag(b, smCounter, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.Counter))
	b = protowire.AppendTag(b, smPreviousCounter, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.PreviousCounter))
	b = protowire.AppendTag(b, smCiphertext, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(ciphertextLen))
}

// AppendSuffix appends the fields after the ciphertext.
func (m *SignalMessage) AppendSuffix(b []byte) []byte {
	if len(m.PQRatchet) > 0 {
		b = protowire.AppendTag(b, smPQRatchet, protowire.BytesType)
		b = protowire.AppendBytes(b, m.PQRatchet)
	}
	if len(m.Addresses) > 0 {
		b = protowire.AppendTag(b, smAddresses, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Addresses)
	}
	return b
}

// Size returns the length of m's encoding.
func (m *SignalMessage) Size() int {
	n := bytesSize(smRatchetKey, m.RatchetKey) + varintSize(smCounter, m.Counter) +
		varintSize(smPreviousCounter, m.PreviousCounter) + bytesSize(smCiphertext, m.Ciphertext)
	if len(m.PQRatchet) > 0 {
		n += bytesSize(smPQRatchet, m.PQRatchet)
	}
	if len(m.Addresses) > 0 {
		n += bytesSize(smAddresses, m.Addresses)
	}
	return n
}

// Unmarshal decodes b into m. Bytes fields alias b.
func (m *SignalMessage) Unmarshal(b []byte) error {
	*m = SignalMessage{}
	return Walk(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case smRatchetKey:
			m.RatchetKey, m.HasRatchetKey = bs, true
			return wantBytes(typ)
		case smCounter:
			m.Counter, m.HasCounter = uint32(v), true
			return wantVarint(typ)
		case smPreviousCounter:
			m.PreviousCounter, m.HasPreviousCounter = uint32(v), true
			return wantVarint(typ)
		case smCiphertext:
			m.Ciphertext, m.HasCiphertext = bs, true
			return wantBytes(typ)
		case smPQRatchet:
			m.PQRatchet = bs
			return wantBytes(typ)
		case smAddresses:
			m.Addresses = bs // never nil: walk gives an empty field a non-nil slice
			return wantBytes(typ)
		}
		return nil
	})
}

// PreKeySignalMessage field numbers.
const (
	pkPreKeyID       = 1
	pkBaseKey        = 2
	pkIdentityKey    = 3
	pkMessage        = 4
	pkRegistrationID = 5
	pkSignedPreKeyID = 6
	pkKyberPreKeyID  = 7
	pkKyberCT        = 8
)

// PreKeySignalMessage starts a session: the PQXDH values and the first SignalMessage
// (with its version byte and MAC) inside.
type PreKeySignalMessage struct {
	RegistrationID  uint32
	PreKeyID        uint32
	SignedPreKeyID  uint32
	KyberPreKeyID   uint32
	KyberCiphertext []byte
	BaseKey         []byte
	IdentityKey     []byte
	Message         []byte

	HasRegistrationID, HasPreKeyID, HasSignedPreKeyID, HasKyberPreKeyID bool
	HasKyberCiphertext, HasBaseKey, HasIdentityKey, HasMessage          bool
}

// Append appends the encoding of m to b, in the order of libsignal's schema.
func (m *PreKeySignalMessage) Append(b []byte) []byte {
	b = protowire.AppendTag(b, pkRegistrationID, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.RegistrationID))
	if m.HasPreKeyID {
		b = protowire.AppendTag(b, pkPreKeyID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.PreKeyID))
	}
	b = protowire.AppendTag(b, pkSignedPreKeyID, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.SignedPreKeyID))
	if m.HasKyberPreKeyID {
		b = protowire.AppendTag(b, pkKyberPreKeyID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.KyberPreKeyID))
	}
	if m.HasKyberCiphertext {
		b = protowire.AppendTag(b, pkKyberCT, protowire.BytesType)
		b = protowire.AppendBytes(b, m.KyberCiphertext)
	}
	b = protowire.AppendTag(b, pkBaseKey, protowire.BytesType)
	b = protowire.AppendBytes(b, m.BaseKey)
	b = protowire.AppendTag(b, pkIdentityKey, protowire.BytesType)
	b = protowire.AppendBytes(b, m.IdentityKey)
	b = protowire.AppendTag(b, pkMessage, protowire.BytesType)
	b = protowire.AppendBytes(b, m.Message)
	return b
}

// Unmarshal decodes b into m. Bytes fields alias b.
func (m *PreKeySignalMessage) Unmarshal(b []byte) error {
	*m = PreKeySignalMessage{}
	return Walk(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case pkRegistrationID:
			m.RegistrationID, m.HasRegistrationID = uint32(v), true
			return wantVarint(typ)
		case pkPreKeyID:
			m.PreKeyID, m.HasPreKeyID = uint32(v), true
			return wantVarint(typ)
		case pkSignedPreKeyID:
			m.SignedPreKeyID, m.HasSignedPreKeyID = uint32(v), true
			return wantVarint(typ)
		case pkKyberPreKeyID:
			m.KyberPreKeyID, m.HasKyberPreKeyID = uint32(v), true
			return wantVarint(typ)
		case pkKyberCT:
			m.KyberCiphertext, m.HasKyberCiphertext = bs, true
			return wantBytes(typ)
		case pkBaseKey:
			m.BaseKey, m.HasBaseKey = bs, true
			return wantBytes(typ)
		case pkIdentityKey:
			m.IdentityKey, m.HasIdentityKey = bs, true
			return wantBytes(typ)
		case pkMessage:
			m.Message, m.HasMessage = bs, true
			return wantBytes(typ)
		}
		return nil
	})
}

// Walk calls f for every field of a protobuf message: v holds a varint or fixed value,
// bs the contents of a length-delimited field (never nil, aliasing b). Groups and
// malformed encodings are ErrMalformed; an error from f stops the walk and is returned.
func Walk(b []byte, f func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ErrMalformed
		}
		b = b[n:]
		var v uint64
		var bs []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			bs, n = protowire.ConsumeBytes(b)
			if bs == nil && n >= 0 {
				bs = b[:0:0]
			}
		default:
			return ErrMalformed
		}
		if n < 0 {
			return ErrMalformed
		}
		b = b[n:]
		if err := f(num, typ, v, bs); err != nil {
			return err
		}
	}
	return nil
}

func wantBytes(t protowire.Type) error {
	if t != protowire.BytesType {
		return ErrMalformed
	}
	return nil
}

func wantVarint(t protowire.Type) error {
	if t != protowire.VarintType {
		return ErrMalformed
	}
	return nil
}

func bytesSize(num protowire.Number, b []byte) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(len(b))
}

func varintSize(num protowire.Number, v uint32) int {
	return protowire.SizeTag(num) + protowire.SizeVarint(uint64(v))
}

// AppendBytesField appends a bytes field (tag and length-prefixed value) to b,
// even an empty one: the record formats built with it mark presence so.
func AppendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// AppendVarintField appends a varint field to b, even a zero one.
func AppendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
