// Package kt is Doorless's key transparency: a verifiable, append-only map
// from labels (an account id, a username) to values (an identity key and a
// signed device list, an account id), after the structure of the IETF
// KEYTRANS protocol draft (draft-ietf-keytrans-protocol), with the
// deviations docs/key-transparency.md lists.
//
// The map is a prefix tree (PrefixTree) whose leaves sit at VRF-hidden
// indexes (kt/vrf) and hold a commitment to their label's value and a
// counter of how many values the label has had; the log (LogTree) is an RFC
// 6962 Merkle tree with one leaf per epoch, holding that epoch's prefix-tree
// root. The server signs C2SP checkpoints of the log; independent auditors
// (Auditor) replay every epoch's changes, check that no leaf was removed or
// rewound, and cosign the checkpoints (C2SP cosignature/v1).
//
// The server side is Log; a client checks a LookupProof with a Verifier and
// keeps the Head it saw, so that every later head must be consistent with
// it.
//
// The package is pure: no I/O, no clock (times are parameters), randomness
// as a parameter. Log is safe for concurrent use; PrefixTree, LogTree and
// Auditor are not; everything else is a value.
package kt

import (
	"errors"
	"io"
	"iter"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt/vrf"
)

// Sizes.
const (
	HashSize    = 32 // SHA-256
	OpeningSize = 16 // a commitment's random opening (the draft's Nc)
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
)

// Hash is a SHA-256 digest.
type Hash [HashSize]byte

// Index is a label's place in the prefix tree: the first HashSize bytes of
// the VRF's output for the label.
type Index [HashSize]byte

// IndexOf returns the index for a VRF output.
func IndexOf(beta [vrf.OutputSize]byte) Index { panic("kt: not implemented") }

// AccountLabel is the label of an account's entry, whose value is an
// AccountValue.
func AccountLabel(accountID string) []byte { panic("kt: not implemented") }

// UsernameLabel is the label of a username's entry, whose value is the
// account id the username belongs to.
func UsernameLabel(username string) []byte { panic("kt: not implemented") }

// AccountValue is what an account's entry commits to. The empty value
// (Encode of the zero AccountValue is never empty; a deleted account's value
// is the empty byte string) marks an account that was deleted.
type AccountValue struct {
	IdentityKey []byte // 33 bytes, 0x05 and the key
	DeviceList  []byte // the signed device list (internal/devicelist)
}

// Encode returns the value's canonical encoding.
func (v *AccountValue) Encode() []byte { panic("kt: not implemented") }

// DecodeAccountValue parses an encoded AccountValue (ErrMalformed).
func DecodeAccountValue(b []byte) (*AccountValue, error) { panic("kt: not implemented") }

// Commit is the commitment to a label's value with a random opening
// (draft section "Commitment": HMAC-SHA256 under the draft's fixed key over
// the opening, the label and the value, each length-prefixed).
func Commit(label, value []byte, opening *[OpeningSize]byte) Hash { panic("kt: not implemented") }

// Leaf is one label's leaf in the prefix tree. Counter is how many values
// the label had before this one (0 for the first); the log's rules let it
// only grow, one at a time.
type Leaf struct {
	Index      Index
	Counter    uint32
	Commitment Hash
}

// Epoch is one leaf of the log: the prefix tree's root when the epoch was
// made, and when.
type Epoch struct {
	Timestamp  int64 // Unix milliseconds
	PrefixRoot Hash
}

// Encode returns the log leaf's canonical encoding.
func (e *Epoch) Encode() []byte { panic("kt: not implemented") }

// DecodeEpoch parses a log leaf (ErrMalformed).
func DecodeEpoch(b []byte) (*Epoch, error) { panic("kt: not implemented") }

// EpochChanges is what an auditor replays: an epoch and the leaves it
// added or changed, in index order.
type EpochChanges struct {
	Epoch  Epoch
	Leaves []Leaf
}

// MarshalBinary encodes the changes.
func (c *EpochChanges) MarshalBinary() ([]byte, error) { panic("kt: not implemented") }

// UnmarshalBinary parses encoded changes strictly (ErrMalformed).
func (c *EpochChanges) UnmarshalBinary(b []byte) error { panic("kt: not implemented") }

// PrefixTree is the map's tree: a binary Merkle trie over indexes in which
// a leaf sits at the shallowest node whose subtree holds no other leaf. The
// zero value is not ready; use NewPrefixTree. Not safe for concurrent use.
type PrefixTree struct{ _ [0]func() }

// NewPrefixTree returns an empty tree.
func NewPrefixTree() *PrefixTree { panic("kt: not implemented") }

// Len returns the number of leaves.
func (t *PrefixTree) Len() int { panic("kt: not implemented") }

// Root returns the tree's root hash.
func (t *PrefixTree) Root() Hash { panic("kt: not implemented") }

// Get returns the leaf at index i.
func (t *PrefixTree) Get(i Index) (Leaf, bool) { panic("kt: not implemented") }

// Set puts the leaf at its index, returning the leaf it replaced.
func (t *PrefixTree) Set(l Leaf) (old Leaf, replaced bool) { panic("kt: not implemented") }

// Delete removes the leaf at index i. The log never removes a leaf: only
// Log.Revert uses it, to undo an epoch that could not be stored.
func (t *PrefixTree) Delete(i Index) bool { panic("kt: not implemented") }

// Prove returns the path to index i: its leaf, or proof that it has none.
func (t *PrefixTree) Prove(i Index) *PrefixProof { panic("kt: not implemented") }

// PrefixProof is a path in the prefix tree from the root to the node where
// an index's search ends.
type PrefixProof struct {
	// Siblings are the hashes beside the path, from the root down.
	Siblings []Hash
	// Terminal is the leaf where the path ends: the index's own leaf
	// (inclusion), or another leaf that shares the path's prefix
	// (non-inclusion). Nil only for the empty tree.
	Terminal *Leaf
}

// Evaluate checks the proof's shape for index i and returns the root it
// leads to and the index's leaf (nil when the proof shows it absent).
// ErrInvalidProof when the proof cannot be a path to i.
func (p *PrefixProof) Evaluate(i Index) (root Hash, leaf *Leaf, err error) {
	panic("kt: not implemented")
}

// LogTree is an RFC 6962 Merkle tree held in memory. The zero value is an
// empty tree. Not safe for concurrent use.
type LogTree struct{ _ [0]func() }

// Append adds a leaf (its data, hashed as an RFC 6962 leaf) and returns its
// index.
func (t *LogTree) Append(data []byte) uint64 { panic("kt: not implemented") }

// Size returns the number of leaves.
func (t *LogTree) Size() uint64 { panic("kt: not implemented") }

// Root returns the root of the tree's first size leaves.
func (t *LogTree) Root(size uint64) (Hash, error) { panic("kt: not implemented") }

// Inclusion proves leaf index in the tree's first size leaves.
func (t *LogTree) Inclusion(index, size uint64) ([]Hash, error) { panic("kt: not implemented") }

// Consistency proves that the first size1 leaves are a prefix of the first
// size2.
func (t *LogTree) Consistency(size1, size2 uint64) ([]Hash, error) { panic("kt: not implemented") }

// Checkpoint is a C2SP tlog-checkpoint of the log.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
}

// Head is what a client keeps of the log between lookups: the last
// checkpoint it verified.
type Head struct {
	Size uint64
	Root Hash
}

// LookupProof answers a lookup of one or more labels against the log's
// newest epoch.
type LookupProof struct {
	// Checkpoint is the newest signed checkpoint (a note, with the log's
	// signature).
	Checkpoint []byte
	// Consistency proves the checkpoint's tree extends the tree of the
	// head the client said it knows (empty when it knows none).
	Consistency []Hash
	// Audited are the newest checkpoints auditors cosigned (each a note
	// with the log's signature and cosignatures), with proofs that the
	// checkpoint's tree extends each.
	Audited []AuditedCheckpoint
	// Epoch is the log's last leaf, and EpochInclusion its inclusion
	// proof in the checkpoint's tree.
	Epoch          Epoch
	EpochInclusion []Hash
	// Entries answer the labels asked, in order.
	Entries []EntryProof
}

// AuditedCheckpoint is a cosigned checkpoint and the consistency proof from
// it to the lookup's checkpoint.
type AuditedCheckpoint struct {
	Checkpoint  []byte
	Consistency []Hash
}

// EntryProof answers one label.
type EntryProof struct {
	VRFProof [vrf.ProofSize]byte
	Prefix   PrefixProof
	// Opening and Value open the leaf's commitment; absent when the
	// label has no leaf.
	Opening [OpeningSize]byte
	Value   []byte
}

// MarshalBinary encodes the proof.
func (p *LookupProof) MarshalBinary() ([]byte, error) { panic("kt: not implemented") }

// UnmarshalBinary parses an encoded proof strictly (ErrMalformed).
func (p *LookupProof) UnmarshalBinary(b []byte) error { panic("kt: not implemented") }

// Result is what a verified lookup says about one label.
type Result struct {
	Index   Index
	Present bool
	Counter uint32
	Value   []byte
}

// Verifier checks lookups for a client. Its fields are configuration, set
// once; it is then safe for concurrent use.
type Verifier struct {
	Origin string         // the log's origin line
	LogKey note.Verifier  // the log's checkpoint key
	VRFKey *vrf.PublicKey // the log's VRF key
	// Auditors are the cosigners the client trusts; NeedCosignatures of
	// them must have cosigned a checkpoint the lookup's extends, at most
	// MaxAuditLag before now.
	Auditors         []note.Verifier
	NeedCosignatures int
	MaxAuditLag      time.Duration
}

// Verify checks a lookup of labels against the head the client kept (nil:
// none yet) at time now, and returns the new head and one Result per label.
// Every failure is one of the package's sentinel errors.
func (v *Verifier) Verify(known *Head, labels [][]byte, p *LookupProof, now time.Time) (*Head, []Result, error) {
	panic("kt: not implemented")
}

// Update sets a label's value; an empty Value marks the label deleted.
type Update struct {
	Label []byte
	Value []byte
}

// Entry is what the server keeps of a label to answer lookups: its leaf and
// the commitment's opening and value.
type Entry struct {
	Label   []byte
	Leaf    Leaf
	Opening [OpeningSize]byte
	Value   []byte
}

// Batch is one epoch made by Log.Append: what the store keeps of it.
type Batch struct {
	Changes    EpochChanges // public: what auditors replay
	Entries    []Entry      // private: the labels' new entries
	Checkpoint []byte       // the signed checkpoint of the log with this epoch
}

// LogConfig configures a Log.
type LogConfig struct {
	Origin string
	Signer note.Signer // signs checkpoints; its name is the origin's key name
	VRF    *vrf.PrivateKey
}

// Log is the server's side: the prefix tree and the log tree in memory,
// rebuilt from the store at start. Safe for concurrent use.
type Log struct{ _ [0]func() }

// NewLog returns an empty log.
func NewLog(cfg LogConfig) (*Log, error) { panic("kt: not implemented") }

// Restore rebuilds the trees from the stored leaves (each label's newest)
// and epochs, and checks that the last epoch's prefix root is the tree's.
func (l *Log) Restore(leaves iter.Seq[Leaf], epochs []Epoch) error { panic("kt: not implemented") }

// Append makes one epoch from the updates (at most one per label) at time
// now, applies it to the trees and returns it for the store.
func (l *Log) Append(updates []Update, now time.Time, rand io.Reader) (*Batch, error) {
	panic("kt: not implemented")
}

// Revert undoes the last Append, when its batch could not be stored.
func (l *Log) Revert(b *Batch) error { panic("kt: not implemented") }

// Index returns a label's index.
func (l *Log) Index(label []byte) Index { panic("kt: not implemented") }

// Prove answers a lookup of labels for a client that knows the log up to
// size known (0: nothing). entry returns a label's stored entry (nil when
// it has none).
func (l *Log) Prove(labels [][]byte, known uint64, entry func(Index) (*Entry, error)) (*LookupProof, error) {
	panic("kt: not implemented")
}

// Checkpoint returns the newest signed checkpoint.
func (l *Log) Checkpoint() []byte { panic("kt: not implemented") }

// AddCosignature records an auditor's cosignature of one of the log's
// checkpoints (a note holding the log's signature and the auditor's
// cosignature, verified against auditor), to hand out with later lookups.
func (l *Log) AddCosignature(cosigned []byte, auditor note.Verifier) error {
	panic("kt: not implemented")
}

// Auditor follows the log epoch by epoch and cosigns what it checked. Not
// safe for concurrent use.
type Auditor struct{ _ [0]func() }

// NewAuditor returns an auditor that has seen nothing of the log.
func NewAuditor(origin string, logKey note.Verifier) *Auditor { panic("kt: not implemented") }

// Apply replays one epoch: a new leaf must have counter 0, a changed leaf
// its old counter plus one, no index twice, and the result must have the
// epoch's prefix root (ErrAuditFailed otherwise).
func (a *Auditor) Apply(c *EpochChanges) error { panic("kt: not implemented") }

// Head returns the log as the auditor has replayed it.
func (a *Auditor) Head() Head { panic("kt: not implemented") }

// Cosign checks that the signed checkpoint is the log's and describes
// exactly the auditor's head, and returns it with the auditor's
// cosignature (C2SP cosignature/v1, timestamped now) added.
func (a *Auditor) Cosign(checkpoint []byte, cosigner note.Signer, now time.Time) ([]byte, error) {
	panic("kt: not implemented")
}

// GenerateCosignerKey makes a cosigner's key pair, as note key strings.
func GenerateCosignerKey(rand io.Reader, name string) (skey, vkey string, err error) {
	panic("kt: not implemented")
}

// NewCosigner returns a signer of C2SP cosignature/v1 signatures.
func NewCosigner(skey string, now func() time.Time) (note.Signer, error) {
	panic("kt: not implemented")
}

// NewCosignatureVerifier returns a verifier of cosignature/v1 signatures.
func NewCosignatureVerifier(vkey string) (note.Verifier, error) { panic("kt: not implemented") }
