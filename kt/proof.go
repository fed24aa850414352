package kt

import (
	"encoding/binary"
	"fmt"

	"github.com/doorless/doorless/kt/vrf"
)

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
	// signature and any auditor cosignatures of that same checkpoint).
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
	// Opening and Value open the leaf's commitment when Prefix ends at
	// the label's own leaf. Value is nil exactly when it does not (the
	// label has no leaf; the Opening is then zero); a deleted label's
	// Value is empty but not nil.
	//
	// When Value is not nil, the terminal leaf's Index and Commitment
	// follow from the VRF proof and the opening, so the encoding leaves
	// them out and UnmarshalBinary leaves them zero; Verifier.Verify
	// derives them (and refuses ones that are set and differ).
	Opening [OpeningSize]byte
	Value   []byte
}

// lookupProofVersion is the first byte of an encoded LookupProof.
const lookupProofVersion = 1

// Terminal kinds of an encoded prefix path.
const (
	terminalNone  = 0 // the path ends at a missing node
	terminalOther = 1 // at another label's leaf
	terminalOwn   = 2 // at the label's own leaf, with the opening and value
)

// MarshalBinary encodes the proof (version 1):
//
//	u8 version = 1
//	checkpoint note (in binary, see notewire.go)
//	log proof: consistency
//	u8 count, audited checkpoints: note; log proof
//	epoch: u64 timestamp, prefix root
//	log proof: epoch inclusion
//	u8 count, entries:
//	    VRF proof (80 bytes)
//	    u16 path length n, bitmap of ceil(n/8) bytes (bit k, most
//	      significant first, set when sibling k is not all zeros; unused
//	      bits zero), the siblings that are not all zeros
//	    u8 terminal kind:
//	      0: none
//	      1: another label's leaf: index, u32 counter, commitment
//	      2: the label's leaf: u32 counter, opening (16 bytes),
//	         u32 length, value
//
// A log proof is a u8 count of hashes, each a u8 tag followed, for tag 0,
// by the hash; a tag t > 0 stands for the t-th distinct hash the proof's
// log proofs held before it (RFC 6962 proofs from nearby sizes share their
// large subtrees). A hash that one of the first 255 distinct hashes
// equals is always written as its reference.
//
// All integers are big-endian. It refuses a proof over the package's limits.
func (p *LookupProof) MarshalBinary() ([]byte, error) {
	var b []byte
	b = append(b, lookupProofVersion)
	b, origin, err := appendNoteWire(b, p.Checkpoint, "")
	if err != nil {
		return nil, err
	}
	var pool hashPool
	if b, err = pool.append(b, p.Consistency); err != nil {
		return nil, err
	}
	if len(p.Audited) > MaxAudited {
		return nil, fmt.Errorf("%w: too many audited checkpoints", ErrMalformed)
	}
	b = append(b, byte(len(p.Audited)))
	for k := range p.Audited {
		if b, _, err = appendNoteWire(b, p.Audited[k].Checkpoint, origin); err != nil {
			return nil, err
		}
		if b, err = pool.append(b, p.Audited[k].Consistency); err != nil {
			return nil, err
		}
	}
	if p.Epoch.Timestamp < 0 {
		return nil, fmt.Errorf("%w: negative timestamp", ErrMalformed)
	}
	b = p.Epoch.appendTo(b)
	if b, err = pool.append(b, p.EpochInclusion); err != nil {
		return nil, err
	}
	if len(p.Entries) > MaxLookupLabels {
		return nil, fmt.Errorf("%w: too many entries", ErrMalformed)
	}
	b = append(b, byte(len(p.Entries)))
	for k := range p.Entries {
		if b, err = p.Entries[k].appendTo(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// hashPool holds the distinct hashes of a proof's log proofs so far, for
// references (the first 255 of them).
type hashPool struct {
	hashes []Hash
}

func (p *hashPool) find(h *Hash) int {
	for k := range p.hashes {
		if p.hashes[k] == *h {
			return k
		}
	}
	return -1
}

func (p *hashPool) add(h *Hash) {
	if len(p.hashes) < 255 && p.find(h) < 0 {
		p.hashes = append(p.hashes, *h)
	}
}

func (p *hashPool) append(b []byte, hs []Hash) ([]byte, error) {
	if len(hs) > maxLogProof {
		return nil, fmt.Errorf("%w: log proof too long", ErrMalformed)
	}
	b = append(b, byte(len(hs)))
	for k := range hs {
		if i := p.find(&hs[k]); i >= 0 {
			b = append(b, byte(i+1))
			continue
		}
		b = append(b, 0)
		b = append(b, hs[k][:]...)
		p.add(&hs[k])
	}
	return b, nil
}

func (r *reader) logProof(p *hashPool) []Hash {
	n := int(r.u8())
	if n > maxLogProof {
		r.fail("log proof too long")
		return nil
	}
	if n == 0 {
		return nil
	}
	hs := make([]Hash, n)
	for k := range hs {
		switch t := int(r.u8()); {
		case t == 0:
			hs[k] = r.hash()
			if p.find(&hs[k]) >= 0 {
				r.fail("log proof hash written twice")
			}
			p.add(&hs[k])
		case t <= len(p.hashes):
			hs[k] = p.hashes[t-1]
		default:
			r.fail("log proof reference")
		}
	}
	return hs
}

func (e *EntryProof) appendTo(b []byte) ([]byte, error) {
	b = append(b, e.VRFProof[:]...)
	sib := e.Prefix.Siblings
	if len(sib) > maxPrefixDepth {
		return nil, fmt.Errorf("%w: prefix path too long", ErrMalformed)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sib)))
	bitmap := make([]byte, (len(sib)+7)/8)
	for k := range sib {
		if sib[k] != (Hash{}) {
			bitmap[k/8] |= 0x80 >> (k % 8)
		}
	}
	b = append(b, bitmap...)
	for k := range sib {
		if sib[k] != (Hash{}) {
			b = append(b, sib[k][:]...)
		}
	}
	switch {
	case e.Prefix.Terminal == nil:
		if e.Value != nil || e.Opening != ([OpeningSize]byte{}) {
			return nil, fmt.Errorf("%w: an opening without a leaf", ErrMalformed)
		}
		return append(b, terminalNone), nil
	case e.Value == nil:
		if e.Opening != ([OpeningSize]byte{}) {
			return nil, fmt.Errorf("%w: an opening without a value", ErrMalformed)
		}
		b = append(b, terminalOther)
		return appendLeaf(b, e.Prefix.Terminal), nil
	default:
		if len(e.Value) > MaxValueSize {
			return nil, fmt.Errorf("%w: value too long", ErrMalformed)
		}
		b = append(b, terminalOwn)
		b = binary.BigEndian.AppendUint32(b, e.Prefix.Terminal.Counter)
		b = append(b, e.Opening[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.Value)))
		return append(b, e.Value...), nil
	}
}

// UnmarshalBinary parses an encoded proof strictly (ErrMalformed): it
// accepts only what MarshalBinary writes.
func (p *LookupProof) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	if r.u8() != lookupProofVersion {
		return fmt.Errorf("%w: lookup proof version", ErrMalformed)
	}
	var q LookupProof
	var origin string
	q.Checkpoint, origin = r.noteWire("")
	var pool hashPool
	q.Consistency = r.logProof(&pool)
	n := int(r.u8())
	if n > MaxAudited {
		return fmt.Errorf("%w: too many audited checkpoints", ErrMalformed)
	}
	for ; n > 0 && r.err == nil; n-- {
		var a AuditedCheckpoint
		a.Checkpoint, _ = r.noteWire(origin)
		a.Consistency = r.logProof(&pool)
		q.Audited = append(q.Audited, a)
	}
	q.Epoch = r.epoch()
	q.EpochInclusion = r.logProof(&pool)
	n = int(r.u8())
	if n > MaxLookupLabels {
		return fmt.Errorf("%w: too many entries", ErrMalformed)
	}
	for ; n > 0 && r.err == nil; n-- {
		q.Entries = append(q.Entries, r.entry())
	}
	if err := r.done(); err != nil {
		return err
	}
	*p = q
	return nil
}

func (r *reader) entry() EntryProof {
	var e EntryProof
	copy(e.VRFProof[:], r.bytes(vrf.ProofSize))
	n := int(r.u16())
	if n > maxPrefixDepth {
		r.fail("prefix path too long")
		return e
	}
	bitmap := r.bytes((n + 7) / 8)
	if r.err != nil {
		return e
	}
	if n%8 != 0 && bitmap[len(bitmap)-1]&(0xff>>(n%8)) != 0 {
		r.fail("prefix path bitmap padding")
		return e
	}
	if n > 0 {
		e.Prefix.Siblings = make([]Hash, n)
	}
	for k := 0; k < n; k++ {
		if bitmap[k/8]&(0x80>>(k%8)) != 0 {
			e.Prefix.Siblings[k] = r.hash()
			if e.Prefix.Siblings[k] == (Hash{}) {
				r.fail("zero sibling written out")
			}
		}
	}
	switch r.u8() {
	case terminalNone:
	case terminalOther:
		l := r.leaf()
		e.Prefix.Terminal = &l
	case terminalOwn:
		e.Prefix.Terminal = &Leaf{Counter: r.u32()}
		copy(e.Opening[:], r.bytes(OpeningSize))
		v := r.u32()
		if v > MaxValueSize {
			r.fail("value too long")
			return e
		}
		e.Value = clone(r.bytes(int(v)))
	default:
		r.fail("prefix path terminal kind")
	}
	return e
}
