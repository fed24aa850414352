// Package devicelist is an account's list of devices, signed by the account's
// identity key: which device ids belong to the account, at which version.
//
// Every change of an account's devices (registration, linking, removal) comes
// with a new list, one version up, signed by a device that holds the identity
// key. The server checks the signature and the version and keeps the newest
// list; it hands the list out with prekey bundles, so that a sender encrypts
// only to devices the account itself vouched for, and a device sees every
// change made to its account. The server cannot add a device of its own
// without the identity key.
//
// A signed list travels as an opaque blob. Sign makes one; Verify is the only
// way to read one, so that no caller can use a list whose signature was not
// checked.
//
// The package is pure: no I/O, no clock (times are parameters), randomness
// as a parameter. Lists are values; a *List is not safe for concurrent
// mutation, and the functions here never modify the lists they are given.
package devicelist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/keys"
)

// SignatureLabel separates device-list signatures from every other signature
// an identity key makes (prekeys are signed over their bare public keys): the
// signature is over this label followed by the list's encoding. Doorless's own
// constant; nothing in libsignal signs device lists.
const SignatureLabel = "Doorless device list v1"

// MaxDeviceID is the largest device id, and so the most devices a list holds:
// api.MaxDevicesPerAccount (ids 1..127 fit the byte libsignal binds into a
// session's first messages).
const MaxDeviceID = 127

// FirstVersion is the version of an account's first list, made at
// registration with device 1 alone.
const FirstVersion = 1

// Sentinel errors.
var (
	// ErrMalformed: the bytes are not a canonical signed list, or the list
	// they hold breaks the rules of a List (see List), or Sign was given
	// such a list.
	ErrMalformed = errors.New("devicelist: malformed device list")
	// ErrBadSignature: the signature does not verify against the identity
	// key.
	ErrBadSignature = errors.New("devicelist: bad signature")
	// ErrInvalidChange: With or Without was asked for a change that makes
	// no valid next list (a device already listed or not listed, an id out
	// of range, removing the last device).
	ErrInvalidChange = errors.New("devicelist: invalid change")
)

// List is the content of a device list.
//
// A valid List has Version ≥ 1, Timestamp ≥ 0, and 1 to MaxDeviceID device
// ids in ascending order, each in 1..MaxDeviceID and none twice.
type List struct {
	// Version starts at FirstVersion and grows by one with every change.
	Version uint64
	// Timestamp is when the signer made the list, in Unix milliseconds
	// (the signer's claim; nobody checks it against a clock).
	Timestamp int64
	// Devices are the account's device ids, ascending.
	Devices []uint32
}

// Contains reports whether the list holds device id.
func (l *List) Contains(id uint32) bool {
	_, ok := slices.BinarySearch(l.Devices, id)
	return ok
}

// Equal reports whether two lists have the same version, timestamp and
// devices.
func (l *List) Equal(o *List) bool {
	return l.Version == o.Version && l.Timestamp == o.Timestamp && slices.Equal(l.Devices, o.Devices)
}

// With returns the next version of the list, made at time at, with device id
// added. ErrInvalidChange when id is out of range or already listed; an
// error when l is not a valid List.
func (l *List) With(id uint32, at time.Time) (*List, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	if id < 1 || id > MaxDeviceID {
		return nil, fmt.Errorf("%w: device id %d out of range 1..%d", ErrInvalidChange, id, MaxDeviceID)
	}
	i, found := slices.BinarySearch(l.Devices, id)
	if found {
		return nil, fmt.Errorf("%w: device %d already listed", ErrInvalidChange, id)
	}
	return l.next(slices.Insert(slices.Clone(l.Devices), i, id), at)
}

// Without returns the next version of the list, made at time at, without
// device id. ErrInvalidChange when id is not listed or is the only device;
// an error when l is not a valid List.
func (l *List) Without(id uint32, at time.Time) (*List, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	i, found := slices.BinarySearch(l.Devices, id)
	if !found {
		return nil, fmt.Errorf("%w: device %d not listed", ErrInvalidChange, id)
	}
	if len(l.Devices) == 1 {
		return nil, fmt.Errorf("%w: device %d is the only device", ErrInvalidChange, id)
	}
	return l.next(slices.Delete(slices.Clone(l.Devices), i, i+1), at)
}

func (l *List) next(devices []uint32, at time.Time) (*List, error) {
	if l.Version == math.MaxUint64 {
		return nil, fmt.Errorf("%w: version exhausted", ErrInvalidChange)
	}
	n := &List{Version: l.Version + 1, Timestamp: at.UnixMilli(), Devices: devices}
	if err := n.check(); err != nil {
		return nil, err
	}
	return n, nil
}

// check reports whether l is a valid List (ErrMalformed otherwise).
func (l *List) check() error {
	switch {
	case l == nil:
		return fmt.Errorf("%w: no list", ErrMalformed)
	case l.Version < FirstVersion:
		return fmt.Errorf("%w: version 0", ErrMalformed)
	case l.Timestamp < 0:
		return fmt.Errorf("%w: negative timestamp", ErrMalformed)
	case len(l.Devices) == 0:
		return fmt.Errorf("%w: no device", ErrMalformed)
	case len(l.Devices) > MaxDeviceID:
		return fmt.Errorf("%w: over %d devices", ErrMalformed, MaxDeviceID)
	}
	prev := uint32(0)
	for _, id := range l.Devices {
		if id < 1 || id > MaxDeviceID {
			return fmt.Errorf("%w: device id %d out of range 1..%d", ErrMalformed, id, MaxDeviceID)
		}
		if id <= prev {
			return fmt.Errorf("%w: device ids not ascending and unique", ErrMalformed)
		}
		prev = id
	}
	return nil
}

// Sign checks l and returns it signed by identity, with randomness from rand
// (crypto/rand when nil): the blob that Verify reads and the server stores.
// ErrMalformed when l is not a valid List.
func Sign(identity *keys.PrivateKey, l *List, rand io.Reader) ([]byte, error) {
	if identity == nil {
		return nil, errors.New("devicelist: no identity key")
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	enc := l.encode()
	sig, err := identity.Sign(rand, []byte(SignatureLabel), enc)
	if err != nil {
		return nil, fmt.Errorf("devicelist: sign: %v", err)
	}
	return encodeSigned(enc, sig), nil
}

// Verify checks that blob is a canonical signed list with a valid signature
// by identity, and returns the list. ErrMalformed when blob is not a
// canonical encoding of a valid List with a signature; ErrBadSignature when
// the signature does not verify. Verify never returns a list together with
// an error.
func Verify(identity keys.PublicKey, blob []byte) (*List, error) {
	enc, sig, err := decodeSigned(blob)
	if err != nil {
		return nil, err
	}
	l, err := decode(enc)
	if err != nil {
		return nil, err
	}
	if !identity.Verify(sig, []byte(SignatureLabel), enc) {
		return nil, ErrBadSignature
	}
	return l, nil
}

// Encoding: protobuf wire format, Doorless's own fields (no .proto file; no
// other program reads it). Every field is present exactly once, in field
// order, with minimal varints, so that a list has exactly one encoding:
//
//	List   { 1: version (varint), 2: timestamp (varint, Unix ms),
//	         3: devices (length-delimited, packed varints, ascending) }
//	Signed { 1: list (bytes, a List), 2: signature (bytes, 64) }
const (
	fieldVersion   protowire.Number = 1
	fieldTimestamp protowire.Number = 2
	fieldDevices   protowire.Number = 3

	fieldList      protowire.Number = 1
	fieldSignature protowire.Number = 2
)

// maxBlob bounds what the decoders look at: a list of 127 devices with the
// largest version and timestamp, and a signature, fit with room.
const maxBlob = 512

func (l *List) encode() []byte {
	var packed []byte
	for _, id := range l.Devices {
		packed = protowire.AppendVarint(packed, uint64(id))
	}
	var b []byte
	b = protowire.AppendTag(b, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, l.Version)
	b = protowire.AppendTag(b, fieldTimestamp, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(l.Timestamp))
	b = protowire.AppendTag(b, fieldDevices, protowire.BytesType)
	b = protowire.AppendBytes(b, packed)
	return b
}

func encodeSigned(list, sig []byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, fieldList, protowire.BytesType)
	b = protowire.AppendBytes(b, list)
	b = protowire.AppendTag(b, fieldSignature, protowire.BytesType)
	b = protowire.AppendBytes(b, sig)
	return b
}

// consumeField reads one field with the expected number and type, and
// returns its value (a varint's, or a length-delimited field's bytes) and
// the rest of b.
func consumeField(b []byte, num protowire.Number, typ protowire.Type) (v uint64, val, rest []byte, err error) {
	n, t, m := protowire.ConsumeTag(b)
	if m < 0 || n != num || t != typ {
		return 0, nil, nil, fmt.Errorf("%w: expected field %d", ErrMalformed, num)
	}
	b = b[m:]
	switch typ {
	case protowire.VarintType:
		v, m = protowire.ConsumeVarint(b)
	case protowire.BytesType:
		val, m = protowire.ConsumeBytes(b)
	}
	if m < 0 {
		return 0, nil, nil, fmt.Errorf("%w: field %d truncated", ErrMalformed, num)
	}
	return v, val, b[m:], nil
}

// decodeSigned splits a signed blob into the list's encoding and the
// signature.
func decodeSigned(b []byte) (list, sig []byte, err error) {
	if len(b) > maxBlob {
		return nil, nil, fmt.Errorf("%w: over %d bytes", ErrMalformed, maxBlob)
	}
	_, list, rest, err := consumeField(b, fieldList, protowire.BytesType)
	if err != nil {
		return nil, nil, err
	}
	_, sig, rest, err = consumeField(rest, fieldSignature, protowire.BytesType)
	if err != nil {
		return nil, nil, err
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if len(sig) != keys.SignatureSize {
		return nil, nil, fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(sig))
	}
	if !bytes.Equal(encodeSigned(list, sig), b) {
		return nil, nil, fmt.Errorf("%w: not canonical", ErrMalformed)
	}
	return list, sig, nil
}

// decode reads a list's encoding, refusing anything but the canonical
// encoding of a valid List.
func decode(b []byte) (*List, error) {
	version, _, rest, err := consumeField(b, fieldVersion, protowire.VarintType)
	if err != nil {
		return nil, err
	}
	ts, _, rest, err := consumeField(rest, fieldTimestamp, protowire.VarintType)
	if err != nil {
		return nil, err
	}
	_, packed, rest, err := consumeField(rest, fieldDevices, protowire.BytesType)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if ts > math.MaxInt64 {
		return nil, fmt.Errorf("%w: timestamp out of range", ErrMalformed)
	}
	l := &List{Version: version, Timestamp: int64(ts)}
	for len(packed) > 0 {
		id, m := protowire.ConsumeVarint(packed)
		if m < 0 {
			return nil, fmt.Errorf("%w: device id truncated", ErrMalformed)
		}
		if id < 1 || id > MaxDeviceID || len(l.Devices) == MaxDeviceID {
			return nil, fmt.Errorf("%w: device id out of range or too many devices", ErrMalformed)
		}
		l.Devices = append(l.Devices, uint32(id))
		packed = packed[m:]
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	// Minimal varints: the one encoding of the list is the one given.
	if !bytes.Equal(l.encode(), b) {
		return nil, fmt.Errorf("%w: not canonical", ErrMalformed)
	}
	return l, nil
}
