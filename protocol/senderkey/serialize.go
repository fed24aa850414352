package senderkey

import (
	"encoding"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// The record format is ours (libsignal's storage protobuf is not a wire format): a
// format version byte, then protobuf fields with the numbers below. Decoding is strict:
// an unknown or repeated singular field, a wrong wire type, a wrong key length, a
// private key that does not match its public key, a repeated chain id or skipped
// iteration, or more than MaxStates chains or MaxMessageKeys skipped keys is an error,
// so that an old binary never silently drops state written by a newer one (a new field
// comes with a new format version).
const recordFormatV1 = 1

// Record fields.
const (
	recDistributionID = 1 // 16 bytes
	recState          = 2 // repeated, newest first
)

// State fields.
const (
	stChainID    = 1
	stIteration  = 2
	stChainKey   = 3 // 32 bytes
	stSigningKey = 4 // public key, serialized (33 bytes)
	stPrivate    = 5 // private signing key (32 bytes); the sender's own chain only
	stSkipped    = 6 // repeated: 4-byte little-endian iteration and 32-byte seed, oldest first
)

const skippedEntrySize = 4 + chainKeySize

var _ encoding.BinaryMarshaler = (*Record)(nil)

// MarshalBinary encodes the record, secrets included: store it as the secret it is.
func (r *Record) MarshalBinary() ([]byte, error) {
	b := []byte{recordFormatV1}
	b = wire.AppendBytesField(b, recDistributionID, r.id[:])
	for _, s := range r.states {
		b = wire.AppendBytesField(b, recState, s.marshal())
	}
	return b, nil
}

func (s *state) marshal() []byte {
	b := wire.AppendVarintField(nil, stChainID, uint64(s.chainID))
	b = wire.AppendVarintField(b, stIteration, uint64(s.chain.iteration))
	b = wire.AppendBytesField(b, stChainKey, s.chain.key[:])
	b = wire.AppendBytesField(b, stSigningKey, s.signingKey.Bytes())
	if s.signing != nil {
		b = wire.AppendBytesField(b, stPrivate, s.signing.Bytes())
	}
	var e [skippedEntrySize]byte
	for _, k := range s.skipped {
		binary.LittleEndian.PutUint32(e[:4], k.iteration)
		copy(e[4:], k.seed[:])
		b = wire.AppendBytesField(b, stSkipped, e[:])
	}
	clear(e[:])
	return b
}

// ParseRecord decodes a record made by MarshalBinary. Anything malformed is rejected
// with an error wrapping ErrCorruptRecord.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) == 0 || b[0] != recordFormatV1 {
		return nil, fmt.Errorf("%w: unknown record format", ErrCorruptRecord)
	}
	r := &Record{}
	hasID := false
	err := wire.Walk(b[1:], func(num protowire.Number, typ protowire.Type, _ uint64, bs []byte) error {
		if typ != protowire.BytesType {
			return errField
		}
		switch num {
		case recDistributionID:
			if hasID || len(bs) != len(r.id) {
				return errField
			}
			hasID = true
			copy(r.id[:], bs)
		case recState:
			if len(r.states) >= MaxStates {
				return fmt.Errorf("more than %d chains", MaxStates)
			}
			s, err := parseState(bs)
			if err != nil {
				return err
			}
			for _, o := range r.states {
				if o.chainID == s.chainID {
					return fmt.Errorf("chain %d appears twice", s.chainID)
				}
			}
			r.states = append(r.states, s)
		default:
			return errField
		}
		return nil
	})
	if err == nil && !hasID {
		err = fmt.Errorf("no distribution id")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptRecord, err)
	}
	return r, nil
}

var errField = fmt.Errorf("unexpected field")

func parseState(b []byte) (*state, error) {
	s := &state{}
	var seen [stSkipped + 1]bool
	var private []byte
	err := wire.Walk(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		if num < stChainID || num > stSkipped || (num != stSkipped && seen[num]) {
			return errField
		}
		seen[num] = true
		switch num {
		case stChainID, stIteration:
			if typ != protowire.VarintType || v > 0xffffffff {
				return errField
			}
			if num == stChainID {
				s.chainID = uint32(v)
			} else {
				s.chain.iteration = uint32(v)
			}
			return nil
		}
		if typ != protowire.BytesType {
			return errField
		}
		switch num {
		case stChainKey:
			if len(bs) != chainKeySize {
				return fmt.Errorf("chain key of %d bytes", len(bs))
			}
			copy(s.chain.key[:], bs)
		case stSigningKey:
			k, err := keys.ParsePublicKey(bs)
			if err != nil {
				return err
			}
			s.signingKey = k
		case stPrivate:
			private = bs
		case stSkipped:
			if len(bs) != skippedEntrySize || len(s.skipped) >= MaxMessageKeys {
				return errField
			}
			var k skippedKey
			k.iteration = binary.LittleEndian.Uint32(bs[:4])
			copy(k.seed[:], bs[4:])
			s.skipped = append(s.skipped, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seen[stChainID] || !seen[stIteration] || !seen[stChainKey] || !seen[stSigningKey] {
		return nil, fmt.Errorf("incomplete chain")
	}
	if private != nil {
		k, err := keys.NewPrivateKey(private)
		if err != nil {
			return nil, err
		}
		if k.PublicKey() != s.signingKey {
			return nil, fmt.Errorf("signing key does not match its private key")
		}
		s.signing = k
	}
	// Skipped keys are of iterations before the chain's, each once.
	seenIter := make(map[uint32]bool, len(s.skipped))
	for _, k := range s.skipped {
		if k.iteration >= s.chain.iteration || seenIter[k.iteration] {
			return nil, fmt.Errorf("bad skipped key for iteration %d", k.iteration)
		}
		seenIter[k.iteration] = true
	}
	return s, nil
}
