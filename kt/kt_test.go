package kt

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestLookupRoundTrip(t *testing.T) {
	f := newFixture(t, newKeys(t, 1))
	alice := string(UsernameLabel("alice"))
	aliceVal := (&AccountValue{AccountID: "a1", IdentityKey: bytes.Repeat([]byte{5}, 33), DeviceList: []byte("devices v1")}).Encode()
	f.set(alice, string(aliceVal), "dave", "d")
	f.set("bob", "b")
	v := f.verifier()

	head, res, err := v.Verify(nil, labelsOf(alice, "dave", "carol"), f.prove(0, alice, "dave", "carol"), f.now)
	if err != nil {
		t.Fatal(err)
	}
	if head.Size != 2 {
		t.Fatalf("head size %d, want 2", head.Size)
	}
	if !res[0].Present || !bytes.Equal(res[0].Value, aliceVal) || res[0].Counter != 0 {
		t.Fatalf("alice's result %+v", res[0])
	}
	if got, err := DecodeAccountValue(res[0].Value); err != nil || got.AccountID != "a1" || string(got.DeviceList) != "devices v1" {
		t.Fatalf("alice's value %+v, %v", got, err)
	}
	if !res[1].Present || string(res[1].Value) != "d" {
		t.Fatalf("dave's result %+v", res[1])
	}
	if res[2].Present || res[2].Value != nil {
		t.Fatalf("absent label reported present: %+v", res[2])
	}
	if res[0].Index != f.log.Index(UsernameLabel("alice")) {
		t.Fatal("result index is not the log's")
	}

	// Change alice's value twice and delete carol's never-set label: the
	// counter follows, and the client moves its head forward.
	f.set(string(alice), "v2")
	f.set(string(alice), "v3", "carol", "")
	head2, res, err := v.Verify(head, labelsOf(string(alice), "carol"), f.prove(head.Size, string(alice), "carol"), f.now)
	if err != nil {
		t.Fatal(err)
	}
	if head2.Size != 4 || res[0].Counter != 2 || string(res[0].Value) != "v3" {
		t.Fatalf("after two changes: head %d, %+v", head2.Size, res[0])
	}
	if !res[1].Present || len(res[1].Value) != 0 || res[1].Value == nil || res[1].Counter != 0 {
		t.Fatalf("deleted label: %+v", res[1])
	}
	// The same head again: no consistency proof needed.
	if _, _, err := v.Verify(head2, labelsOf("bob"), f.prove(head2.Size, "bob"), f.now); err != nil {
		t.Fatal(err)
	}
}

func TestLookupManyLabels(t *testing.T) {
	f := newFixture(t, newKeys(t, 2))
	var us []Update
	for k := 0; k < 300; k++ {
		us = append(us, Update{Label: []byte{byte(k), byte(k >> 8)}, Value: []byte{byte(k)}})
	}
	f.append(us[:100])
	f.append(us[100:])
	v := f.verifier()
	var head *Head
	for k := 0; k < 320; k += 7 {
		label := string([]byte{byte(k), byte(k >> 8)})
		known := uint64(0)
		if head != nil {
			known = head.Size
		}
		h, res, err := v.Verify(head, labelsOf(label), f.prove(known, label), f.now)
		if err != nil {
			t.Fatalf("label %d: %v", k, err)
		}
		if present := k < 300; res[0].Present != present {
			t.Fatalf("label %d: present %v", k, res[0].Present)
		}
		head = h
	}
}

// proofCase mutates a valid proof and expects an error.
type proofCase struct {
	name   string
	mutate func(p *LookupProof)
	want   error
}

func TestForgedProofs(t *testing.T) {
	f := newFixture(t, newKeys(t, 3))
	f.set("alice", "A", "bob", "B")
	f.set("carol", "C")
	known, _, err := f.verifier().Verify(nil, labelsOf("alice"), f.prove(0, "alice"), f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.set("alice", "A2")
	f.set("dave", "D")
	other := newFixture(t, newKeys(t, 4))
	other.set("alice", "A")

	cases := []proofCase{
		{"checkpoint signature", func(p *LookupProof) { p.Checkpoint[len(p.Checkpoint)-5] ^= 1 }, ErrBadCheckpoint},
		{"checkpoint body", func(p *LookupProof) { p.Checkpoint[len(testOrigin)+1] ^= 1 }, ErrBadCheckpoint},
		{"checkpoint of another log", func(p *LookupProof) { p.Checkpoint = other.log.Checkpoint() }, ErrBadCheckpoint},
		{"no checkpoint", func(p *LookupProof) { p.Checkpoint = nil }, ErrBadCheckpoint},
		{"consistency hash", func(p *LookupProof) { p.Consistency[0][0] ^= 1 }, ErrInconsistent},
		{"consistency dropped", func(p *LookupProof) { p.Consistency = nil }, ErrInconsistent},
		{"epoch root", func(p *LookupProof) { p.Epoch.PrefixRoot[0] ^= 1 }, ErrInvalidProof},
		{"epoch time", func(p *LookupProof) { p.Epoch.Timestamp++ }, ErrInvalidProof},
		{"epoch inclusion", func(p *LookupProof) { p.EpochInclusion[0][3] ^= 1 }, ErrInvalidProof},
		{"epoch inclusion dropped", func(p *LookupProof) { p.EpochInclusion = p.EpochInclusion[1:] }, ErrInvalidProof},
		{"VRF proof", func(p *LookupProof) { p.Entries[0].VRFProof[40] ^= 1 }, ErrInvalidProof},
		{"VRF proof of another label", func(p *LookupProof) { p.Entries[0].VRFProof = p.Entries[1].VRFProof }, ErrInvalidProof},
		{"prefix sibling", func(p *LookupProof) { p.Entries[0].Prefix.Siblings[1][0] ^= 1 }, ErrInvalidProof},
		{"prefix sibling dropped", func(p *LookupProof) {
			p.Entries[0].Prefix.Siblings = p.Entries[0].Prefix.Siblings[1:]
		}, ErrInvalidProof},
		{"counter", func(p *LookupProof) { p.Entries[0].Prefix.Terminal.Counter = 0 }, ErrInvalidProof},
		{"commitment", func(p *LookupProof) { p.Entries[0].Prefix.Terminal.Commitment[0] ^= 1 }, ErrInvalidProof},
		{"value", func(p *LookupProof) { p.Entries[0].Value = []byte("A3") }, ErrInvalidProof},
		{"opening", func(p *LookupProof) { p.Entries[0].Opening[0] ^= 1 }, ErrInvalidProof},
		{"value withheld", func(p *LookupProof) {
			p.Entries[0].Value = nil
			p.Entries[0].Opening = [OpeningSize]byte{}
		}, ErrInvalidProof},
		{"present shown absent", func(p *LookupProof) { p.Entries[0].Prefix.Terminal = nil }, ErrInvalidProof},
		{"absent shown with a value", func(p *LookupProof) { p.Entries[2].Value = []byte{} }, ErrInvalidProof},
		{"entries swapped", func(p *LookupProof) { p.Entries[0], p.Entries[1] = p.Entries[1], p.Entries[0] }, ErrInvalidProof},
		{"entry missing", func(p *LookupProof) { p.Entries = p.Entries[:2] }, ErrInvalidProof},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := f.prove(known.Size, "alice", "bob", "nobody")
			if _, _, err := f.verifier().Verify(known, labelsOf("alice", "bob", "nobody"), p, f.now); err != nil {
				t.Fatalf("unmutated: %v", err)
			}
			c.mutate(p)
			_, _, err := f.verifier().Verify(known, labelsOf("alice", "bob", "nobody"), p, f.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestTruncatedProofs(t *testing.T) {
	f := newFixture(t, newKeys(t, 5))
	f.set("alice", "A", "bob", "B")
	p := f.prove(0, "alice", "nobody")
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		var q LookupProof
		if err := q.UnmarshalBinary(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d: %v", n, len(b), err)
		}
	}
	var q LookupProof
	if err := q.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestReplayedProofs(t *testing.T) {
	f := newFixture(t, newKeys(t, 6))
	f.set("alice", "A1")
	old := f.prove(0, "alice")
	f.set("alice", "A2")
	v := f.verifier()
	head, res, err := v.Verify(nil, labelsOf("alice"), f.prove(0, "alice"), f.now)
	if err != nil || string(res[0].Value) != "A2" {
		t.Fatalf("%v %+v", err, res)
	}
	// The older proof to a client that saw the newer head: a rollback.
	if _, _, err := v.Verify(head, labelsOf("alice"), old, f.now); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("older proof: %v", err)
	}
	// The older epoch and entry under the newer checkpoint.
	p := f.prove(0, "alice")
	p.Epoch, p.EpochInclusion, p.Entries = old.Epoch, old.EpochInclusion, old.Entries
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("older epoch under newer checkpoint: %v", err)
	}
	// The older epoch proved included, but not as the last leaf.
	incl, err := f.log.log.Inclusion(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	p.EpochInclusion = incl
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("older epoch at its own index: %v", err)
	}
	// A proof for alice presented as bob's.
	if _, _, err := v.Verify(nil, labelsOf("bob"), f.prove(0, "alice"), f.now); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("another label's proof: %v", err)
	}
	// A known head of the same size with another root.
	forged := *head
	forged.Root[0] ^= 1
	if _, _, err := v.Verify(&forged, labelsOf("alice"), f.prove(head.Size, "alice"), f.now); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("same size, other root: %v", err)
	}
}

// TestFrozenView: a client refuses a log whose newest epoch is older than
// MaxEpochAge (a server keeping it on an old view, consistent with the
// newer one others see), or that far ahead of its clock; an empty epoch
// makes the log fresh again without changing any entry.
func TestFrozenView(t *testing.T) {
	f := newFixture(t, newKeys(t, 11))
	f.set("alice", "A")
	frozen := f.prove(0, "alice")
	made := f.now // the epoch's time
	v := f.verifier()
	v.MaxEpochAge = time.Hour
	for _, c := range []struct {
		now  time.Time
		want error
	}{
		{made, nil},
		{made.Add(time.Hour), nil}, // at the bound
		{made.Add(-time.Hour), nil},
		{made.Add(time.Hour + time.Millisecond), ErrStale},  // behind
		{made.Add(-time.Hour - time.Millisecond), ErrStale}, // ahead
		{made.Add(365 * 24 * time.Hour), ErrStale},          // frozen for a year
	} {
		head, res, err := v.Verify(nil, labelsOf("alice"), frozen, c.now)
		if !errors.Is(err, c.want) || c.want == nil && err != nil {
			t.Fatalf("at epoch %+v: %v, want %v", c.now.Sub(made), err, c.want)
		}
		if c.want != nil && (head != nil || res != nil) {
			t.Fatalf("a stale lookup returned a head or results")
		}
	}
	// Without a bound the frozen log passes (compatibility).
	v.MaxEpochAge = 0
	if _, _, err := v.Verify(nil, labelsOf("alice"), frozen, made.Add(365*24*time.Hour)); err != nil {
		t.Fatalf("no bound: %v", err)
	}

	// The age is that of the signed log's last leaf: a proof whose epoch
	// says another time does not verify at all.
	v.MaxEpochAge = time.Hour
	forged := f.prove(0, "alice")
	forged.Epoch.Timestamp = made.Add(-2 * time.Hour).UnixMilli()
	if _, _, err := v.Verify(nil, labelsOf("alice"), forged, made); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("an epoch with another timestamp: %v", err)
	}

	// An hour and a half later the server makes an empty epoch: same
	// prefix root, new timestamp; a client with the old head accepts it,
	// and alice's entry is as it was.
	head, _, err := v.Verify(nil, labelsOf("alice"), frozen, made)
	if err != nil {
		t.Fatal(err)
	}
	f.now = made.Add(90*time.Minute - time.Second)
	b := f.append(nil)
	if len(b.Changes.Leaves) != 0 || b.Changes.Epoch.PrefixRoot != frozen.Epoch.PrefixRoot {
		t.Fatalf("an empty epoch changed the prefix tree: %+v", b.Changes)
	}
	fresh := f.prove(head.Size, "alice")
	if _, _, err := v.Verify(head, labelsOf("alice"), frozen, f.now); !errors.Is(err, ErrStale) {
		t.Fatalf("the frozen proof 90 minutes on: %v", err)
	}
	head2, res, err := v.Verify(head, labelsOf("alice"), fresh, f.now)
	if err != nil {
		t.Fatalf("after an empty epoch: %v", err)
	}
	if head2.Size != head.Size+1 || !res[0].Present || res[0].Counter != 0 || string(res[0].Value) != "A" {
		t.Fatalf("after an empty epoch: head %d, %+v", head2.Size, res[0])
	}
}

func TestSplitView(t *testing.T) {
	k := newKeys(t, 7)
	a, b := newFixture(t, k), newFixture(t, k)
	a.set("alice", "A")
	b.set("alice", "A")
	a.set("alice", "A2") // what alice sees
	b.set("alice", "ghost")
	v := a.verifier()
	headA, _, err := v.Verify(nil, labelsOf("alice"), a.prove(0, "alice"), a.now)
	if err != nil {
		t.Fatal(err)
	}
	// A client with branch A's head rejects branch B, now and later.
	if _, _, err := v.Verify(headA, labelsOf("alice"), b.prove(headA.Size, "alice"), b.now); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("same size: %v", err)
	}
	b.set("bob", "B")
	if _, _, err := v.Verify(headA, labelsOf("alice"), b.prove(headA.Size, "alice"), b.now); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("larger size: %v", err)
	}

	// An auditor following branch A: its cosignature does not validate B.
	auditor := NewAuditor(testOrigin, k.verifier)
	a.audit(auditor)
	cs, cv := newAuditorKey(t, "auditor.example/1", 1)
	cosigned, err := auditor.Cosign(a.log.Checkpoint(), cs, a.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.log.AddCosignature(cosigned, cv); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("branch A's cosignature into B: %v", err)
	}
	if _, err := auditor.Cosign(b.log.Checkpoint(), cs, b.now); !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("cosigning B: %v", err)
	}
	strict := a.verifier()
	strict.Auditors, strict.NeedCosignatures = append(strict.Auditors, cv), 1
	p := b.prove(0, "alice")
	if _, _, err := strict.Verify(nil, labelsOf("alice"), p, b.now); !errors.Is(err, ErrMissingCosignature) {
		t.Fatalf("B without cosignatures: %v", err)
	}
	// Splice A's cosigned checkpoint into B's proof: B does not extend it.
	p.Audited = []AuditedCheckpoint{{Checkpoint: cosigned, Consistency: p.EpochInclusion}}
	if _, _, err := strict.Verify(nil, labelsOf("alice"), p, b.now); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("B with A's cosigned checkpoint: %v", err)
	}
	// A with the cosignature verifies.
	if err := a.log.AddCosignature(cosigned, cv); err != nil {
		t.Fatal(err)
	}
	if _, _, err := strict.Verify(nil, labelsOf("alice"), a.prove(0, "alice"), a.now); err != nil {
		t.Fatalf("branch A cosigned: %v", err)
	}
}

func TestCosignatures(t *testing.T) {
	k := newKeys(t, 8)
	f := newFixture(t, k)
	f.set("alice", "A")
	a1, a2 := NewAuditor(testOrigin, k.verifier), NewAuditor(testOrigin, k.verifier)
	s1, v1 := newAuditorKey(t, "auditor.example/1", 1)
	s2, v2 := newAuditorKey(t, "auditor.example/2", 2)
	_, v3 := newAuditorKey(t, "auditor.example/3", 3)
	f.audit(a1)
	c1, err := a1.Cosign(f.log.Checkpoint(), s1, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.log.AddCosignature(c1, v1); err != nil {
		t.Fatal(err)
	}
	// Auditor 2 is behind by one epoch, and cosigned an hour ago.
	f.set("bob", "B")
	f.audit(a2)
	f.set("carol", "C")
	c2, err := a2.Cosign(f.batches[1].Checkpoint, s2, f.now.Add(-30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.log.AddCosignature(c2, v2); err != nil {
		t.Fatal(err)
	}
	// A cosignature by an unknown key, and one for another checkpoint.
	if err := f.log.AddCosignature(c2, v1); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("cosignature by the wrong key: %v", err)
	}
	p := f.prove(0, "alice")
	if len(p.Audited) != 2 {
		t.Fatalf("%d audited checkpoints, want 2", len(p.Audited))
	}
	v := f.verifier()
	v.Auditors = append(v.Auditors, v1, v2, v3)
	for need, want := range []error{nil, nil, nil, ErrMissingCosignature} {
		v.NeedCosignatures = need
		if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); !errors.Is(err, want) {
			t.Fatalf("need %d: %v, want %v", need, err, want)
		}
	}
	// Auditor 1's cosignature is 2 s old, auditor 2's 30 min: with a
	// 10-minute lag only one counts.
	v.NeedCosignatures, v.MaxAuditLag = 2, 10*time.Minute
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); !errors.Is(err, ErrMissingCosignature) {
		t.Fatalf("stale cosignature counted: %v", err)
	}
	v.NeedCosignatures = 1
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); err != nil {
		t.Fatal(err)
	}
	// From the future (beyond the lag) counts as little.
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now.Add(-time.Hour)); !errors.Is(err, ErrMissingCosignature) {
		t.Fatalf("future cosignature counted: %v", err)
	}
	// One auditor twice counts once.
	v.MaxAuditLag, v.NeedCosignatures = time.Hour, 2
	p.Audited[1] = p.Audited[0]
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); !errors.Is(err, ErrMissingCosignature) {
		t.Fatalf("one auditor counted twice: %v", err)
	}
	// A forged cosignature fails the checkpoint.
	p = f.prove(0, "alice")
	p.Audited[0].Checkpoint[len(p.Audited[0].Checkpoint)-3] ^= 1
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("forged cosignature: %v", err)
	}

	// Auditor 1 catches up: its cosignature rides on the newest checkpoint.
	f.audit(a1)
	c1, err = a1.Cosign(f.log.Checkpoint(), s1, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.log.AddCosignature(c1, v1); err != nil {
		t.Fatal(err)
	}
	p = f.prove(0, "alice")
	if len(p.Audited) != 1 {
		t.Fatalf("%d audited checkpoints, want 1", len(p.Audited))
	}
	if _, _, err := v.Verify(nil, labelsOf("alice"), p, f.now); err != nil {
		t.Fatal(err)
	}
	// An older cosignature does not replace a newer one.
	if err := f.log.AddCosignature(c2, v2); err != nil {
		t.Fatal(err)
	}
	if got := f.prove(0, "alice"); len(got.Audited) != 1 {
		t.Fatalf("older cosignature replaced a newer: %d", len(got.Audited))
	}
}

func TestAuditor(t *testing.T) {
	k := newKeys(t, 9)
	f := newFixture(t, k)
	f.set("alice", "A", "bob", "B")
	f.set("alice", "A2")
	a := NewAuditor(testOrigin, k.verifier)
	f.audit(a)
	aliceIdx, bobIdx := f.log.Index([]byte("alice")), f.log.Index([]byte("bob"))
	alice, _ := a.prefix.Get(aliceIdx)
	bob, _ := a.prefix.Get(bobIdx)

	// rooted returns changes whose root is what the server's tree would
	// have after them (so only the auditor's rules can catch them).
	rooted := func(leaves []Leaf, remove ...Index) *EpochChanges {
		t := newPrefixTree()
		for _, e := range f.store {
			t.Set(e.Leaf)
		}
		for _, i := range remove {
			t.Delete(i)
		}
		for _, l := range leaves {
			t.Set(l)
		}
		return &EpochChanges{Epoch: Epoch{Timestamp: f.now.UnixMilli() + 1000, PrefixRoot: t.Root()}, Leaves: leaves}
	}
	newLeaf := Leaf{Index: idx(1), Counter: 0}
	cases := []struct {
		name string
		c    *EpochChanges
	}{
		{"removed leaf", rooted([]Leaf{newLeaf}, bobIdx)},
		{"counter skip", rooted([]Leaf{{Index: aliceIdx, Counter: alice.Counter + 2}})},
		{"counter rewind", rooted([]Leaf{{Index: aliceIdx, Counter: 0}})},
		{"counter kept", rooted([]Leaf{{Index: aliceIdx, Counter: alice.Counter, Commitment: Hash{1}}})},
		{"new leaf not at 0", rooted([]Leaf{{Index: idx(2), Counter: 1}})},
		{"wrong root", &EpochChanges{Epoch: Epoch{Timestamp: f.now.UnixMilli() + 1000}, Leaves: []Leaf{newLeaf}}},
		{"index twice", rooted([]Leaf{{Index: bobIdx, Counter: bob.Counter + 1}, {Index: bobIdx, Counter: bob.Counter + 2}})},
		{"time back", func() *EpochChanges { c := rooted([]Leaf{newLeaf}); c.Epoch.Timestamp = 0; return c }()},
	}
	head := a.Head()
	for _, c := range cases {
		if err := a.Apply(c.c); !errors.Is(err, ErrAuditFailed) {
			t.Fatalf("%s: %v", c.name, err)
		}
		if a.Head() != head {
			t.Fatalf("%s: a failed epoch changed the auditor's head", c.name)
		}
	}
	// The auditor's tree is as before: the next honest epoch applies.
	f.set("carol", "C", "alice", "A3")
	f.audit(a)
	if _, err := a.Cosign(f.log.Checkpoint(), mustCosigner(t), f.now); err != nil {
		t.Fatal(err)
	}
	// A checkpoint it has not replayed, or from another log.
	f.set("dave", "D")
	if _, err := a.Cosign(f.log.Checkpoint(), mustCosigner(t), f.now); !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("unreplayed checkpoint: %v", err)
	}
	other := newFixture(t, newKeys(t, 10))
	other.set("x", "y")
	if _, err := a.Cosign(other.log.Checkpoint(), mustCosigner(t), f.now); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("another log's checkpoint: %v", err)
	}
}

func mustCosigner(t *testing.T) interface {
	Name() string
	KeyHash() uint32
	Sign([]byte) ([]byte, error)
} {
	s, _ := newAuditorKey(t, "auditor.example/x", 77)
	return s
}

func TestRevertAndRestore(t *testing.T) {
	f := newFixture(t, newKeys(t, 11))
	f.set("alice", "A", "bob", "B")
	b1 := f.set("alice", "A2", "carol", "C")
	root := f.log.prefix.Root()
	b2 := f.set("dave", "D", "alice", "A3")
	if err := f.log.Revert(b1); !errors.Is(err, ErrNotLast) {
		t.Fatalf("revert of an older batch: %v", err)
	}
	if err := f.log.Revert(b2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.log.Checkpoint(), b1.Checkpoint) || f.log.prefix.Root() != root {
		t.Fatal("revert did not restore the log")
	}
	// One level only: b1 cannot be reverted now.
	for _, b := range []*Batch{b2, b1} {
		if err := f.log.Revert(b); !errors.Is(err, ErrNotLast) {
			t.Fatalf("second revert: %v", err)
		}
	}
	f.batches = f.batches[:2]
	delete(f.store, f.log.Index([]byte("dave")))
	for _, e := range b1.Entries {
		f.store[e.Leaf.Index] = &e
	}
	if f.log.Size() != 2 {
		t.Fatalf("size %d after revert", f.log.Size())
	}
	_, res, err := f.verifier().Verify(nil, labelsOf("alice", "dave"), f.prove(0, "alice", "dave"), f.now)
	if err != nil || string(res[0].Value) != "A2" || res[1].Present {
		t.Fatalf("after revert: %v %+v", err, res)
	}
	f.set("erin", "E")

	// Restore a second log from the store: same checkpoint, same answers.
	r, err := NewLog(LogConfig{Origin: testOrigin, Signer: f.keys.signer, VRF: f.keys.vrf})
	if err != nil {
		t.Fatal(err)
	}
	var epochs []Epoch
	for _, b := range f.batches {
		epochs = append(epochs, b.Changes.Epoch)
	}
	leaves := func(yield func(Leaf) bool) {
		for _, e := range f.store {
			if !yield(e.Leaf) {
				return
			}
		}
	}
	twice := func(yield func(Leaf) bool) {
		for _, e := range f.store {
			for range 2 {
				if !yield(e.Leaf) {
					return
				}
			}
		}
	}
	if err := r.Restore(twice, epochs); err == nil {
		t.Fatal("restore with a leaf twice succeeded")
	}
	if err := r.Restore(leaves, epochs[:1]); err == nil {
		t.Fatal("restore with a stale epoch list succeeded")
	}
	if err := r.Restore(leaves, epochs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Checkpoint(), f.log.Checkpoint()) {
		t.Fatal("restored log signs another checkpoint")
	}
	if err := r.Restore(leaves, epochs); err == nil {
		t.Fatal("restore into a full log succeeded")
	}
	p, err := r.Prove(labelsOf("alice", "erin"), 1, f.entry)
	if err != nil {
		t.Fatal(err)
	}
	h1, _, err := f.verifier().Verify(nil, labelsOf("alice"), f.prove(0, "alice"), f.now)
	if err != nil {
		t.Fatal(err)
	}
	h1.Size, h1.Root = 1, mustRoot(t, &r.log, 1)
	if _, res, err := f.verifier().Verify(h1, labelsOf("alice", "erin"), p, f.now); err != nil || string(res[1].Value) != "E" {
		t.Fatalf("restored proof: %v %+v", err, res)
	}
}

func mustRoot(t testing.TB, l *logTree, size uint64) Hash {
	h, err := l.Root(size)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestAppendRefuses(t *testing.T) {
	f := newFixture(t, newKeys(t, 12))
	cases := map[string][]Update{
		"label twice":     {{Label: []byte("a"), Value: []byte("1")}, {Label: []byte("a"), Value: []byte("2")}},
		"long label":      {{Label: make([]byte, MaxLabelSize+1)}},
		"long value":      {{Label: []byte("a"), Value: make([]byte, MaxValueSize+1)}},
		"too many labels": make([]Update, MaxUpdates+1),
	}
	for name, us := range cases {
		if _, err := f.log.Append(us, t0, f.rand); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	if f.log.Size() != 0 {
		t.Fatal("a refused append changed the log")
	}
	if _, err := f.log.Prove(labelsOf("a"), 0, f.entry); err == nil {
		t.Fatal("proof from an empty log")
	}
	// An empty epoch is a heartbeat; time does not go back.
	f.set("a", "1")
	b, err := f.log.Append(nil, t0.Add(-time.Hour), f.rand)
	if err != nil {
		t.Fatal(err)
	}
	if b.Changes.Epoch.Timestamp != f.batches[0].Changes.Epoch.Timestamp {
		t.Fatalf("epoch went back in time: %d", b.Changes.Epoch.Timestamp)
	}
	if _, err := f.log.Prove(labelsOf("a"), 5, f.entry); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("client ahead of the log: %v", err)
	}
	// A store that lost an entry is an error, not a wrong proof.
	delete(f.store, f.log.Index([]byte("a")))
	if _, err := f.log.Prove(labelsOf("a"), 0, f.entry); err == nil {
		t.Fatal("proof without the stored entry")
	}
}

// TestConcurrentLog runs lookups, checkpoints and cosignatures while
// epochs are appended (run with -race).
func TestConcurrentLog(t *testing.T) {
	k := newKeys(t, 13)
	f := newFixture(t, k)
	f.set("alice", "A")
	stored := make(chan map[Index]Entry, 1)
	snapshot := func() map[Index]Entry {
		m := make(map[Index]Entry, len(f.store))
		for i, e := range f.store {
			m[i] = *e
		}
		return m
	}
	stored <- snapshot()
	done := make(chan struct{})
	errs := make(chan error, 4)
	for w := 0; w < 2; w++ {
		go func() {
			v := f.verifier()
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				m := <-stored
				stored <- m
				// The store may be older than the log: Prove then fails
				// cleanly, or it is current and the proof verifies.
				p, err := f.log.Prove(labelsOf("alice", "bob"), 0, func(i Index) (*Entry, error) {
					e, ok := m[i]
					if !ok {
						return nil, nil
					}
					return &e, nil
				})
				if err != nil {
					continue
				}
				if _, _, err := v.Verify(nil, labelsOf("alice", "bob"), p, t0.Add(time.Hour)); err != nil {
					errs <- err
					return
				}
				_ = f.log.Checkpoint()
			}
		}()
	}
	for n := 0; n < 30; n++ {
		<-stored
		f.set("alice", string(rune('a'+n)), "bob", string(rune('A'+n)))
		stored <- snapshot()
	}
	close(done)
	for w := 0; w < 2; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestProofEncodingRefusesOddNotes(t *testing.T) {
	f := newFixture(t, newKeys(t, 14))
	f.set("alice", "A")
	p := f.prove(0, "alice")
	good := p.Checkpoint
	split := bytes.Index(good, []byte("\n\n"))
	for name, n := range map[string][]byte{
		"extension line": append(append(append([]byte{}, good[:split+1]...), "ext\n"...), good[split+1:]...),
		"no signature":   good[:split+2],
		"not a note":     []byte("hello"),
		"bad base64":     append(append([]byte{}, good[:len(good)-2]...), "!\n"...),
		"nothing":        nil,
	} {
		q := *p
		q.Checkpoint = n
		if _, err := q.MarshalBinary(); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestApply: a second Log with the same keys follows the first by applying
// its stored changes, ends with the same checkpoint and proves what the
// first stored; changes that break the rules are refused and change
// nothing.
func TestApply(t *testing.T) {
	k := newKeys(t, 21)
	f := newFixture(t, k)
	follower, err := NewLog(LogConfig{Origin: testOrigin, Signer: k.signer, VRF: k.vrf})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(b *Batch) (int, error) {
		t.Helper()
		raw, err := b.Changes.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var c EpochChanges
		if err := c.UnmarshalBinary(raw); err != nil {
			t.Fatal(err)
		}
		return follower.Apply(&c)
	}
	for _, b := range []*Batch{f.set("alice", "A", "bob", "B"), f.set("alice", "A2", "carol", "C"), f.append(nil)} {
		added, err := apply(b)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, l := range b.Changes.Leaves {
			if l.Counter == 0 {
				want++
			}
		}
		if added != want {
			t.Errorf("Apply added %d leaves, want %d", added, want)
		}
		if !bytes.Equal(follower.Checkpoint(), b.Checkpoint) {
			t.Fatalf("follower's checkpoint\n%s\nwant the sequencer's\n%s", follower.Checkpoint(), b.Checkpoint)
		}
	}
	if _, err := follower.Prove(labelsOf("alice"), 0, f.entry); err != nil {
		t.Fatalf("the follower proves from the sequencer's entries: %v", err)
	}

	before := follower.Checkpoint()
	next := f.set("alice", "A3", "dave", "D")
	for name, damage := range map[string]func(c *EpochChanges){
		"root":    func(c *EpochChanges) { c.Epoch.PrefixRoot[0] ^= 1 },
		"counter": func(c *EpochChanges) { c.Leaves[0].Counter += 5 },
		"time":    func(c *EpochChanges) { c.Epoch.Timestamp = 1 },
		"leaf":    func(c *EpochChanges) { c.Leaves = c.Leaves[:1] },
	} {
		c := next.Changes
		c.Leaves = slices.Clone(c.Leaves)
		damage(&c)
		if _, err := follower.Apply(&c); !errors.Is(err, ErrAuditFailed) {
			t.Errorf("Apply(damaged %s) = %v, want ErrAuditFailed", name, err)
		}
		if !bytes.Equal(follower.Checkpoint(), before) || follower.Size() != 3 {
			t.Fatalf("a refused Apply (%s) changed the log", name)
		}
	}
	// The follower is behind the store: a lookup of an entry the next
	// epoch changed says so.
	if _, err := follower.Prove(labelsOf("alice"), 0, f.entry); !errors.Is(err, ErrEntryMismatch) {
		t.Fatalf("Prove with the store ahead = %v, want ErrEntryMismatch", err)
	}
	// Nor may it prove absent a label the next epoch added.
	if _, err := follower.Prove(labelsOf("dave"), 0, f.entry); !errors.Is(err, ErrEntryMismatch) {
		t.Fatalf("Prove of a label new in the store = %v, want ErrEntryMismatch", err)
	}
	if _, err := apply(next); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(follower.Checkpoint(), next.Checkpoint) {
		t.Fatal("the follower's checkpoint after the refused ones is not the sequencer's")
	}
}
