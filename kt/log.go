package kt

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt/vrf"
)

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
	Entries    []Entry      // private: the labels' new entries, in index order
	Checkpoint []byte       // the signed checkpoint of the log with this epoch
}

// LogConfig configures a Log.
type LogConfig struct {
	Origin string
	Signer note.Signer // signs checkpoints; its name is the origin's key name
	VRF    *vrf.PrivateKey
}

// ErrNotLast is Log.Revert's answer for a batch that is not the last one
// Append made.
var ErrNotLast = errors.New("kt: batch is not the log's last")

// Log is the server's side: the prefix tree and the log tree in memory,
// rebuilt from the store at start. Safe for concurrent use: Append, Revert
// and Restore exclude each other and everything else; Prove, Index and
// Checkpoint run concurrently.
type Log struct {
	origin string
	sig    note.Signer
	vrf    *vrf.PrivateKey

	mu         sync.RWMutex
	prefix     *prefixTree
	log        logTree
	lastTime   int64      // the last epoch's timestamp
	checkpoint signedNote // the newest checkpoint, signed by the log only
	// cosigned holds each auditor's newest cosigned checkpoint, by the
	// auditor's name and key hash.
	cosigned map[note.Signature]cosignedCheckpoint
	// undo is what Revert needs to undo the last Append.
	undo *undoRecord
}

type cosignedCheckpoint struct {
	size   uint64
	time   time.Time
	logged signedNote     // the checkpoint, signed by the log
	sig    note.Signature // the auditor's signature line
}

// signedNote is a note signed by the log.
type signedNote struct {
	text string
	sig  note.Signature
}

func (n signedNote) encode(more ...note.Signature) []byte {
	if n.text == "" {
		return nil
	}
	b, err := encodeNote(n.text, append([]note.Signature{n.sig}, more...)...)
	if err != nil {
		panic(err) // the log wrote the text and checked the names
	}
	return b
}

// undoRecord is what Revert needs to undo the last Append (whose
// checkpoint is the log's newest while the record is kept).
type undoRecord struct {
	previous signedNote // the checkpoint before the batch's
	lastTime int64
	old      []Leaf  // leaves the batch replaced
	added    []Index // leaves the batch added
}

// NewLog returns an empty log.
func NewLog(cfg LogConfig) (*Log, error) {
	if cfg.Signer == nil || cfg.VRF == nil {
		return nil, errors.New("kt: log needs a signer and a VRF key")
	}
	if _, err := ParseCheckpoint((&Checkpoint{Origin: cfg.Origin}).Marshal()); err != nil {
		return nil, fmt.Errorf("kt: log origin: %v", err)
	}
	if !validKeyName(cfg.Signer.Name()) {
		return nil, errors.New("kt: log signer name")
	}
	return &Log{
		origin:   cfg.Origin,
		sig:      cfg.Signer,
		vrf:      cfg.VRF,
		prefix:   newPrefixTree(),
		cosigned: make(map[note.Signature]cosignedCheckpoint),
	}, nil
}

// Restore rebuilds the trees from the stored leaves (each label's newest)
// and epochs, and checks that the last epoch's prefix root is the tree's.
// The log must be empty. Cosignatures are not restored: give them to
// AddCosignature again.
func (l *Log) Restore(leaves iter.Seq[Leaf], epochs []Epoch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log.Size() != 0 || l.prefix.Len() != 0 {
		return errors.New("kt: restore into a log that is not empty")
	}
	var all []Leaf
	for leaf := range leaves {
		all = append(all, leaf)
	}
	slices.SortFunc(all, func(a, b Leaf) int { return bytes.Compare(a.Index[:], b.Index[:]) })
	for k := 1; k < len(all); k++ {
		if all[k].Index == all[k-1].Index {
			return errors.New("kt: restore: two leaves at one index")
		}
	}
	t := newPrefixTree()
	t.build(all)
	all = nil
	var lt logTree
	last := int64(0)
	for k := range epochs {
		if epochs[k].Timestamp < last {
			return fmt.Errorf("kt: restore: epoch %d goes back in time", k)
		}
		last = epochs[k].Timestamp
		lt.Append(epochs[k].Encode())
	}
	if len(epochs) == 0 {
		if t.Len() != 0 {
			return errors.New("kt: restore: leaves without epochs")
		}
		return nil
	}
	if t.Root() != epochs[len(epochs)-1].PrefixRoot {
		return errors.New("kt: restore: leaves do not make the last epoch's prefix root")
	}
	cp, err := l.sign(&lt, lt.Size())
	if err != nil {
		return err
	}
	l.prefix, l.log, l.lastTime, l.checkpoint, l.undo = t, lt, last, cp, nil
	return nil
}

// sign signs a checkpoint of t's first size leaves.
func (l *Log) sign(t *logTree, size uint64) (signedNote, error) {
	c := Checkpoint{Origin: l.origin, Size: size}
	var err error
	if c.Root, err = t.Root(c.Size); err != nil {
		return signedNote{}, err
	}
	text := c.Marshal()
	sig, err := l.sig.Sign(text)
	if err != nil {
		return signedNote{}, fmt.Errorf("kt: sign checkpoint: %v", err)
	}
	raw := binary.BigEndian.AppendUint32(nil, l.sig.KeyHash())
	return signedNote{text: string(text), sig: note.Signature{
		Name: l.sig.Name(), Hash: l.sig.KeyHash(), Base64: base64.StdEncoding.EncodeToString(append(raw, sig...)),
	}}, nil
}

// Index returns a label's index.
func (l *Log) Index(label []byte) Index {
	return indexOf(l.vrf.Hash(vrfInput(label)))
}

// Append makes one epoch from the updates (at most one per label) at time
// now, applies it to the trees and returns it for the store. A label's new
// leaf has counter 0, or its old counter plus one; each commitment gets a
// fresh opening from rand. The epoch's timestamp is now, or the last
// epoch's if the clock went back. An epoch may change nothing (a signed
// heartbeat).
func (l *Log) Append(updates []Update, now time.Time, rand io.Reader) (*Batch, error) {
	if len(updates) > MaxUpdates {
		return nil, fmt.Errorf("kt: %d updates in one epoch, at most %d", len(updates), MaxUpdates)
	}
	for k := range updates {
		if len(updates[k].Label) > MaxLabelSize || len(updates[k].Value) > MaxValueSize {
			return nil, fmt.Errorf("kt: update %d: label or value too long", k)
		}
	}
	// The VRF outside the lock: it is most of the work.
	entries := make([]Entry, len(updates))
	hashVRF(l.vrf, updates, entries)
	slices.SortFunc(entries, func(a, b Entry) int { return bytes.Compare(a.Leaf.Index[:], b.Leaf.Index[:]) })
	for k := 1; k < len(entries); k++ {
		if entries[k].Leaf.Index == entries[k-1].Leaf.Index {
			return nil, errors.New("kt: two updates of one label in one epoch")
		}
	}
	for k := range entries {
		if _, err := io.ReadFull(rand, entries[k].Opening[:]); err != nil {
			return nil, fmt.Errorf("kt: commitment opening: %v", err)
		}
		e := &entries[k]
		e.Leaf.Commitment = commit(e.Label, e.Value, &e.Opening)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	u := &undoRecord{previous: l.checkpoint, lastTime: l.lastTime}
	for k := range entries {
		e := &entries[k]
		old, ok := l.prefix.Get(e.Leaf.Index)
		if ok {
			if old.Counter == ^uint32(0) {
				return nil, errors.New("kt: a label's counter is exhausted")
			}
			e.Leaf.Counter = old.Counter + 1
			u.old = append(u.old, old)
		} else {
			u.added = append(u.added, e.Leaf.Index)
		}
	}
	leaves := make([]Leaf, len(entries))
	for k := range entries {
		leaves[k] = entries[k].Leaf
		l.prefix.Set(leaves[k])
	}
	ts := max(now.UnixMilli(), l.lastTime)
	epoch := Epoch{Timestamp: ts, PrefixRoot: l.prefix.Root()}
	l.log.Append(epoch.Encode())
	cp, err := l.sign(&l.log, l.log.Size())
	if err != nil {
		l.undoLocked(u)
		return nil, err
	}
	l.checkpoint, l.lastTime, l.undo = cp, ts, u
	return &Batch{
		Changes:    EpochChanges{Epoch: epoch, Leaves: leaves},
		Entries:    entries,
		Checkpoint: cp.encode(),
	}, nil
}

// Apply appends an epoch another Log made, from its changes as stored:
// how a server that does not sequence follows the one that does. It checks
// the changes as an auditor does (ErrAuditFailed, changing nothing, when
// they break the log's rules or do not make the epoch's prefix root), and
// signs the log's new checkpoint (the same note the sequencer signed, its
// signature being deterministic). It returns how many leaves the epoch
// added. An applied epoch cannot be reverted.
func (l *Log) Apply(c *EpochChanges) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, added, err := replay(l.prefix, l.lastTime, l.log.Size(), c)
	if err != nil {
		return 0, err
	}
	l.log.Append(c.Epoch.Encode())
	cp, err := l.sign(&l.log, l.log.Size())
	if err != nil {
		l.log.truncate()
		unreplay(l.prefix, c, old)
		return 0, err
	}
	l.checkpoint, l.lastTime, l.undo = cp, c.Epoch.Timestamp, nil
	return added, nil
}

// hashVRF fills entries with the updates' labels, values and indexes.
func hashVRF(k *vrf.PrivateKey, updates []Update, entries []Entry) {
	parallel(len(updates), func(i int) {
		entries[i] = Entry{
			Label: clone(updates[i].Label),
			Leaf:  Leaf{Index: indexOf(k.Hash(vrfInput(updates[i].Label)))},
			Value: clone(updates[i].Value),
		}
	})
}

// Revert undoes the last Append, when its batch could not be stored. Only
// the last batch can be reverted, and once (ErrNotLast otherwise): store
// each batch before the next Append.
func (l *Log) Revert(b *Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.undo == nil || b == nil || !bytes.Equal(b.Checkpoint, l.checkpoint.encode()) {
		return ErrNotLast
	}
	l.undoLocked(l.undo)
	return nil
}

func (l *Log) undoLocked(u *undoRecord) {
	l.log.truncate()
	for _, i := range u.added {
		l.prefix.Delete(i)
	}
	for _, old := range u.old {
		l.prefix.Set(old)
	}
	l.prefix.Root()
	l.checkpoint, l.lastTime, l.undo = u.previous, u.lastTime, nil
	for k, c := range l.cosigned {
		if c.size > l.log.Size() {
			delete(l.cosigned, k)
		}
	}
}

// Prove answers a lookup of labels for a client that knows the log up to
// size known (0: nothing). entry returns a label's stored entry (nil when
// it has none); Prove calls it with the log's read lock held, so it must
// not call the Log. ErrEntryMismatch when the store is ahead of the log:
// its entry is not the tree's leaf, or it has an entry for a label the
// tree does not hold.
func (l *Log) Prove(labels [][]byte, known uint64, entry func(Index) (*Entry, error)) (*LookupProof, error) {
	if len(labels) == 0 || len(labels) > MaxLookupLabels {
		return nil, fmt.Errorf("kt: lookup of %d labels", len(labels))
	}
	p := &LookupProof{Entries: make([]EntryProof, len(labels))}
	indexes := make([]Index, len(labels))
	for _, label := range labels {
		if len(label) > MaxLabelSize {
			return nil, errors.New("kt: label too long")
		}
	}
	parallel(len(labels), func(k int) {
		var beta [vrf.OutputSize]byte
		beta, p.Entries[k].VRFProof = l.vrf.Prove(vrfInput(labels[k]))
		indexes[k] = indexOf(beta)
	})

	l.mu.RLock()
	defer l.mu.RUnlock()
	size := l.log.Size()
	if size == 0 {
		return nil, errors.New("kt: the log has no epoch yet")
	}
	if known > size {
		return nil, fmt.Errorf("%w: client knows size %d, log has %d", ErrInconsistent, known, size)
	}
	var err error
	if known > 0 {
		if p.Consistency, err = l.log.Consistency(known, size); err != nil {
			return nil, err
		}
	}
	if p.EpochInclusion, err = l.log.Inclusion(size-1, size); err != nil {
		return nil, err
	}
	p.Epoch = Epoch{Timestamp: l.lastTime, PrefixRoot: l.prefix.Root()}
	if p.Checkpoint, p.Audited, err = l.cosignedLocked(true); err != nil {
		return nil, err
	}
	for k := range labels {
		e := &p.Entries[k]
		e.Prefix = *l.prefix.Prove(indexes[k])
		t := e.Prefix.Terminal
		stored, err := entry(indexes[k])
		if err != nil {
			return nil, err
		}
		if t == nil || t.Index != indexes[k] {
			// Absent from the tree: so it must be from the store, or
			// the tree is behind it.
			if stored != nil {
				return nil, ErrEntryMismatch
			}
			continue
		}
		if stored == nil || stored.Leaf != *t || !bytes.Equal(stored.Label, labels[k]) ||
			commit(labels[k], stored.Value, &stored.Opening) != t.Commitment {
			return nil, ErrEntryMismatch
		}
		e.Opening = stored.Opening
		e.Value = clone(stored.Value)
	}
	return p, nil
}

// cosignedLocked returns the newest checkpoint with the cosignatures of it
// the log holds, and the older cosigned checkpoints with consistency
// proofs to it, in auditor-name order (at most MaxAudited of them; none,
// and no proof computed, unless withAudited).
func (l *Log) cosignedLocked(withAudited bool) ([]byte, []AuditedCheckpoint, error) {
	size := l.log.Size()
	keys := make([]note.Signature, 0, len(l.cosigned))
	for k := range l.cosigned {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b note.Signature) int {
		if a.Name != b.Name {
			return strings.Compare(a.Name, b.Name)
		}
		return cmp.Compare(a.Hash, b.Hash)
	})
	var top []note.Signature
	var audited []AuditedCheckpoint
	for _, k := range keys {
		c := l.cosigned[k]
		if c.size == size {
			top = append(top, c.sig)
			continue
		}
		if !withAudited || len(audited) == MaxAudited {
			continue
		}
		proof, err := l.log.Consistency(c.size, size)
		if err != nil {
			return nil, nil, err
		}
		audited = append(audited, AuditedCheckpoint{Checkpoint: c.logged.encode(c.sig), Consistency: proof})
	}
	return l.checkpoint.encode(top...), audited, nil
}

// Checkpoint returns the newest signed checkpoint, with the cosignatures
// of it the log holds (nil before the first epoch).
func (l *Log) Checkpoint() []byte {
	l.mu.RLock()
	defer l.mu.RUnlock()
	b, _, err := l.cosignedLocked(false)
	if err != nil {
		return l.checkpoint.encode()
	}
	return b
}

// Size returns the number of epochs.
func (l *Log) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.log.Size()
}

// AddCosignature records an auditor's cosignature of one of the log's
// checkpoints (a note holding the auditor's cosignature, verified against
// auditor, of a checkpoint of this log), to hand out with later lookups.
// It keeps the auditor's newest: a cosignature of a smaller checkpoint, or
// of the same one with an older time, changes nothing. ErrBadCheckpoint
// when the cosignature does not verify or the note is for another origin;
// ErrInconsistent when the checkpoint is not this log's.
func (l *Log) AddCosignature(cosigned []byte, auditor note.Verifier) error {
	if len(cosigned) > MaxCheckpointSize {
		return fmt.Errorf("%w: checkpoint too long", ErrMalformed)
	}
	n, err := note.Open(cosigned, note.VerifierList(auditor))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	s, ok := sigBy(n, auditor)
	if !ok {
		return fmt.Errorf("%w: no cosignature by %s", ErrBadCheckpoint, auditor.Name())
	}
	t, ok := cosignatureTime(s)
	if !ok {
		return fmt.Errorf("%w: not a cosignature/v1", ErrBadCheckpoint)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return err
	}
	if c.Origin != l.origin {
		return fmt.Errorf("%w: origin %q", ErrBadCheckpoint, c.Origin)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Size > l.log.Size() {
		return fmt.Errorf("%w: cosigned size %d beyond the log's %d", ErrInconsistent, c.Size, l.log.Size())
	}
	root, err := l.log.Root(c.Size)
	if err != nil {
		return err
	}
	if root != c.Root {
		return fmt.Errorf("%w: cosigned root at size %d is not the log's", ErrInconsistent, c.Size)
	}
	key := note.Signature{Name: s.Name, Hash: s.Hash}
	if old, ok := l.cosigned[key]; ok && (old.size > c.Size || old.size == c.Size && !t.After(old.time)) {
		return nil
	}
	logged, err := l.sign(&l.log, c.Size)
	if err != nil {
		return err
	}
	l.cosigned[key] = cosignedCheckpoint{size: c.Size, time: t, logged: logged, sig: s}
	return nil
}
