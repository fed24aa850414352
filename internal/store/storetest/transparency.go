package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/kt"
)

// The store does not interpret the log's encodings: fake bytes do, and
// fake indexes (a hash of a made-up label) stand for VRF outputs.

// fakeIndex is a stand-in for a label's VRF index.
func fakeIndex(label string) kt.Index { return kt.Index(sha256.Sum256([]byte(label))) }

// fakeEntry is an entry for label with a counter and value.
func fakeEntry(label string, counter uint32, value []byte) kt.Entry {
	e := kt.Entry{Leaf: kt.Leaf{Index: fakeIndex(label), Counter: counter}, Value: value}
	e.Leaf.Commitment = kt.Hash(sha256.Sum256(fmt.Appendf(nil, "commit %s %d %x", label, counter, value)))
	copy(e.Opening[:], fmt.Sprintf("open-%d-%s", counter, label))
	return e
}

// fakeEpoch is epoch n with made-up contents.
func fakeEpoch(n uint64) *store.Epoch {
	e := &store.Epoch{Number: n, Timestamp: t0.UnixMilli() + int64(n)*1000,
		Changes: fmt.Appendf(nil, "changes of epoch %d", n), Checkpoint: fmt.Appendf(nil, "checkpoint %d\n", n)}
	e.PrefixRoot = kt.Hash(sha256.Sum256(fmt.Appendf(nil, "root %d", n)))
	return e
}

// pending returns every pending update.
func pending(t *testing.T, s store.Store) []store.PendingUpdate {
	t.Helper()
	us, err := s.PendingUpdates(t.Context(), 1<<20)
	must(t, "PendingUpdates", err)
	return us
}

// seqs returns the updates' Seqs.
func seqs(us []store.PendingUpdate) []int64 {
	var out []int64
	for _, u := range us {
		out = append(out, u.Seq)
	}
	return out
}

// publish appends the next epoch with entries, publishing every pending
// update, as the server's sequencer does, and returns the epoch.
func publish(t *testing.T, s store.Store, entries ...kt.Entry) *store.Epoch {
	t.Helper()
	n, err := s.EpochCount(t.Context())
	must(t, "EpochCount", err)
	e := fakeEpoch(n)
	must(t, "AppendEpoch", s.AppendEpoch(t.Context(), e, entries, seqs(pending(t, s))))
	return e
}

// sameUpdate reports whether two pending updates are equal, Seq aside.
func sameUpdate(a, b store.PendingUpdate) bool {
	return a.Username == b.Username && a.AccountID == b.AccountID &&
		bytes.Equal(a.IdentityKey, b.IdentityKey) && bytes.Equal(a.DeviceList, b.DeviceList)
}

// sameUpdates reports whether two lists of pending updates are equal,
// Seqs included.
func sameUpdates(a, b []store.PendingUpdate) bool {
	return slices.EqualFunc(a, b, func(x, y store.PendingUpdate) bool { return x.Seq == y.Seq && sameUpdate(x, y) })
}

// snapshot is the pending update of an account whose username's entry
// holds its identity key and the device list.
func snapshot(a *store.Account, list *store.DeviceList) store.PendingUpdate {
	return store.PendingUpdate{Username: a.Username, AccountID: a.ID, IdentityKey: a.IdentityKey, DeviceList: list.Signed}
}

// deletion is the pending update of a deleted account's username.
func deletion(username string) store.PendingUpdate { return store.PendingUpdate{Username: username} }

// wantPending checks the pending updates (Seq aside) and that their Seqs
// increase.
func wantPending(t *testing.T, s store.Store, want ...store.PendingUpdate) []store.PendingUpdate {
	t.Helper()
	got := pending(t, s)
	for i, u := range got {
		if i > 0 && u.Seq <= got[i-1].Seq {
			t.Errorf("pending updates out of order: %+v", got)
		}
	}
	if !slices.EqualFunc(got, want, sameUpdate) {
		t.Fatalf("pending updates = %s, want %s", showUpdates(got), showUpdates(want))
	}
	return got
}

// showUpdates prints updates briefly (the keys and lists are long).
func showUpdates(us []store.PendingUpdate) string {
	var b strings.Builder
	for _, u := range us {
		fmt.Fprintf(&b, "{%d %q %q ik:%.8x list:%.12q} ", u.Seq, u.Username, u.AccountID, u.IdentityKey, u.DeviceList)
	}
	return "[" + strings.TrimSpace(b.String()) + "]"
}

// testPendingUpdates: every change to what the log publishes of an account
// records, in its transaction, a pending update with the value the
// username's entry then holds; refused changes and other changes record
// none; a deletion records the username alone.
func testPendingUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantPending(t, s)
	wantLastPending(t, s, 0)
	a, d := register(t, s, "alice", keys(2, 2))
	got := wantPending(t, s, snapshot(a, firstList()))
	if del := deletion("x"); got[0].Deletion() || !del.Deletion() {
		t.Error("Deletion() is wrong")
	}
	wantLastPending(t, s, got[0].Seq)
	publish(t, s)
	wantPending(t, s)
	wantLastPending(t, s, 0)

	// Changes the log does not publish.
	must(t, "StoreKeys", s.StoreKeys(ctx, a.ID, d.ID, keys(3, 3)))
	must(t, "SetUnidentifiedAccess", s.SetUnidentifiedAccess(ctx, a.ID, key("uak", 1, 16), true))
	must(t, "SetLastSeenDay", s.SetLastSeenDay(ctx, a.ID, d.ID, store.Day(t0)+3))
	_, err := s.TakeBundle(ctx, a.ID, d.ID)
	must(t, "TakeBundle", err)
	tok := newToken(t, s, a.ID)
	wantPending(t, s)

	// Refused changes.
	a2, d2 := newAccount("alice")
	wantErr(t, "CreateAccount(taken)", s.CreateAccount(ctx, a2, d2, keys(1, 1), firstList(), nil), store.ErrUsernameTaken)
	a3, d3 := newAccount("invited")
	wantErr(t, "CreateAccount(bad invite)", s.CreateAccount(ctx, a3, d3, keys(1, 1), firstList(), key("no-invite", 0, 32)), store.ErrInvalidInvite)
	d4 := linkedDevice(tok)
	wantErr(t, "LinkDevice(conflict)", s.LinkDevice(ctx, tok.TokenHash, d4, keys(1, 1), listAt(a.ID, 5), nil), store.ErrVersionConflict)
	wantErr(t, "RemoveDevice(absent)", s.RemoveDevice(ctx, a.ID, 99, nextList(t, s, a.ID)), store.ErrNotFound)
	wantErr(t, "RemoveDevice(conflict)", s.RemoveDevice(ctx, a.ID, d.ID, listAt(a.ID, 9)), store.ErrVersionConflict)
	wantErr(t, "DeleteAccount(absent)", s.DeleteAccount(ctx, newUUID()), store.ErrNotFound)
	wantPending(t, s)

	// Two quick device changes are two updates, each with the list its
	// own transaction stored (not the newest); a deletion holds the
	// username alone.
	linked := listAt(a.ID, 2)
	must(t, "LinkDevice", s.LinkDevice(ctx, tok.TokenHash, d4, keys(1, 1), linked, nil))
	removed := listAt(a.ID, 3)
	must(t, "RemoveDevice", s.RemoveDevice(ctx, a.ID, d4.ID, removed))
	b, _ := register(t, s, "bob", keys(1, 1))
	must(t, "DeleteAccount", s.DeleteAccount(ctx, a.ID))
	got = wantPending(t, s,
		snapshot(a, linked),
		snapshot(a, removed),
		snapshot(b, firstList()),
		deletion("alice"))
	if !got[3].Deletion() || got[3].IdentityKey != nil || got[3].DeviceList != nil {
		t.Errorf("the deletion's update holds %+v, want the username alone", got[3])
	}

	// A limit takes the oldest.
	first, err := s.PendingUpdates(ctx, 2)
	must(t, "PendingUpdates(2)", err)
	if !sameUpdates(first, got[:2]) {
		t.Errorf("PendingUpdates(2) = %s, want %s", showUpdates(first), showUpdates(got[:2]))
	}
	if none, err := s.PendingUpdates(ctx, 0); err != nil || len(none) != 0 {
		t.Errorf("PendingUpdates(0) = %+v, %v; want none", none, err)
	}

	// Publishing some leaves the rest; a Seq already gone is ignored.
	must(t, "AppendEpoch", s.AppendEpoch(ctx, fakeEpoch(1), nil, []int64{got[0].Seq, got[2].Seq, got[0].Seq}))
	rest := pending(t, s)
	if !sameUpdates(rest, []store.PendingUpdate{got[1], got[3]}) {
		t.Fatalf("after publishing two: %s, want %s", showUpdates(rest), showUpdates([]store.PendingUpdate{got[1], got[3]}))
	}
	// Later updates come after what is left. The username is free again:
	// a new account takes it, and its update follows the deletion's.
	c, _ := register(t, s, "carol", keys(1, 1))
	a5, d5 := newAccount("alice")
	must(t, "CreateAccount(alice again)", s.CreateAccount(ctx, a5, d5, keys(1, 1), firstList(), nil))
	rest = wantPending(t, s, snapshot(a, removed), deletion("alice"), snapshot(c, firstList()), snapshot(a5, firstList()))
	if rest[2].Seq <= got[3].Seq {
		t.Fatalf("after carol: %s", showUpdates(rest))
	}
}

// testAppendEpoch: epochs are stored in sequence, entries by index,
// replaced by later epochs; a wrong number changes nothing.
func testAppendEpoch(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.EpochCount(ctx); err != nil || n != 0 {
		t.Fatalf("EpochCount of an empty store = %d, %v", n, err)
	}
	if es, err := s.Epochs(ctx, 0, 10); err != nil || len(es) != 0 {
		t.Fatalf("Epochs of an empty store = %v, %v", es, err)
	}
	if hs, err := s.EpochHeads(ctx); err != nil || len(hs) != 0 {
		t.Fatalf("EpochHeads of an empty store = %v, %v", hs, err)
	}
	_, err := s.TransparencyEntry(ctx, fakeIndex("alice"))
	wantErr(t, "TransparencyEntry(none)", err, store.ErrNotFound)

	a, _ := register(t, s, "alice", keys(1, 1))
	alice0 := fakeEntry("alice", 0, []byte("alice's key and list"))
	name0 := fakeEntry("name alice", 0, []byte(a.ID))
	e0 := publish(t, s, alice0, name0)
	wantPending(t, s)

	// A number other than the count is refused, and changes nothing.
	register(t, s, "bob", keys(1, 1))
	before := pending(t, s)
	bob0 := fakeEntry("bob", 0, []byte("bob's"))
	for _, n := range []uint64{0, 2, 1 << 62} {
		wantErr(t, fmt.Sprintf("AppendEpoch(%d)", n), s.AppendEpoch(ctx, fakeEpoch(n), []kt.Entry{bob0}, seqs(before)), store.ErrEpochConflict)
	}
	if got := pending(t, s); !sameUpdates(got, before) {
		t.Fatalf("a refused epoch published %+v", before)
	}
	_, err = s.TransparencyEntry(ctx, bob0.Leaf.Index)
	wantErr(t, "TransparencyEntry(bob) after a refused epoch", err, store.ErrNotFound)

	alice1 := fakeEntry("alice", 1, nil) // a deletion: an empty value
	e1 := publish(t, s, bob0, alice1)
	e2 := publish(t, s)

	if n, err := s.EpochCount(ctx); err != nil || n != 3 {
		t.Fatalf("EpochCount = %d, %v; want 3", n, err)
	}
	es, err := s.Epochs(ctx, 0, 10)
	must(t, "Epochs", err)
	want := []*store.Epoch{e0, e1, e2}
	if len(es) != len(want) {
		t.Fatalf("Epochs = %d epochs, want %d", len(es), len(want))
	}
	for i, e := range es {
		w := want[i]
		if e.Number != w.Number || e.Timestamp != w.Timestamp || e.PrefixRoot != w.PrefixRoot ||
			!bytes.Equal(e.Changes, w.Changes) || !bytes.Equal(e.Checkpoint, w.Checkpoint) {
			t.Errorf("epoch %d = %+v, want %+v", i, e, w)
		}
	}
	if es, err := s.Epochs(ctx, 1, 1); err != nil || len(es) != 1 || es[0].Number != 1 {
		t.Errorf("Epochs(1, 1) = %+v, %v; want epoch 1", es, err)
	}
	for _, from := range []uint64{3, 1 << 40, 1<<64 - 1} {
		if es, err := s.Epochs(ctx, from, 10); err != nil || len(es) != 0 {
			t.Errorf("Epochs(%d) = %+v, %v; want none", from, es, err)
		}
	}
	hs, err := s.EpochHeads(ctx)
	must(t, "EpochHeads", err)
	if len(hs) != 3 {
		t.Fatalf("EpochHeads = %d heads, want 3", len(hs))
	}
	for i, h := range hs {
		if h.Timestamp != want[i].Timestamp || h.PrefixRoot != want[i].PrefixRoot {
			t.Errorf("head %d = %+v, want epoch %+v", i, h, want[i])
		}
	}

	// Each label's newest entry; an empty value reads back empty.
	for _, w := range []kt.Entry{alice1, name0, bob0} {
		got, err := s.TransparencyEntry(ctx, w.Leaf.Index)
		must(t, "TransparencyEntry", err)
		if got.Leaf != w.Leaf || got.Opening != w.Opening || !bytes.Equal(got.Value, w.Value) || got.Label != nil {
			t.Errorf("TransparencyEntry = %+v, want %+v", got, w)
		}
	}
	var leaves []kt.Leaf
	for l, err := range s.TransparencyLeaves(ctx) {
		must(t, "TransparencyLeaves", err)
		leaves = append(leaves, l)
	}
	wantLeaves := []kt.Leaf{alice1.Leaf, name0.Leaf, bob0.Leaf}
	slices.SortFunc(wantLeaves, func(x, y kt.Leaf) int { return bytes.Compare(x.Index[:], y.Index[:]) })
	if !slices.Equal(leaves, wantLeaves) {
		t.Errorf("TransparencyLeaves = %+v, want %+v", leaves, wantLeaves)
	}
	// Breaking off the sequence is fine, and the store works on.
	for range s.TransparencyLeaves(ctx) {
		break
	}
	if n, err := s.EpochCount(ctx); err != nil || n != 3 {
		t.Fatalf("EpochCount after a broken-off iteration = %d, %v", n, err)
	}
}

// testAppendEpochConcurrent: of two sequencers appending the same epoch,
// one wins and the other gets ErrEpochConflict.
func testAppendEpochConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	publish(t, s)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			e := fakeEpoch(1)
			e.Changes = fmt.Appendf(nil, "sequencer %d", i)
			errs[i] = s.AppendEpoch(ctx, e, []kt.Entry{fakeEntry(fmt.Sprint("label ", i), 0, []byte("v"))}, nil)
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case err == nil:
			t.Fatalf("sequencers %d and %d both appended epoch 1", won, i)
		default:
			wantErr(t, "AppendEpoch(losing)", err, store.ErrEpochConflict)
		}
	}
	if won < 0 {
		t.Fatal("no sequencer appended epoch 1")
	}
	es, err := s.Epochs(ctx, 1, 10)
	must(t, "Epochs", err)
	if len(es) != 1 || string(es[0].Changes) != fmt.Sprint("sequencer ", won) {
		t.Fatalf("epoch 1 = %+v, want sequencer %d's", es, won)
	}
	var leaves int
	for _, err := range s.TransparencyLeaves(ctx) {
		must(t, "TransparencyLeaves", err)
		leaves++
	}
	if leaves != 1 {
		t.Fatalf("%d entries stored, want the winner's 1", leaves)
	}
}

// testCosignatures: the newest cosignature per auditor; an older one does
// not replace it.
func testCosignatures(t *testing.T, s store.Store) {
	ctx := t.Context()
	if cs, err := s.Cosignatures(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Cosignatures of an empty store = %+v, %v", cs, err)
	}
	put := func(auditor string, size uint64, note string) {
		t.Helper()
		must(t, "PutCosignature", s.PutCosignature(ctx, &store.Cosignature{Auditor: auditor, Size: size, Checkpoint: []byte(note)}))
	}
	put("witness.example/a", 5, "a5")
	put("witness.example/b", 3, "b3")
	put("witness.example/a", 4, "a4") // older: kept out
	put("witness.example/b", 7, "b7")
	put("witness.example/b", 7, "b7 again") // as new: replaces
	cs, err := s.Cosignatures(ctx)
	must(t, "Cosignatures", err)
	want := []store.Cosignature{
		{Auditor: "witness.example/a", Size: 5, Checkpoint: []byte("a5")},
		{Auditor: "witness.example/b", Size: 7, Checkpoint: []byte("b7 again")},
	}
	if len(cs) != len(want) {
		t.Fatalf("Cosignatures = %+v, want %+v", cs, want)
	}
	for i := range cs {
		if cs[i].Auditor != want[i].Auditor || cs[i].Size != want[i].Size || !bytes.Equal(cs[i].Checkpoint, want[i].Checkpoint) {
			t.Errorf("cosignature %d = %+v, want %+v", i, cs[i], want[i])
		}
	}
}

// wantLastPending checks LastPendingSeq.
func wantLastPending(t *testing.T, s store.Store, want int64) {
	t.Helper()
	got, err := s.LastPendingSeq(t.Context())
	must(t, "LastPendingSeq", err)
	if got != want {
		t.Fatalf("LastPendingSeq = %d, want %d", got, want)
	}
}

// RunNodes runs the tests of what several nodes over one database share:
// the sequencer lease. open returns, for one subtest, a function that
// opens a new Store (a node) over one fresh, empty database each time it
// is called, and registers its Close with t.Cleanup (the tests close some
// nodes themselves: a second Close returns ErrClosed, which the cleanup
// should ignore).
func RunNodes(t *testing.T, open func(t *testing.T) func() store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, node func() store.Store)
	}{
		{"SequencerLease", testSequencerLease},
		{"SequencerLeaseClose", testSequencerLeaseClose},
		{"SequencerLeaseConcurrent", testSequencerLeaseConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// acquire acquires the sequencer lease, failing the test otherwise.
func acquire(t *testing.T, what string, s store.Store) store.SequencerLease {
	t.Helper()
	l, err := s.AcquireSequencer(t.Context())
	must(t, what, err)
	return l
}

// testSequencerLease: of two nodes only one holds the lease (and its
// holder cannot take it twice); once released, the other takes it.
func testSequencerLease(t *testing.T, node func() store.Store) {
	ctx := t.Context()
	a, b := node(), node()
	la := acquire(t, "AcquireSequencer(a)", a)
	must(t, "Check(a)", la.Check(ctx))
	_, err := b.AcquireSequencer(ctx)
	wantErr(t, "AcquireSequencer(b, while a leads)", err, store.ErrSequencerTaken)
	_, err = a.AcquireSequencer(ctx)
	wantErr(t, "AcquireSequencer(a, again)", err, store.ErrSequencerTaken)
	must(t, "Check(a)", la.Check(ctx))

	must(t, "Release(a)", la.Release())
	if la.Check(ctx) == nil {
		t.Fatal("Check of a released lease = nil")
	}
	must(t, "Release(a, again)", la.Release())
	lb := acquire(t, "AcquireSequencer(b, after a released)", b)
	_, err = a.AcquireSequencer(ctx)
	wantErr(t, "AcquireSequencer(a, while b leads)", err, store.ErrSequencerTaken)
	must(t, "Check(b)", lb.Check(ctx))
	must(t, "Release(b)", lb.Release())
	la = acquire(t, "AcquireSequencer(a, after b released)", a)
	must(t, "Release(a)", la.Release())
}

// testSequencerLeaseClose: closing a node releases the lease it holds.
func testSequencerLeaseClose(t *testing.T, node func() store.Store) {
	ctx := t.Context()
	a, b := node(), node()
	la := acquire(t, "AcquireSequencer(a)", a)
	_, err := b.AcquireSequencer(ctx)
	wantErr(t, "AcquireSequencer(b, while a leads)", err, store.ErrSequencerTaken)
	must(t, "Close(a)", a.Close())
	if la.Check(ctx) == nil {
		t.Fatal("Check of the lease of a closed node = nil")
	}
	lb := acquire(t, "AcquireSequencer(b, after a closed)", b)
	must(t, "Release(a's, after Close)", la.Release())
	must(t, "Check(b)", lb.Check(ctx))
	must(t, "Release(b)", lb.Release())
}

// testSequencerLeaseConcurrent: of nodes trying at once, one wins.
func testSequencerLeaseConcurrent(t *testing.T, node func() store.Store) {
	const n = 6
	nodes := make([]store.Store, n)
	for i := range nodes {
		nodes[i] = node()
	}
	leases := make([]store.SequencerLease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { leases[i], errs[i] = nodes[i].AcquireSequencer(t.Context()) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			defer leases[i].Release()
			continue
		}
		wantErr(t, "AcquireSequencer(losing)", err, store.ErrSequencerTaken)
	}
	if won != 1 {
		t.Fatalf("%d nodes hold the lease, want 1", won)
	}
}
