package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/spqr"
)

// The record format is ours (libsignal's storage protobuf is not a wire format): a
// format version byte, then protobuf-encoded fields with the numbers below. Unknown
// fields are an error, so that an old binary never silently drops state written by a
// newer one; a new field comes with a new format version.
const recordFormatV1 = 1

// Record fields.
const (
	recCurrent  = 1
	recPrevious = 2
)

// State fields.
const (
	stVersion         = 1
	stLocalIdentity   = 2
	stRemoteIdentity  = 3
	stLocalRegID      = 4
	stRemoteRegID     = 5
	stAliceBaseKey    = 6
	stSelfSession     = 7
	stRoot            = 8
	stSender          = 9
	stReceiver        = 10
	stPreviousCounter = 11
	stPQR             = 12
	stPending         = 13
)

// Chain fields.
const (
	chRatchetKey = 1
	chKey        = 2
	chIndex      = 3
	chPrivate    = 4
	chSkipped    = 5 // repeated: 4-byte little-endian index and 32-byte seed
)

// Pending prekey fields.
const (
	ppPreKeyID       = 1
	ppSignedPreKeyID = 2
	ppKyberPreKeyID  = 3
	ppKyberCT        = 4
	ppBaseKey        = 5
	ppCreatedAt      = 6 // Unix nanoseconds
	ppAddresses      = 7 // optional: the addresses bound into the MAC
)

const skippedEntrySize = 4 + 32

// MarshalBinary encodes the record, secrets included: store it as the secret it is.
func (r *Record) MarshalBinary() ([]byte, error) {
	b := []byte{recordFormatV1}
	if r.current != nil {
		sb, err := r.current.marshal()
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, recCurrent, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	for _, s := range r.previous {
		sb, err := s.marshal()
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, recPrevious, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	return b, nil
}

func (c *chain) marshal(priv *keys.PrivateKey) []byte {
	b := wire.AppendBytesField(nil, chRatchetKey, c.ratchetKey[:])
	b = wire.AppendBytesField(b, chKey, c.key[:])
	b = wire.AppendVarintField(b, chIndex, uint64(c.index))
	if priv != nil {
		b = wire.AppendBytesField(b, chPrivate, priv.Bytes())
	}
	var e [skippedEntrySize]byte
	for _, k := range c.skipped {
		binary.LittleEndian.PutUint32(e[:4], k.index)
		copy(e[4:], k.seed[:])
		b = wire.AppendBytesField(b, chSkipped, e[:])
	}
	return b
}

func (s *state) marshal() ([]byte, error) {
	if s.noPQR {
		return nil, errors.New("session: a session without SPQR cannot be stored")
	}
	pqr, err := s.pqr.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := wire.AppendVarintField(nil, stVersion, uint64(s.version))
	b = wire.AppendBytesField(b, stLocalIdentity, s.localIdentity[:])
	b = wire.AppendBytesField(b, stRemoteIdentity, s.remoteIdentity[:])
	b = wire.AppendVarintField(b, stLocalRegID, uint64(s.localRegID))
	b = wire.AppendVarintField(b, stRemoteRegID, uint64(s.remoteRegID))
	b = wire.AppendBytesField(b, stAliceBaseKey, s.aliceBaseKey[:])
	if s.selfSession {
		b = wire.AppendVarintField(b, stSelfSession, 1)
	}
	b = wire.AppendBytesField(b, stRoot, s.root[:])
	b = wire.AppendBytesField(b, stSender, s.sender.marshal(s.senderPrivate))
	for i := range s.receivers {
		b = wire.AppendBytesField(b, stReceiver, s.receivers[i].marshal(nil))
	}
	b = wire.AppendVarintField(b, stPreviousCounter, uint64(s.previousCounter))
	b = wire.AppendBytesField(b, stPQR, pqr)
	if p := s.pending; p != nil {
		var pb []byte
		if p.hasPreKeyID {
			pb = wire.AppendVarintField(pb, ppPreKeyID, uint64(p.preKeyID))
		}
		pb = wire.AppendVarintField(pb, ppSignedPreKeyID, uint64(p.signedPreKeyID))
		pb = wire.AppendVarintField(pb, ppKyberPreKeyID, uint64(p.kyberPreKeyID))
		pb = wire.AppendBytesField(pb, ppKyberCT, p.kyberCiphertext)
		pb = wire.AppendBytesField(pb, ppBaseKey, p.baseKey[:])
		pb = wire.AppendVarintField(pb, ppCreatedAt, uint64(p.createdAt.UnixNano()))
		if p.addresses != nil {
			pb = wire.AppendBytesField(pb, ppAddresses, p.addresses)
		}
		b = wire.AppendBytesField(b, stPending, pb)
	}
	return b, nil
}

// ParseRecord decodes a record made by MarshalBinary. Anything malformed is rejected
// with an error wrapping ErrCorruptState.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) == 0 || b[0] != recordFormatV1 {
		return nil, fmt.Errorf("%w: unknown record format", ErrCorruptState)
	}
	r := &Record{}
	err := fields(b[1:], func(num protowire.Number, v uint64, bs []byte, isBytes bool) error {
		if !isBytes {
			return errField
		}
		s, err := parseState(bs)
		if err != nil {
			return err
		}
		switch num {
		case recCurrent:
			if r.current != nil {
				return errField
			}
			r.current = s
		case recPrevious:
			if len(r.previous) >= MaxArchivedStates {
				return fmt.Errorf("more than %d archived sessions", MaxArchivedStates)
			}
			r.previous = append(r.previous, s)
		default:
			return errField
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	return r, nil
}

var errField = fmt.Errorf("unexpected field")

// fields walks protobuf fields (wire.Walk), accepting only varints and
// length-delimited values.
func fields(b []byte, f func(num protowire.Number, v uint64, bs []byte, isBytes bool) error) error {
	return wire.Walk(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch typ {
		case protowire.VarintType:
			return f(num, v, nil, false)
		case protowire.BytesType:
			return f(num, 0, bs, true)
		}
		return errField
	})
}

func key32(dst *[32]byte, bs []byte, isBytes bool) error {
	if !isBytes || len(bs) != 32 {
		return fmt.Errorf("bad key length")
	}
	copy(dst[:], bs)
	return nil
}

func u32(dst *uint32, v uint64, isBytes bool) error {
	if isBytes || v > 0xffffffff {
		return errField
	}
	*dst = uint32(v)
	return nil
}

func parseChain(b []byte, wantPrivate bool) (chain, *keys.PrivateKey, error) {
	var c chain
	var priv *keys.PrivateKey
	var seen [chSkipped + 1]bool
	err := fields(b, func(num protowire.Number, v uint64, bs []byte, isBytes bool) error {
		if num < chRatchetKey || num > chSkipped {
			return errField
		}
		if num != chSkipped && seen[num] {
			return errField
		}
		seen[num] = true
		switch num {
		case chRatchetKey:
			return key32((*[32]byte)(&c.ratchetKey), bs, isBytes)
		case chKey:
			return key32(&c.key, bs, isBytes)
		case chIndex:
			return u32(&c.index, v, isBytes)
		case chPrivate:
			if !wantPrivate || !isBytes {
				return errField
			}
			var err error
			priv, err = keys.NewPrivateKey(bs)
			return err
		case chSkipped:
			if !isBytes || len(bs) != skippedEntrySize || len(c.skipped) >= MaxMessageKeys {
				return errField
			}
			var k skippedKey
			k.index = binary.LittleEndian.Uint32(bs[:4])
			copy(k.seed[:], bs[4:])
			c.skipped = append(c.skipped, k)
		}
		return nil
	})
	if err == nil && (!seen[chRatchetKey] || !seen[chKey] || (wantPrivate && priv == nil)) {
		err = fmt.Errorf("incomplete chain")
	}
	return c, priv, err
}

func parseState(b []byte) (*state, error) {
	s := &state{}
	var seen [stPending + 1]bool
	err := fields(b, func(num protowire.Number, v uint64, bs []byte, isBytes bool) error {
		if num < stVersion || num > stPending {
			return errField
		}
		if num != stReceiver && seen[num] {
			return errField
		}
		seen[num] = true
		switch num {
		case stVersion:
			if isBytes || v != CurrentVersion {
				return fmt.Errorf("unsupported session version")
			}
			s.version = CurrentVersion
		case stLocalIdentity:
			return key32((*[32]byte)(&s.localIdentity), bs, isBytes)
		case stRemoteIdentity:
			return key32((*[32]byte)(&s.remoteIdentity), bs, isBytes)
		case stLocalRegID:
			return u32(&s.localRegID, v, isBytes)
		case stRemoteRegID:
			return u32(&s.remoteRegID, v, isBytes)
		case stAliceBaseKey:
			return key32((*[32]byte)(&s.aliceBaseKey), bs, isBytes)
		case stSelfSession:
			if isBytes || v > 1 {
				return errField
			}
			s.selfSession = v == 1
		case stRoot:
			return key32(&s.root, bs, isBytes)
		case stSender:
			if !isBytes {
				return errField
			}
			c, priv, err := parseChain(bs, true)
			if err != nil {
				return err
			}
			if priv.PublicKey() != c.ratchetKey {
				return fmt.Errorf("sender ratchet key does not match its private key")
			}
			s.sender, s.senderPrivate = c, priv
		case stReceiver:
			if !isBytes || len(s.receivers) >= MaxReceiverChains {
				return errField
			}
			c, _, err := parseChain(bs, false)
			if err != nil {
				return err
			}
			s.receivers = append(s.receivers, c)
		case stPreviousCounter:
			return u32(&s.previousCounter, v, isBytes)
		case stPQR:
			if !isBytes {
				return errField
			}
			p, err := spqr.ParseState(bs)
			if err != nil {
				return err
			}
			s.pqr = p
		case stPending:
			if !isBytes {
				return errField
			}
			p, err := parsePending(bs)
			if err != nil {
				return err
			}
			s.pending = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, need := range []int{stVersion, stLocalIdentity, stRemoteIdentity, stAliceBaseKey, stRoot, stSender, stPQR} {
		if !seen[need] {
			return nil, fmt.Errorf("session state is missing field %d", need)
		}
	}
	return s, nil
}

func parsePending(b []byte) (*pendingPreKey, error) {
	p := &pendingPreKey{}
	var seen [ppAddresses + 1]bool
	err := fields(b, func(num protowire.Number, v uint64, bs []byte, isBytes bool) error {
		if num < ppPreKeyID || num > ppAddresses || seen[num] {
			return errField
		}
		seen[num] = true
		switch num {
		case ppPreKeyID:
			p.hasPreKeyID = true
			return u32(&p.preKeyID, v, isBytes)
		case ppSignedPreKeyID:
			return u32(&p.signedPreKeyID, v, isBytes)
		case ppKyberPreKeyID:
			return u32(&p.kyberPreKeyID, v, isBytes)
		case ppKyberCT:
			if !isBytes || len(bs) != keys.KEMCiphertextSize {
				return errField
			}
			p.kyberCiphertext = append([]byte(nil), bs...)
		case ppBaseKey:
			return key32((*[32]byte)(&p.baseKey), bs, isBytes)
		case ppCreatedAt:
			if isBytes {
				return errField
			}
			p.createdAt = time.Unix(0, int64(v))
		case ppAddresses:
			if !isBytes || len(bs) != addressesSize {
				return errField
			}
			p.addresses = append([]byte(nil), bs...)
		}
		return nil
	})
	if err == nil && (!seen[ppKyberCT] || !seen[ppBaseKey] || !seen[ppCreatedAt]) {
		err = fmt.Errorf("incomplete pending prekey")
	}
	return p, err
}
