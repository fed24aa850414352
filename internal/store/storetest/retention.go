package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
)

// Unidentified access, last-seen days, sealed-sender sends and account
// deletion.

// accessKey returns a fake 16-byte unidentified access key.
func accessKey(n uint32) []byte { return key("uak", n, 16) }

// sealedSend returns a sealed-sender send to the recipient account: no
// source, one envelope for each of to.
func sealedSend(recipient, content string, ts time.Time, to ...addr) *store.Send {
	s := send(addr{}, content, ts, to...)
	s.Recipient = recipient
	for i := range s.Envelopes {
		s.Envelopes[i].Type = 6
	}
	return s
}

func testUnidentifiedAccess(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, d := newAccount("alice")
	a.UnidentifiedAccessKey = accessKey(1)
	must(t, "CreateAccount", s.CreateAccount(ctx, a, d, keys(1, 1), firstList(), nil))
	bob, _ := register(t, s, "bob", keys(1, 1))

	check := func(what, id string, wantKey []byte, wantUnrestricted bool) {
		t.Helper()
		for name, get := range map[string]func() (*store.Account, error){
			"AccountByID": func() (*store.Account, error) { return s.AccountByID(ctx, id) },
		} {
			got, err := get()
			must(t, name, err)
			if !bytes.Equal(got.UnidentifiedAccessKey, wantKey) || (wantKey == nil) != (got.UnidentifiedAccessKey == nil) ||
				got.UnrestrictedUnidentifiedAccess != wantUnrestricted {
				t.Errorf("%s: %s = key %x unrestricted %v, want %x %v", what, name, got.UnidentifiedAccessKey,
					got.UnrestrictedUnidentifiedAccess, wantKey, wantUnrestricted)
			}
		}
	}
	check("registered with a key", a.ID, accessKey(1), false)
	check("registered without", bob.ID, nil, false)
	got, err := s.AccountByUsername(ctx, "alice")
	must(t, "AccountByUsername", err)
	if !bytes.Equal(got.UnidentifiedAccessKey, accessKey(1)) {
		t.Errorf("AccountByUsername: key %x, want %x", got.UnidentifiedAccessKey, accessKey(1))
	}

	must(t, "SetUnidentifiedAccess(keep, unrestricted)", s.SetUnidentifiedAccess(ctx, a.ID, nil, true))
	check("key kept, unrestricted", a.ID, accessKey(1), true)
	must(t, "SetUnidentifiedAccess(new key, restricted)", s.SetUnidentifiedAccess(ctx, a.ID, accessKey(2), false))
	check("key replaced", a.ID, accessKey(2), false)
	must(t, "SetUnidentifiedAccess(bob)", s.SetUnidentifiedAccess(ctx, bob.ID, nil, true))
	check("unrestricted without a key", bob.ID, nil, true)
	check("alice untouched by bob's change", a.ID, accessKey(2), false)
	wantErr(t, "SetUnidentifiedAccess(unknown account)", s.SetUnidentifiedAccess(ctx, newUUID(), accessKey(3), true), store.ErrNotFound)

	// Linking a device may bring a new key; without one it keeps it.
	tok := newToken(t, s, a.ID)
	must(t, "LinkDevice(with a key)", s.LinkDevice(ctx, tok.TokenHash, linkedDevice(tok), keys(1, 1), nextList(t, s, a.ID), accessKey(4)))
	check("linked with a key", a.ID, accessKey(4), false)
	link(t, s, a.ID)
	check("linked without a key", a.ID, accessKey(4), false)
	// A refused link changes no key.
	tok = newToken(t, s, a.ID)
	wantErr(t, "LinkDevice(version conflict)", s.LinkDevice(ctx, tok.TokenHash, linkedDevice(tok), nil, listAt(a.ID, 1), accessKey(5)), store.ErrVersionConflict)
	check("after a refused link", a.ID, accessKey(4), false)
}

func testLastSeenDay(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	day := store.Day(t0)
	seen := func(what string, id uint32, want int64) {
		t.Helper()
		d, err := s.Device(ctx, a.ID, id)
		must(t, "Device", err)
		ds, err := s.Devices(ctx, a.ID)
		must(t, "Devices", err)
		i := slices.IndexFunc(ds, func(d store.Device) bool { return d.ID == id })
		if d.LastSeenDay != want || i < 0 || ds[i].LastSeenDay != want {
			t.Errorf("%s: device %d last seen on day %d (Devices: %+v), want %d", what, id, d.LastSeenDay, ds, want)
		}
	}
	seen("registered", 1, day)
	linked := link(t, s, a.ID)
	seen("linked", linked.ID, day)

	must(t, "SetLastSeenDay(+2)", s.SetLastSeenDay(ctx, a.ID, 1, day+2))
	seen("two days later", 1, day+2)
	seen("the other device", linked.ID, day)
	must(t, "SetLastSeenDay(+1)", s.SetLastSeenDay(ctx, a.ID, 1, day+1))
	seen("an earlier day", 1, day+2)
	must(t, "SetLastSeenDay(same day)", s.SetLastSeenDay(ctx, a.ID, 1, day+2))
	seen("the same day", 1, day+2)
	wantErr(t, "SetLastSeenDay(no device)", s.SetLastSeenDay(ctx, a.ID, 99, day+3), store.ErrNotFound)
	wantErr(t, "SetLastSeenDay(no account)", s.SetLastSeenDay(ctx, newUUID(), 1, day+3), store.ErrNotFound)
}

func testSealedSend(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	alice, bob, carol := addrOf(da), addrOf(db), addrOf(dc)
	used := func(what, recipient, id string, want bool) {
		t.Helper()
		got, err := s.SealedSendUsed(ctx, recipient, id)
		must(t, "SealedSendUsed("+what+")", err)
		if got != want {
			t.Errorf("SealedSendUsed(%s) = %v, want %v", what, got, want)
		}
	}

	s1 := sealedSend(bob.account, "sealed one", t0, bob)
	used("before Enqueue", bob.account, s1.SendID, false)
	must(t, "Enqueue(sealed)", s.Enqueue(ctx, s1, 10))
	used("after Enqueue", bob.account, s1.SendID, true)
	used("other recipient", carol.account, s1.SendID, false)
	if q := queue(t, s, bob); len(q) != 1 || q[0].SourceAccount != "" || q[0].SourceDevice != 0 || q[0].Type != 6 || string(q[0].Content) != "sealed one" {
		t.Fatalf("bob's queue = %+v, want the sealed envelope without a source", q)
	}

	// The id is the recipient's: the same id to bob again is a duplicate
	// (whoever sends it), to carol it is not.
	again := sealedSend(bob.account, "sealed again", t0, bob)
	again.SendID = s1.SendID
	wantErr(t, "Enqueue(same sealed send id)", s.Enqueue(ctx, again, 10), store.ErrDuplicate)
	toCarol := sealedSend(carol.account, "to carol", t0, carol)
	toCarol.SendID = s1.SendID
	must(t, "Enqueue(same id, other recipient)", s.Enqueue(ctx, toCarol, 10))
	// Sealed and identified send ids do not collide.
	ident := send(alice, "identified", t0, bob)
	ident.SendID = s1.SendID
	must(t, "Enqueue(same id, identified)", s.Enqueue(ctx, ident, 10))
	if got, err := s.SendUsed(ctx, alice.account, alice.device, newUUID()); err != nil || got {
		t.Errorf("SendUsed(fresh id) = %v, %v", got, err)
	}
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"sealed one", "identified"}) {
		t.Errorf("bob's queue = %q", got)
	}

	// A sealed send is malformed if an envelope names a source or
	// another recipient, or it has no recipient: refused, nothing stored.
	for name, mod := range map[string]func(*store.Send){
		"envelope with a source": func(s *store.Send) {
			s.Envelopes[0].SourceAccount, s.Envelopes[0].SourceDevice = alice.account, alice.device
		},
		"other recipient":    func(s *store.Send) { s.Recipient = carol.account },
		"source device only": func(s *store.Send) { s.SourceDevice = 1 },
	} {
		bad := sealedSend(bob.account, "bad", t0, bob)
		mod(bad)
		if err := s.Enqueue(ctx, bad, 10); err == nil {
			t.Errorf("Enqueue(sealed, %s) succeeded", name)
		}
		used("refused: "+name, bob.account, bad.SendID, false)
	}
	if n := queueLen(t, s, bob); n != 2 {
		t.Errorf("bob's queue holds %d envelopes after refusals, want 2", n)
	}

	// A multi-recipient send (no Recipient) goes to several accounts; its
	// id is scoped by no account.
	multi := sealedSend("", "to both", t0, bob, carol)
	must(t, "Enqueue(multi-recipient)", s.Enqueue(ctx, multi, 10))
	used("multi-recipient", "", multi.SendID, true)
	used("multi-recipient, under bob", bob.account, multi.SendID, false)
	repeat := sealedSend("", "again", t0, bob)
	repeat.SendID = multi.SendID
	wantErr(t, "Enqueue(multi-recipient again)", s.Enqueue(ctx, repeat, 10), store.ErrDuplicate)
	for _, a := range []addr{bob, carol} {
		if q := queue(t, s, a); len(q) == 0 || string(q[len(q)-1].Content) != "to both" || q[len(q)-1].SourceAccount != "" {
			t.Errorf("%s's queue = %q", a.account, contents(q))
		}
	}

	// Expire forgets sealed send ids with the others.
	_, err := s.Expire(ctx, t0.Add(time.Hour))
	must(t, "Expire", err)
	used("after Expire", bob.account, s1.SendID, false)
	used("multi-recipient after Expire", "", multi.SendID, false)
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, da := register(t, s, "alice", keys(3, 3))
	_, db := register(t, s, "bob", keys(2, 2))
	alice, bob := addrOf(da), addrOf(db)
	a2 := link(t, s, a.ID)
	newToken(t, s, a.ID) // pending
	must(t, "Enqueue(bob→alice)", s.Enqueue(ctx, send(bob, "to alice", t0, alice, addrOf(a2)), 10))
	must(t, "Enqueue(alice→bob)", s.Enqueue(ctx, send(alice, "from alice", t0, bob), 10))
	must(t, "Enqueue(sealed alice→bob)", s.Enqueue(ctx, sealedSend(bob.account, "sealed from alice", t0, bob), 10))
	must(t, "Enqueue(bob→bob)", s.Enqueue(ctx, send(bob, "note to self", t0, bob), 10))

	must(t, "DeleteAccount", s.DeleteAccount(ctx, a.ID))

	_, err := s.AccountByID(ctx, a.ID)
	wantErr(t, "AccountByID", err, store.ErrNotFound)
	_, err = s.AccountByUsername(ctx, "alice")
	wantErr(t, "AccountByUsername", err, store.ErrNotFound)
	_, err = s.Device(ctx, a.ID, 1)
	wantErr(t, "Device", err, store.ErrNotFound)
	_, err = s.DeviceList(ctx, a.ID)
	wantErr(t, "DeviceList", err, store.ErrNotFound)
	_, err = s.KeyCounts(ctx, a.ID, 1)
	wantErr(t, "KeyCounts", err, store.ErrNotFound)
	_, err = s.TakeBundle(ctx, a.ID, a2.ID)
	wantErr(t, "TakeBundle", err, store.ErrNotFound)
	if ds := deviceIDs(t, s, a.ID); len(ds) != 0 {
		t.Errorf("Devices after deletion = %v", ds)
	}
	for _, d := range []addr{alice, addrOf(a2)} {
		if q := queue(t, s, d); len(q) != 0 {
			t.Errorf("device %d's queue after deletion = %q", d.device, contents(q))
		}
	}
	err = s.CreateLinkToken(ctx, &store.LinkToken{TokenHash: key("tok-after", 0, 32), AccountID: a.ID, Expires: t0.Add(time.Hour)}, t0, maxDeviceID, maxPending)
	wantErr(t, "CreateLinkToken after deletion", err, store.ErrNotFound)

	// The envelopes alice sent in her name are gone from bob's queue; the
	// sealed one, which names no one, is delivered.
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"sealed from alice", "note to self"}) {
		t.Errorf("bob's queue after alice's deletion = %q, want the sealed envelope and his own", got)
	}
	if n := queueLen(t, s, bob); n != 2 {
		t.Errorf("QueueLen(bob) = %d, want 2", n)
	}
	// Bob is untouched.
	if c, err := s.KeyCounts(ctx, bob.account, 1); err != nil || c != (store.KeyCounts{PreKeys: 2, KyberPreKeys: 2}) {
		t.Errorf("bob's KeyCounts = %+v, %v", c, err)
	}
	must(t, "Enqueue(bob→bob) after", s.Enqueue(ctx, send(bob, "still here", t0, bob), 10))

	// Again: nothing to delete. And the username is free.
	wantErr(t, "DeleteAccount(again)", s.DeleteAccount(ctx, a.ID), store.ErrNotFound)
	wantErr(t, "DeleteAccount(unknown)", s.DeleteAccount(ctx, newUUID()), store.ErrNotFound)
	n, _ := register(t, s, "alice", keys(1, 1))
	if n.ID == a.ID {
		t.Fatal("re-registered alice has the deleted account's id")
	}
	if got, err := s.AccountByUsername(ctx, "alice"); err != nil || got.ID != n.ID {
		t.Errorf("AccountByUsername(alice) = %v, %v; want the new account", got, err)
	}
	if ds := deviceIDs(t, s, n.ID); !slices.Equal(ds, []uint32{1}) {
		t.Errorf("the new alice's devices = %v", ds)
	}
}

// uniqueKeys is an upload whose every key and signature holds the tag, so
// that a dump can be searched for it.
func uniqueKeys(tag string, pre, kyber int) *store.KeyUpload {
	k := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: key(tag+"-spk", 1, 33), Signature: key(tag+"-spk-sig", 1, 64)},
		LastResort:   &store.KyberPreKey{ID: 1000, PublicKey: key(tag+"-lr", 1000, 1569), Signature: key(tag+"-lr-sig", 1000, 64)},
	}
	for i := 1; i <= pre; i++ {
		k.PreKeys = append(k.PreKeys, store.PreKey{ID: uint32(i), PublicKey: key(tag+"-pk", uint32(i), 33)})
	}
	for i := 101; i <= 100+kyber; i++ {
		k.KyberPreKeys = append(k.KyberPreKeys, store.KyberPreKey{ID: uint32(i), PublicKey: key(tag+"-kpk", uint32(i), 1569), Signature: key(tag+"-kpk-sig", uint32(i), 64)})
	}
	return k
}

// needles are the byte strings of what a store holds about an account.
type needles map[string][]byte

func (n needles) keys(what string, k *store.KeyUpload) {
	n[what+" signed prekey"] = k.SignedPreKey.PublicKey
	n[what+" signed prekey signature"] = k.SignedPreKey.Signature
	n[what+" last-resort key"] = k.LastResort.PublicKey
	for _, p := range k.PreKeys {
		n[fmt.Sprintf("%s prekey %d", what, p.ID)] = p.PublicKey
	}
	for _, p := range k.KyberPreKeys {
		n[fmt.Sprintf("%s kyber prekey %d", what, p.ID)] = p.PublicKey
	}
}

// testDeleteAccountLeavesNothing dumps the whole store after an account
// with everything a store can hold for it is deleted, and looks for any
// trace of it.
func testDeleteAccountLeavesNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	dumper, ok := s.(store.Dumper)
	if !ok {
		t.Fatalf("%T does not implement store.Dumper", s)
	}
	const name = "zelda_deleted"
	a, d := newAccount(name)
	a.UnidentifiedAccessKey = key("uak-"+a.ID, 0, 16)
	ka := uniqueKeys("zelda-"+a.ID, 3, 3)
	must(t, "CreateAccount", s.CreateAccount(ctx, a, d, ka, listAt(a.ID, 1), nil))
	tok := newToken(t, s, a.ID)
	d2 := linkedDevice(tok)
	d2.CredentialHash = key("cred2-"+a.ID, 2, 32)
	k2 := uniqueKeys("zelda2-"+a.ID, 2, 2)
	must(t, "LinkDevice", s.LinkDevice(ctx, tok.TokenHash, d2, k2, listAt(a.ID, 2), nil))
	unused := newToken(t, s, a.ID)
	must(t, "SetLastSeenDay", s.SetLastSeenDay(ctx, a.ID, 1, store.Day(t0)+1))
	_, dc := register(t, s, "carol", keys(1, 1))
	zelda, zelda2, carol := addrOf(d), addrOf(d2), addrOf(dc)
	must(t, "Enqueue(carol→zelda)", s.Enqueue(ctx, send(carol, "c2z", t0, zelda, zelda2), 10))
	must(t, "Enqueue(sealed→zelda)", s.Enqueue(ctx, sealedSend(a.ID, "s2z", t0, zelda, zelda2), 10))
	must(t, "Enqueue(zelda→carol)", s.Enqueue(ctx, send(zelda, "z2c", t0, carol), 10))
	must(t, "Enqueue(zelda→zelda2)", s.Enqueue(ctx, send(zelda, "z2z", t0, zelda2), 10))

	n := needles{
		"account id":             []byte(a.ID),
		"username":               []byte(name),
		"identity key":           a.IdentityKey,
		"access key":             a.UnidentifiedAccessKey,
		"device 1 credential":    d.CredentialHash,
		"device 2 credential":    d2.CredentialHash,
		"device list":            listAt(a.ID, 2).Signed,
		"link token":             unused.TokenHash,
		"queued for zelda":       []byte("c2z"),
		"sealed for zelda":       []byte("s2z"),
		"sent by zelda":          []byte("z2c"),
		"sent to her own device": []byte("z2z"),
	}
	n.keys("device 1", ka)
	n.keys("device 2", k2)

	// The key-transparency log published the account: the username's
	// entry holds the account id, identity key and device list.
	nameEntry := fakeEntry("username "+name, 1, append(append([]byte(a.ID), a.IdentityKey...), listAt(a.ID, 2).Signed...))
	n["the username entry's opening"] = nameEntry.Opening[:]
	publish(t, s, nameEntry)

	before, err := dumper.Dump(ctx)
	must(t, "Dump", err)
	for what, b := range n {
		if len(before.Find(b)) == 0 {
			// The needles must be findable, or finding none proves nothing.
			t.Fatalf("before deletion the dump (%v) holds no %s", before, what)
		}
	}

	must(t, "DeleteAccount", s.DeleteAccount(ctx, a.ID))
	// Until the deletion is published, its pending update names the
	// username, and nothing else of the account (the published entry
	// still holds its value); publishing it empties the entry.
	if ups := pending(t, s); len(ups) != 1 || !sameUpdate(ups[0], deletion(name)) {
		t.Fatalf("DeleteAccount left %s pending, want its one update", showUpdates(ups))
	}
	mid, err := dumper.Dump(ctx)
	must(t, "Dump", err)
	for what, b := range n {
		for _, at := range mid.Find(b) {
			if strings.HasPrefix(at, "kt_pending") && what != "username" {
				t.Errorf("with the deletion pending the %s is in %s", what, at)
			}
		}
	}
	publish(t, s, fakeEntry("username "+name, 2, nil))

	after, err := dumper.Dump(ctx)
	must(t, "Dump", err)
	for what, b := range n {
		if at := after.Find(b); len(at) > 0 {
			t.Errorf("after deletion the %s is still in %v", what, at)
		}
	}
	// Carol is all there.
	if got, err := s.AccountByUsername(ctx, "carol"); err != nil || got.ID != carol.account {
		t.Errorf("AccountByUsername(carol) = %v, %v", got, err)
	}
	if len(after.Find([]byte(carol.account))) == 0 {
		t.Errorf("carol is gone from the dump: %v", after)
	}
	if q := queue(t, s, carol); len(q) != 0 {
		t.Errorf("carol's queue = %q, want empty: zelda's envelope named her", contents(q))
	}
	if !errors.Is(s.DeleteAccount(ctx, a.ID), store.ErrNotFound) {
		t.Error("a second DeleteAccount did not answer ErrNotFound")
	}
}
