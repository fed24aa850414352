// Package kt is Doorless's key transparency: a verifiable, append-only map
// from labels (a username) to values (the account holding it, with its
// identity key and signed device list), after the structure of the IETF
// KEYTRANS protocol draft (draft-ietf-keytrans-protocol), with the
// deviations docs/key-transparency.md lists.
//
// The map is a prefix tree whose leaves sit at VRF-hidden indexes (kt/vrf)
// and hold a commitment to their label's value and a counter of how many
// values the label has had; the log is an RFC 6962 Merkle tree with one
// leaf per epoch, holding that epoch's prefix-tree root. The server signs
// C2SP checkpoints of the log; independent auditors (Auditor) replay every
// epoch's changes, check that no leaf was removed or rewound, and cosign
// the checkpoints (C2SP cosignature/v1).
//
// The server side is Log; a client checks a LookupProof with a Verifier and
// keeps the Head it saw, so that every later head must be consistent with
// it.
//
// Where it departs from the draft (each constant cites the draft section
// it follows or departs from):
//
//   - one prefix-tree leaf per label, not per version: the leaf hashes a
//     counter of the label's earlier values (auditors check it grows by
//     one per change), the VRF input and the commitment carry no version,
//     and lookups need no binary ladder;
//   - labels carry a kind byte (only usernames so far), and an account's
//     one label is its username's: the value names the account;
//   - the log tree hashes as RFC 6962 (transparency-dev/merkle), with the
//     draft's LogEntry (timestamp, prefix root) as the leaf data; tree
//     heads are C2SP checkpoints signed with Ed25519 notes, and auditors
//     cosign with C2SP cosignature/v1 instead of the draft's
//     AuditorTreeHead;
//   - proofs use this package's binary encodings (LookupProof,
//     EpochChanges), not the draft's CombinedTreeProof, and auditors
//     replay EpochChanges;
//   - the empty prefix tree's root is all zeros, and a lone leaf sits at
//     the root.
//
// The package is pure: no I/O, no clock (times are parameters), randomness
// as a parameter. Log is safe for concurrent use; Auditor is not;
// everything else is a value.
package kt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/doorless/doorless/kt/vrf"
)

// Sizes.
const (
	HashSize    = 32 // SHA-256 (the draft's Hash.Nh)
	OpeningSize = 16 // a commitment's random opening (the draft's Nc)
)

// Limits. Every decoder enforces them, and Log.Append refuses updates that
// break them.
const (
	// MaxLabelSize is the longest label: the draft encodes labels as
	// opaque label<0..2^8-1> (section "Commitment", "Verifiable Random
	// Function").
	MaxLabelSize = 255
	// MaxValueSize is the longest value a label may hold. (The draft
	// allows 2^32-1; a signed device list of 127 devices is under 1 KiB.)
	MaxValueSize = 1 << 16
	// MaxUpdates is the most labels one epoch may change.
	MaxUpdates = 1 << 16
	// MaxLookupLabels is the most labels one lookup may answer.
	MaxLookupLabels = 16
	// MaxAudited is the most auditor-cosigned checkpoints a lookup carries.
	MaxAudited = 16
	// MaxCheckpointSize bounds a checkpoint note (with its signatures).
	MaxCheckpointSize = 8 << 10
	// maxLogProof bounds an RFC 6962 inclusion or consistency proof: a
	// log of fewer than 2^64 leaves needs fewer than 2*64 hashes.
	maxLogProof = 128
	// maxPrefixDepth is the deepest a prefix-tree path goes: two distinct
	// 256-bit indexes share at most 255 bits, so a leaf sits at depth 256
	// at most.
	maxPrefixDepth = 8 * HashSize
)

// Sentinel errors. Every failure of a proof is one of these, so that a
// client can fail closed on any of them and name the reason.
var (
	// ErrMalformed: bytes that are not a canonical encoding.
	ErrMalformed = errors.New("kt: malformed")
	// ErrInvalidProof: a proof that does not verify (a VRF proof, a
	// prefix-tree path, a commitment opening, a log inclusion proof).
	ErrInvalidProof = errors.New("kt: invalid proof")
	// ErrBadCheckpoint: a checkpoint not signed by the log's key, or for
	// another log (origin).
	ErrBadCheckpoint = errors.New("kt: bad checkpoint signature")
	// ErrMissingCosignature: fewer recent auditor cosignatures than the
	// verifier requires.
	ErrMissingCosignature = errors.New("kt: missing auditor cosignature")
	// ErrInconsistent: the log is not an extension of the head the client
	// kept (a fork, a split view, a rollback).
	ErrInconsistent = errors.New("kt: log inconsistent with the last head seen")
	// ErrAuditFailed: an epoch's changes break the log's rules (a leaf
	// removed, a counter not one up, a root that does not match).
	ErrAuditFailed = errors.New("kt: audit failed")
	// ErrEntryMismatch: the entry a lookup read from the store is not the
	// prefix tree's leaf: the store is ahead of this Log (another server
	// appended an epoch it has not applied yet), or damaged.
	ErrEntryMismatch = errors.New("kt: the stored entry is not the tree's leaf")
	// ErrStale: the log's newest epoch is older than the verifier's
	// MaxEpochAge (or that far ahead of its clock): the server may be
	// showing this client an old, frozen view of the log.
	ErrStale = errors.New("kt: the log's newest epoch is stale")
)

// Hash is a SHA-256 digest.
type Hash [HashSize]byte

// Index is a label's place in the prefix tree: the first HashSize bytes of
// the VRF's output for the label.
type Index [HashSize]byte

// indexOf returns the index for a VRF output: its first HashSize bytes
// (the draft's cipher suite KT_128_SHA256_Ed25519 truncates the output of
// ECVRF-EDWARDS25519-SHA512-TAI to 32 bytes, section "KT Cipher Suites").
func indexOf(beta [vrf.OutputSize]byte) Index {
	var i Index
	copy(i[:], beta[:HashSize])
	return i
}

// bit returns bit n of the index, most significant first: the direction
// (0 left, 1 right) the path to the index takes below depth n.
func (i *Index) bit(n int) int { return int(i[n>>3]>>(7-uint(n&7))) & 1 }

// commonPrefix returns how many leading bits a and b share (256 if equal).
func commonPrefix(a, b *Index) int {
	for k := 0; k < HashSize; k++ {
		if x := a[k] ^ b[k]; x != 0 {
			n := 0
			for x&0x80 == 0 {
				x <<= 1
				n++
			}
			return 8*k + n
		}
	}
	return maxPrefixDepth
}

// Label kinds: the first byte of a label, so that labels of other kinds,
// should the log ever hold them, never collide with a username's
// (Doorless's own choice; the draft leaves labels to the application).
// 0x01 was an account id's label before an account's entry moved under its
// username; it stays unused.
const labelKindUsername = 0x02

// UsernameLabel is the label of a username's entry, whose value is an
// AccountValue: the account that holds the username, its identity key and
// its signed device list (the empty value once the account is deleted).
// The caller passes the username in its canonical (normalized) form: two
// spellings are two labels.
func UsernameLabel(username string) []byte {
	return append([]byte{labelKindUsername}, username...)
}

// vrfInput is the VRF's input for a label: the draft's VrfInput (section
// "Verifiable Random Function", opaque label<0..2^8-1> followed by a
// uint32 version) without the version, since a label has one leaf for all
// its versions here. The label must be at most MaxLabelSize bytes.
func vrfInput(label []byte) []byte {
	b := make([]byte, 0, 1+len(label))
	b = append(b, byte(len(label)))
	return append(b, label...)
}

// accountValueVersion is the first byte of an encoded AccountValue. (1 was
// an account entry's value without the account id, when an account had an
// entry of its own besides its username's.)
const accountValueVersion = 2

// Limits of an AccountValue's fields: their lengths are encoded in one
// byte, and a signed device list (internal/devicelist) of the most devices
// an account may have is well under MaxValueSize.
const (
	maxAccountIDSize   = 255
	maxIdentityKeySize = 255
)

// AccountValue is what a username's entry commits to: the account that
// holds the username, its identity key and its signed device list. Every
// version of the device list is published, in order, so the entry's
// counter moves with the list's version (docs/key-transparency.md). The
// empty value (not the encoding of a zero AccountValue, which is never
// empty) marks a username whose account was deleted; a new account that
// takes the username later is the next value of the same label.
type AccountValue struct {
	AccountID   string // the account's id (a UUID, as the server hands it out)
	IdentityKey []byte // 33 bytes, 0x05 and the key
	DeviceList  []byte // the signed device list (internal/devicelist)
}

// Encode returns the value's canonical encoding: a version byte (2), the
// account id and the identity key each with a one-byte length, the device
// list with a four-byte big-endian length. An account id or identity key
// over 255 bytes, or a device list over MaxValueSize, makes an encoding
// that DecodeAccountValue refuses.
func (v *AccountValue) Encode() []byte {
	if len(v.AccountID) > maxAccountIDSize || len(v.IdentityKey) > maxIdentityKeySize || len(v.DeviceList) > MaxValueSize {
		return []byte{0} // no version byte DecodeAccountValue takes
	}
	b := make([]byte, 0, 1+1+len(v.AccountID)+1+len(v.IdentityKey)+4+len(v.DeviceList))
	b = append(b, accountValueVersion, byte(len(v.AccountID)))
	b = append(b, v.AccountID...)
	b = append(b, byte(len(v.IdentityKey)))
	b = append(b, v.IdentityKey...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v.DeviceList)))
	return append(b, v.DeviceList...)
}

// DecodeAccountValue parses an encoded AccountValue strictly: the version,
// an account id that is not empty, lengths that match, nothing after
// (ErrMalformed). The empty value (a deleted account) is not an
// AccountValue: the caller checks for it first.
func DecodeAccountValue(b []byte) (*AccountValue, error) {
	r := reader{b: b}
	if r.u8() != accountValueVersion {
		return nil, fmt.Errorf("%w: account value version", ErrMalformed)
	}
	id := r.bytes(int(r.u8()))
	key := r.bytes(int(r.u8()))
	n := r.u32()
	if n > MaxValueSize {
		return nil, fmt.Errorf("%w: device list too long", ErrMalformed)
	}
	list := r.bytes(int(n))
	if err := r.done(); err != nil {
		return nil, err
	}
	if len(id) == 0 {
		return nil, fmt.Errorf("%w: account value without an account id", ErrMalformed)
	}
	return &AccountValue{AccountID: string(id), IdentityKey: clone(key), DeviceList: clone(list)}, nil
}

// commitmentKey is the draft's Kc for the cipher suites with SHA-256
// (section "KT Cipher Suites": the bytes of hex d821f8790d97709796b4d7903357c3f5).
var commitmentKey = [16]byte{
	0xd8, 0x21, 0xf8, 0x79, 0x0d, 0x97, 0x70, 0x97,
	0x96, 0xb4, 0xd7, 0x90, 0x33, 0x57, 0xc3, 0xf5,
}

// commit is the commitment to a label's value with a random opening: the
// draft's HMAC-SHA256(Kc, CommitmentValue) (section "Commitment") over
// opening[16] || label<0..2^8-1> || value<0..2^32-1>, that is the draft's
// CommitmentValue without its version field (the leaf's hash covers the
// counter instead) and with the UpdateValue of a log without third-party
// management (just the value). It panics on a label over MaxLabelSize
// bytes, which Log.Append and Verifier.Verify refuse before.
func commit(label, value []byte, opening *[OpeningSize]byte) Hash {
	if len(label) > MaxLabelSize || uint64(len(value)) > math.MaxUint32 {
		panic("kt: label or value too long to commit to")
	}
	m := hmac.New(sha256.New, commitmentKey[:])
	m.Write(opening[:])
	m.Write([]byte{byte(len(label))})
	m.Write(label)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(value)))
	m.Write(n[:])
	m.Write(value)
	var h Hash
	m.Sum(h[:0])
	return h
}

// Leaf is one label's leaf in the prefix tree. Counter is how many values
// the label had before this one (0 for the first); the log's rules let it
// only grow, one at a time.
type Leaf struct {
	Index      Index
	Counter    uint32
	Commitment Hash
}

// Prefix-tree node hashing (draft section "Cryptographic Computations",
// "Prefix Tree"): leaf.value = Hash(0x02 || vrf_output || commitment) and
// parent.value = Hash(0x03 || left.value || right.value), with an all-zero
// value standing in for a missing child. Our leaf also hashes its counter
// (big-endian uint32) between the index and the commitment, since one leaf
// serves all the label's versions.
const (
	prefixLeafTag   = 0x02
	prefixParentTag = 0x03
)

// hash returns the leaf's prefix-tree hash.
func (l *Leaf) hash() Hash {
	var b [1 + HashSize + 4 + HashSize]byte
	b[0] = prefixLeafTag
	copy(b[1:], l.Index[:])
	binary.BigEndian.PutUint32(b[1+HashSize:], l.Counter)
	copy(b[1+HashSize+4:], l.Commitment[:])
	return sha256.Sum256(b[:])
}

// parentHash returns a prefix-tree parent's hash from its children's.
func parentHash(left, right *Hash) Hash {
	var b [1 + 2*HashSize]byte
	b[0] = prefixParentTag
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// epochSize is the size of an encoded Epoch: the draft's LogEntry
// (section "Log Tree": uint64 timestamp, opaque prefix_tree[Hash.Nh]).
const epochSize = 8 + HashSize

// Epoch is one leaf of the log: the prefix tree's root when the epoch was
// made, and when.
type Epoch struct {
	Timestamp  int64 // Unix milliseconds, not negative
	PrefixRoot Hash
}

// Encode returns the log leaf's canonical encoding, the draft's LogEntry:
// the timestamp as a big-endian uint64 and the prefix root.
func (e *Epoch) Encode() []byte {
	return e.appendTo(make([]byte, 0, epochSize))
}

func (e *Epoch) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.Timestamp))
	return append(b, e.PrefixRoot[:]...)
}

// DecodeEpoch parses a log leaf (ErrMalformed).
func DecodeEpoch(b []byte) (*Epoch, error) {
	r := reader{b: b}
	e := r.epoch()
	if err := r.done(); err != nil {
		return nil, err
	}
	return &e, nil
}

// epochChangesVersion is the first byte of encoded EpochChanges.
const epochChangesVersion = 1

// leafSize is the size of an encoded Leaf: index, counter, commitment.
const leafSize = HashSize + 4 + HashSize

// EpochChanges is what an auditor replays: an epoch and the leaves it
// added or changed, in index order.
type EpochChanges struct {
	Epoch  Epoch
	Leaves []Leaf
}

// MarshalBinary encodes the changes: a version byte (1), the encoded
// epoch, a big-endian uint32 count and the leaves (index, big-endian
// uint32 counter, commitment). It refuses leaves out of strict index
// order, more than MaxUpdates of them, or a negative timestamp.
func (c *EpochChanges) MarshalBinary() ([]byte, error) {
	if len(c.Leaves) > MaxUpdates {
		return nil, fmt.Errorf("%w: too many leaves", ErrMalformed)
	}
	if c.Epoch.Timestamp < 0 {
		return nil, fmt.Errorf("%w: negative timestamp", ErrMalformed)
	}
	b := make([]byte, 0, 1+epochSize+4+len(c.Leaves)*leafSize)
	b = append(b, epochChangesVersion)
	b = c.Epoch.appendTo(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Leaves)))
	for k := range c.Leaves {
		l := &c.Leaves[k]
		if k > 0 && !indexLess(&c.Leaves[k-1].Index, &l.Index) {
			return nil, fmt.Errorf("%w: leaves out of index order", ErrMalformed)
		}
		b = appendLeaf(b, l)
	}
	return b, nil
}

// UnmarshalBinary parses encoded changes strictly (ErrMalformed).
func (c *EpochChanges) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	if r.u8() != epochChangesVersion {
		return fmt.Errorf("%w: epoch changes version", ErrMalformed)
	}
	e := r.epoch()
	n := r.u32()
	if n > MaxUpdates || uint64(n)*leafSize != uint64(r.left()) {
		return fmt.Errorf("%w: leaf count", ErrMalformed)
	}
	leaves := make([]Leaf, n)
	for k := range leaves {
		leaves[k] = r.leaf()
		if k > 0 && !indexLess(&leaves[k-1].Index, &leaves[k].Index) {
			return fmt.Errorf("%w: leaves out of index order", ErrMalformed)
		}
	}
	if err := r.done(); err != nil {
		return err
	}
	c.Epoch, c.Leaves = e, leaves
	return nil
}

func indexLess(a, b *Index) bool {
	for k := range a {
		if a[k] != b[k] {
			return a[k] < b[k]
		}
	}
	return false
}

func appendLeaf(b []byte, l *Leaf) []byte {
	b = append(b, l.Index[:]...)
	b = binary.BigEndian.AppendUint32(b, l.Counter)
	return append(b, l.Commitment[:]...)
}

func clone(b []byte) []byte { return append([]byte{}, b...) }

// reader reads a strict binary encoding; the first read past the end (or
// a bad field) sets err and every later read returns zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	r.b = nil
}

func (r *reader) left() int { return len(r.b) }

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.fail("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) hash() (h Hash) {
	copy(h[:], r.bytes(HashSize))
	return h
}

func (r *reader) epoch() Epoch {
	ts := r.u64()
	if ts > math.MaxInt64 {
		r.fail("timestamp out of range")
	}
	return Epoch{Timestamp: int64(ts), PrefixRoot: r.hash()}
}

func (r *reader) leaf() Leaf {
	var l Leaf
	l.Index = Index(r.hash())
	l.Counter = r.u32()
	l.Commitment = r.hash()
	return l
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	return r.err
}
