package kt

import (
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Auditor follows the log epoch by epoch and cosigns what it checked: it
// keeps its own copy of the prefix tree (indexes, counters and commitments
// only: it learns no label or value) and of the log tree. Not safe for
// concurrent use.
type Auditor struct {
	origin   string
	logKey   note.Verifier
	prefix   *prefixTree
	log      logTree
	lastTime int64
}

// NewAuditor returns an auditor that has seen nothing of the log.
func NewAuditor(origin string, logKey note.Verifier) *Auditor {
	return &Auditor{origin: origin, logKey: logKey, prefix: newPrefixTree()}
}

// Apply replays one epoch: a new leaf must have counter 0, a changed leaf
// its old counter plus one, no index twice, the timestamp must not go
// back, and the result must have the epoch's prefix root (ErrAuditFailed
// otherwise). A failed epoch changes nothing.
func (a *Auditor) Apply(c *EpochChanges) error {
	if _, _, err := replay(a.prefix, a.lastTime, a.log.Size(), c); err != nil {
		return err
	}
	a.log.Append(c.Epoch.Encode())
	a.lastTime = c.Epoch.Timestamp
	return nil
}

// replay applies epoch number n's changes to t, whose last epoch's
// timestamp is lastTime, and returns how many leaves it added: a new leaf
// must have counter 0, a changed leaf its old counter plus one, no index
// twice, the timestamp must not go back, and the result must have the
// epoch's prefix root (ErrAuditFailed otherwise, and t is left as it was).
// old holds the leaves the changes replaced (nil for those they added),
// for unreplay.
func replay(t *prefixTree, lastTime int64, n uint64, c *EpochChanges) (old []*Leaf, added int, err error) {
	if c.Epoch.Timestamp < lastTime {
		return nil, 0, fmt.Errorf("%w: epoch %d goes back in time", ErrAuditFailed, n)
	}
	if len(c.Leaves) > MaxUpdates {
		return nil, 0, fmt.Errorf("%w: epoch %d: too many leaves", ErrAuditFailed, n)
	}
	old = make([]*Leaf, len(c.Leaves))
	for k := range c.Leaves {
		l := &c.Leaves[k]
		if k > 0 && !indexLess(&c.Leaves[k-1].Index, &l.Index) {
			return nil, 0, fmt.Errorf("%w: epoch %d: leaves out of order or twice", ErrAuditFailed, n)
		}
		prev, ok := t.Get(l.Index)
		switch {
		case !ok && l.Counter != 0:
			return nil, 0, fmt.Errorf("%w: epoch %d: a new leaf with counter %d", ErrAuditFailed, n, l.Counter)
		case ok && (prev.Counter == ^uint32(0) || l.Counter != prev.Counter+1):
			return nil, 0, fmt.Errorf("%w: epoch %d: counter %d after %d", ErrAuditFailed, n, l.Counter, prev.Counter)
		case ok:
			old[k] = &prev
		default:
			added++
		}
	}
	for k := range c.Leaves {
		t.Set(c.Leaves[k])
	}
	if t.Root() != c.Epoch.PrefixRoot {
		unreplay(t, c, old)
		return nil, 0, fmt.Errorf("%w: epoch %d: prefix root does not match the changes", ErrAuditFailed, n)
	}
	return old, added, nil
}

// unreplay undoes replay's changes to t.
func unreplay(t *prefixTree, c *EpochChanges, old []*Leaf) {
	for k := range c.Leaves {
		if old[k] != nil {
			t.Set(*old[k])
		} else {
			t.Delete(c.Leaves[k].Index)
		}
	}
	t.Root()
}

// Head returns the log as the auditor has replayed it.
func (a *Auditor) Head() Head {
	root, _ := a.log.Root(a.log.Size())
	return Head{Size: a.log.Size(), Root: root}
}

// Cosign checks that the signed checkpoint is the log's (ErrBadCheckpoint)
// and describes exactly the auditor's head (ErrAuditFailed: another size,
// or at the same size another root, a fork), and returns it with the
// auditor's cosignature (C2SP cosignature/v1, timestamped now) added. A
// cosigner from NewCosigner signs with time now; another signer signs as
// it does.
func (a *Auditor) Cosign(checkpoint []byte, signer note.Signer, now time.Time) ([]byte, error) {
	n, c, err := openCheckpoint(checkpoint, a.origin, a.logKey)
	if err != nil {
		return nil, err
	}
	h := a.Head()
	if c.Size != h.Size {
		return nil, fmt.Errorf("%w: checkpoint of size %d, replayed %d", ErrAuditFailed, c.Size, h.Size)
	}
	if c.Root != h.Root {
		return nil, fmt.Errorf("%w: checkpoint root at size %d is not the replayed one", ErrAuditFailed, c.Size)
	}
	if cs, ok := signer.(*cosigner); ok {
		signer = &timedCosigner{cs, now}
	}
	// Keep the log's signature only: other lines are not the auditor's to
	// vouch for, and would make the note longer.
	logSig, _ := sigBy(n, a.logKey)
	b, err := note.Sign(&note.Note{Text: n.Text, Sigs: []note.Signature{logSig}}, signer)
	if err != nil {
		return nil, fmt.Errorf("kt: cosign: %v", err)
	}
	return b, nil
}

// timedCosigner signs with a fixed time.
type timedCosigner struct {
	*cosigner
	now time.Time
}

func (s *timedCosigner) Sign(msg []byte) ([]byte, error) { return s.signAt(msg, s.now) }
