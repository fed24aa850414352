package kt

import (
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt/vrf"
)

// Result is what a verified lookup says about one label.
type Result struct {
	Index Index
	// Present: the label has a leaf. A deleted label has one, with an
	// empty Value.
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
	// Auditors are the cosigners the client trusts (made by
	// NewCosignatureVerifier); NeedCosignatures of them must have
	// cosigned a checkpoint the lookup's extends, at most MaxAuditLag
	// before now (and not more than MaxAuditLag after it).
	Auditors         []note.Verifier
	NeedCosignatures int
	MaxAuditLag      time.Duration
	// MaxEpochAge bounds how far the log's newest epoch (the lookup's
	// Epoch, by its timestamp) may be behind now, and ahead of it: the
	// draft's max_behind and max_ahead (section "Updating View": the
	// rightmost log entry's timestamp must be within them), one bound for
	// both here. With a server that makes an epoch at least every few
	// minutes, even an empty one, a bound of a few of its intervals keeps
	// the server from showing a client an old view of the log forever (a
	// frozen view: a prefix of the log others see, from before a key was
	// added for this client's account, or before a device was removed
	// from a contact's), which consistency alone does not catch. 0 checks
	// nothing.
	MaxEpochAge time.Duration
}

// Verify checks a lookup of labels against the head the client kept (nil:
// none yet) at time now, and returns the new head and one Result per label.
// Every failure is one of the package's sentinel errors:
//
//   - ErrMalformed: a checkpoint that does not parse, a label over
//     MaxLabelSize;
//   - ErrBadCheckpoint: a checkpoint (the newest or an audited one)
//     without a valid signature by LogKey, with a bad signature by a
//     trusted key, or of another origin;
//   - ErrInconsistent: a checkpoint smaller than the known head, of its
//     size but another root, or without a valid consistency proof from it;
//     an audited checkpoint the newest does not extend;
//   - ErrStale: the epoch's timestamp is more than MaxEpochAge before
//     now, or after it (when MaxEpochAge is set);
//   - ErrMissingCosignature: fewer than NeedCosignatures distinct trusted
//     auditors cosigned a checkpoint within MaxAuditLag of now;
//   - ErrInvalidProof: an empty log, the epoch not the checkpoint's last
//     leaf, a wrong number of entries, a VRF proof that does not verify
//     for the label, a prefix path that does not lead to the epoch's
//     prefix root, a commitment the opening and value do not open.
func (v *Verifier) Verify(known *Head, labels [][]byte, p *LookupProof, now time.Time) (*Head, []Result, error) {
	for _, l := range labels {
		if len(l) > MaxLabelSize {
			return nil, nil, fmt.Errorf("%w: label too long", ErrMalformed)
		}
	}
	if len(labels) == 0 || len(labels) != len(p.Entries) {
		return nil, nil, fmt.Errorf("%w: %d entries for %d labels", ErrInvalidProof, len(p.Entries), len(labels))
	}
	if v.LogKey == nil || v.VRFKey == nil {
		return nil, nil, fmt.Errorf("%w: verifier without keys", ErrBadCheckpoint)
	}

	// The newest checkpoint, and its consistency with the known head.
	top, cp, err := openCheckpoint(p.Checkpoint, v.Origin, v.LogKey, v.Auditors...)
	if err != nil {
		return nil, nil, err
	}
	if err := v.checkConsistency(known, cp, p.Consistency); err != nil {
		return nil, nil, err
	}

	// Auditors: cosignatures of the newest checkpoint itself, or of older
	// ones it extends.
	cosigned := make(map[note.Signature]bool) // by name and key hash only
	v.countCosignatures(top, now, cosigned)
	for k := range p.Audited {
		a := &p.Audited[k]
		n, c, err := openCheckpoint(a.Checkpoint, v.Origin, v.LogKey, v.Auditors...)
		if err != nil {
			return nil, nil, err
		}
		if c.Size > cp.Size {
			return nil, nil, fmt.Errorf("%w: audited checkpoint beyond the newest", ErrInconsistent)
		}
		if c.Size == cp.Size && len(a.Consistency) != 0 {
			return nil, nil, fmt.Errorf("%w: consistency proof between equal sizes", ErrInvalidProof)
		}
		if err := verifyConsistency(c.Size, cp.Size, a.Consistency, c.Root, cp.Root); err != nil {
			return nil, nil, fmt.Errorf("%w: audited checkpoint of size %d: %v", ErrInconsistent, c.Size, err)
		}
		v.countCosignatures(n, now, cosigned)
	}
	// The epoch: the checkpoint's last leaf.
	if cp.Size == 0 {
		return nil, nil, fmt.Errorf("%w: the log is empty", ErrInvalidProof)
	}
	if p.Epoch.Timestamp < 0 {
		return nil, nil, fmt.Errorf("%w: negative epoch timestamp", ErrInvalidProof)
	}
	if err := verifyInclusion(cp.Size-1, cp.Size, p.Epoch.Encode(), p.EpochInclusion, cp.Root); err != nil {
		return nil, nil, fmt.Errorf("%w: epoch not the log's last leaf: %v", ErrInvalidProof, err)
	}
	// Its age, once it is known to be the signed log's (and before the
	// cosignatures: a frozen log's are likely old too, and the age says
	// more).
	if err := v.checkAge(&p.Epoch, now); err != nil {
		return nil, nil, err
	}
	if len(cosigned) < v.NeedCosignatures {
		return nil, nil, fmt.Errorf("%w: %d recent of %d needed", ErrMissingCosignature, len(cosigned), v.NeedCosignatures)
	}

	// The labels.
	results := make([]Result, len(labels))
	for k, label := range labels {
		e := &p.Entries[k]
		beta, err := v.VRFKey.Verify(vrfInput(label), e.VRFProof[:])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: entry %d: VRF proof", ErrInvalidProof, k)
		}
		i := indexOf(beta)
		prefix := e.Prefix
		if e.Value != nil {
			// The label's own leaf: its index and commitment are implied.
			t := e.Prefix.Terminal
			if t == nil || len(e.Value) > MaxValueSize {
				return nil, nil, fmt.Errorf("%w: entry %d: a value without a leaf", ErrInvalidProof, k)
			}
			own := Leaf{Index: i, Counter: t.Counter, Commitment: commit(label, e.Value, &e.Opening)}
			if t.Index != (Index{}) && t.Index != own.Index || t.Commitment != (Hash{}) && t.Commitment != own.Commitment {
				return nil, nil, fmt.Errorf("%w: entry %d: commitment does not open", ErrInvalidProof, k)
			}
			prefix.Terminal = &own
		}
		root, leaf, err := prefix.evaluate(i)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: entry %d: %v", ErrInvalidProof, k, err)
		}
		if root != p.Epoch.PrefixRoot {
			return nil, nil, fmt.Errorf("%w: entry %d: prefix path to another root (a value that does not open its commitment, a forged path)", ErrInvalidProof, k)
		}
		results[k].Index = i
		if leaf == nil {
			if e.Opening != ([OpeningSize]byte{}) {
				return nil, nil, fmt.Errorf("%w: entry %d: an opening without a leaf", ErrInvalidProof, k)
			}
			continue
		}
		if e.Value == nil {
			return nil, nil, fmt.Errorf("%w: entry %d: leaf without its opening", ErrInvalidProof, k)
		}
		results[k].Present = true
		results[k].Counter = leaf.Counter
		results[k].Value = clone(e.Value)
	}
	return &Head{Size: cp.Size, Root: cp.Root}, results, nil
}

// checkAge checks that the epoch is within MaxEpochAge of now, either
// way (ErrStale).
func (v *Verifier) checkAge(e *Epoch, now time.Time) error {
	if v.MaxEpochAge <= 0 {
		return nil
	}
	t := time.UnixMilli(e.Timestamp)
	switch {
	case t.Before(now.Add(-v.MaxEpochAge)):
		return fmt.Errorf("%w: the newest epoch is %v old, more than %v", ErrStale, now.Sub(t).Truncate(time.Second), v.MaxEpochAge)
	case t.After(now.Add(v.MaxEpochAge)):
		return fmt.Errorf("%w: the newest epoch is %v ahead of this clock, more than %v", ErrStale, t.Sub(now).Truncate(time.Second), v.MaxEpochAge)
	}
	return nil
}

// checkConsistency checks that the checkpoint extends the known head.
func (v *Verifier) checkConsistency(known *Head, cp *Checkpoint, proof []Hash) error {
	if known == nil || known.Size == 0 {
		if len(proof) != 0 {
			return fmt.Errorf("%w: consistency proof from nothing", ErrInvalidProof)
		}
		return nil
	}
	switch {
	case cp.Size < known.Size:
		return fmt.Errorf("%w: log of size %d after one of %d", ErrInconsistent, cp.Size, known.Size)
	case cp.Size == known.Size:
		if cp.Root != known.Root {
			return fmt.Errorf("%w: another root at size %d", ErrInconsistent, cp.Size)
		}
		if len(proof) != 0 {
			return fmt.Errorf("%w: consistency proof between equal sizes", ErrInvalidProof)
		}
		return nil
	}
	if err := verifyConsistency(known.Size, cp.Size, proof, known.Root, cp.Root); err != nil {
		return fmt.Errorf("%w: from size %d to %d: %v", ErrInconsistent, known.Size, cp.Size, err)
	}
	return nil
}

// countCosignatures adds the trusted auditors whose cosignatures on n
// (verified by note.Open) are within MaxAuditLag of now.
func (v *Verifier) countCosignatures(n *note.Note, now time.Time, seen map[note.Signature]bool) {
	for _, a := range v.Auditors {
		if _, ok := a.(*cosignatureVerifier); !ok {
			continue
		}
		s, ok := sigBy(n, a)
		if !ok {
			continue
		}
		t, ok := cosignatureTime(s)
		if !ok || t.Before(now.Add(-v.MaxAuditLag)) || t.After(now.Add(v.MaxAuditLag)) {
			continue
		}
		seen[note.Signature{Name: s.Name, Hash: s.Hash}] = true
	}
}
