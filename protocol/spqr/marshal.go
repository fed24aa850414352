package spqr

import (
	"encoding/binary"
	"fmt"

	"github.com/doorless/doorless/protocol/spqr/internal/erasure"
	"github.com/doorless/doorless/protocol/spqr/internal/incmlkem"
)

// stateFormatV1 is the first byte of MarshalBinary's output. The format is
// this package's own, not the crate's protobuf state.
const stateFormatV1 = 1

// MarshalBinary encodes the state, including its secret keys, in a
// versioned binary format that ParseState reads:
//
//	format       1 byte, 1
//	direction    1 byte
//	max jump     4 bytes    (all integers big-endian)
//	max OOO keys 4 bytes
//	SCKA:  kind 1 byte, epoch 8 bytes, authenticator root key ‖ MAC key
//	       64 bytes, then the kind's fields in the order seed (64), header
//	       (64), m (32), ek (1152), ct1 (960), encoder (chunk counter 4,
//	       payload), decoder (per polynomial: count 2, count × (x 2, y 2))
//	chain: current epoch 8, send epoch 8, next root 32, link count 4, and
//	       per link the sending then the receiving ratchet: erased 1,
//	       counter 4, chain key 32, skipped key count 4, count × (index 4,
//	       key 32)
func (s *State) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, stateFormatV1, byte(s.dir))
	b = binary.BigEndian.AppendUint32(b, s.chain.params.maxJump)
	b = binary.BigEndian.AppendUint32(b, s.chain.params.maxOOOKeys)

	sc := &s.scka
	b = append(b, byte(sc.kind))
	b = binary.BigEndian.AppendUint64(b, sc.epoch)
	b = append(b, sc.auth.rootKey[:]...)
	b = append(b, sc.auth.macKey[:]...)
	f := kindFields[sc.kind].fields
	for _, v := range []struct {
		f    field
		data []byte
	}{{fSeed, sc.seed}, {fHeader, sc.header}, {fM, sc.m}, {fEk, sc.ek}, {fCt1, sc.ct1}} {
		if f&v.f != 0 {
			b = append(b, v.data...)
		}
	}
	if f&fEnc != 0 {
		b = sc.enc.AppendBinary(b)
	}
	if f&fDec != 0 {
		b = sc.dec.AppendBinary(b)
	}

	c := &s.chain
	b = binary.BigEndian.AppendUint64(b, c.currentEpoch)
	b = binary.BigEndian.AppendUint64(b, c.sendEpoch)
	b = append(b, c.nextRoot[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.links)))
	for _, l := range c.links {
		b = appendDirection(b, &l.send)
		b = appendDirection(b, &l.recv)
	}
	return b, nil
}

func appendDirection(b []byte, d *chainDirection) []byte {
	erased := byte(0)
	if d.erased {
		erased = 1
	}
	b = append(b, erased)
	b = binary.BigEndian.AppendUint32(b, d.ctr)
	b = append(b, d.next[:]...)
	entries := d.prev.all()
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = binary.BigEndian.AppendUint32(b, e.index)
		b = append(b, e.key[:]...)
	}
	return b
}

// Minimum encoded sizes, used to bound counts before allocating.
const (
	directionMinSize = 1 + 4 + keySize + 4
	linkMinSize      = 2 * directionMinSize
	keyEntrySize     = 4 + keySize
)

// reader consumes a byte slice; after the first failure every read fails.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// copyOf returns a copy of the next n bytes, so a State never aliases the
// caller's buffer.
func (r *reader) copyOf(n int) []byte {
	v := r.take(n)
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) key(dst *[keySize]byte) {
	copy(dst[:], r.take(keySize))
}

// ParseState decodes a state written by MarshalBinary. It rejects, with an
// error wrapping ErrMalformedState, anything that is not exactly such a
// state in a reachable configuration; it never panics, and it allocates at
// most a small multiple of len(b).
func ParseState(b []byte) (*State, error) {
	s, err := parseState(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedState, err)
	}
	return s, nil
}

func parseState(b []byte) (*State, error) {
	r := &reader{b: b}
	if r.u8() != stateFormatV1 {
		return nil, errString("unknown format")
	}
	s := &State{dir: Direction(r.u8())}
	params := chainParams{maxJump: r.u32(), maxOOOKeys: r.u32()}
	if r.bad || (s.dir != A2B && s.dir != B2A) || params.maxJump == 0 || params.maxOOOKeys == 0 {
		return nil, errString("bad header")
	}

	sc := &s.scka
	sc.kind = sckaKind(r.u8())
	sc.epoch = r.u64()
	r.key(&sc.auth.rootKey)
	r.key(&sc.auth.macKey)
	if r.bad || sc.kind < kindKeysUnsampled || sc.kind > kindCt2Sampled || sc.epoch == 0 {
		return nil, errString("bad key agreement state")
	}
	// The initiator generates keys in odd epochs, the responder in even ones.
	if sc.kind.sendsKey() != ((sc.epoch%2 == 1) == (s.dir == A2B)) {
		return nil, errString("key agreement role does not match epoch")
	}
	kf := kindFields[sc.kind]
	if kf.fields&fSeed != 0 {
		sc.seed = r.copyOf(incmlkem.SeedSize)
	}
	if kf.fields&fHeader != 0 {
		sc.header = r.copyOf(incmlkem.HeaderSize)
	}
	if kf.fields&fM != 0 {
		sc.m = r.copyOf(incmlkem.RandomnessSize)
	}
	if kf.fields&fEk != 0 {
		sc.ek = r.copyOf(incmlkem.EncapsulationKeySize)
		if !r.bad && incmlkem.ValidateEncapsulationKey(sc.header, sc.ek) != nil {
			return nil, errString("encapsulation key does not match header")
		}
	}
	if kf.fields&fCt1 != 0 {
		sc.ct1 = r.copyOf(incmlkem.Ciphertext1Size)
	}
	if r.bad {
		return nil, errString("truncated")
	}
	var err error
	if kf.fields&fEnc != 0 {
		if sc.enc, r.b, err = erasure.ParseEncoder(r.b, kf.encLen); err != nil {
			return nil, err
		}
	}
	if kf.fields&fDec != 0 {
		if sc.dec, r.b, err = erasure.ParseDecoder(r.b, kf.decLen); err != nil {
			return nil, err
		}
	}

	c := &s.chain
	c.dir, c.params = s.dir, params
	c.currentEpoch = r.u64()
	c.sendEpoch = r.u64()
	r.key(&c.nextRoot)
	numLinks := r.u32()
	if r.bad || numLinks == 0 || uint64(numLinks)*linkMinSize > uint64(len(r.b)) ||
		uint64(numLinks)-1 > c.currentEpoch || c.sendEpoch > c.currentEpoch {
		return nil, errString("bad chain")
	}
	// Links run from at most one epoch before the send epoch
	// (epochsToKeepPriorToSendEpoch) to the current epoch.
	firstEpoch := c.currentEpoch - uint64(numLinks-1)
	if firstEpoch > c.sendEpoch || c.sendEpoch-firstEpoch > epochsToKeepPriorToSendEpoch {
		return nil, errString("bad chain links")
	}
	// The chain has the secret of the SCKA's epoch once it has encapsulated
	// or decapsulated (src/lib.rs adds it in send and recv).
	wantEpoch := sc.epoch - 1
	if sc.kind >= kindCt1Sampled {
		wantEpoch = sc.epoch
	}
	if c.currentEpoch != wantEpoch {
		return nil, errString("chain epoch does not match key agreement epoch")
	}
	c.links = make([]chainLink, numLinks)
	for i := range c.links {
		l := &c.links[i]
		if err := parseDirection(r, &l.send, params, false); err != nil {
			return nil, err
		}
		if err := parseDirection(r, &l.recv, params, true); err != nil {
			return nil, err
		}
		// Only sending ratchets of epochs before the send epoch are erased.
		if l.send.erased != (firstEpoch+uint64(i) < c.sendEpoch) {
			return nil, errString("bad erased sending ratchet")
		}
	}
	if r.bad || len(r.b) != 0 {
		return nil, errString("truncated or trailing data")
	}
	return s, nil
}

func parseDirection(r *reader, d *chainDirection, params chainParams, receiving bool) error {
	erased := r.u8()
	d.ctr = r.u32()
	r.key(&d.next)
	count := r.u32()
	if r.bad || erased > 1 || uint64(count)*keyEntrySize > uint64(len(r.b)) {
		return errString("bad ratchet")
	}
	d.erased = erased == 1
	if d.erased && (receiving || d.ctr != 0 || d.next != [keySize]byte{} || count != 0) {
		return errString("bad erased ratchet")
	}
	if count == 0 {
		return nil
	}
	if !receiving {
		return errString("skipped keys in a sending ratchet")
	}
	entries := make([]keyEntry, count)
	horizon := d.horizon(params)
	for i := range entries {
		entries[i].index = r.u32()
		r.key(&entries[i].key)
		if e := entries[i].index; e < horizon || e >= d.ctr || (i > 0 && e <= entries[i-1].index) {
			return errString("bad skipped key")
		}
	}
	d.prev = historyOf(entries)
	return nil
}

// errString is an error for ParseState's details; ParseState wraps it.
type errString string

func (e errString) Error() string { return string(e) }
