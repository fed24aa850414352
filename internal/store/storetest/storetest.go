// Package storetest is the conformance suite for store.Store: every storage
// backend runs it from its own tests,
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... a fresh, empty store ... })
//	}
//
// and is correct when it passes. The suite checks behaviour a caller can
// observe through the interface; what a backend promises beyond it (group
// commit, durability across a restart) its own tests check.
//
// Times given to the store are whole milliseconds, the precision of the HTTP
// API; a backend must keep at least that.
//
// Where store.go leaves room, the suite settles it:
//   - an invite is valid for an account created before its Expires; a refused
//     CreateAccount (for any reason) does not consume its invite;
//   - TakeBundle returns ErrNoSignedPreKey or ErrNoKyberPreKey for a device
//     missing those keys, and then takes no one-time key;
//   - KeyCounts returns ErrNotFound for no device; Queue and QueueLen of a
//     device that does not exist return nothing (or ErrNotFound);
//   - a Send refused for any reason does not record its send id;
//   - a LinkDevice refused for any reason (a version conflict included)
//     does not consume its link token;
//   - RemoveDevice may remove an account's last device (the server is
//     what refuses that);
//   - a store implements store.Dumper, and after DeleteAccount, once the
//     pending update it records is published (AppendEpoch), no row of any
//     table holds the account's id, username, identity key, device
//     credential hashes, keys, device list or access key, nor the values
//     its key-transparency entries held;
//   - abuse reports stay when the accounts they name are deleted (they go
//     with ExpireReports; the deletion check above makes no report);
//   - refused account changes record no pending update; changes the log
//     does not publish (keys, access keys, last-seen days) record none.
//
// Run is safe to call from parallel tests; each subtest opens its own store.
package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
)

// Run runs the conformance suite. open returns a new, empty store for one
// subtest and registers its Close with t.Cleanup (the suite closes some
// stores itself: a second Close returns ErrClosed, which the cleanup should
// ignore).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateAccount", testCreateAccount},
		{"UsernameTaken", testUsernameTaken},
		{"Invites", testInvites},
		{"NotFound", testNotFound},
		{"RemoveDevice", testRemoveDevice},
		{"DeviceList", testDeviceList},
		{"LinkToken", testLinkToken},
		{"LinkTokenLimits", testLinkTokenLimits},
		{"LinkDevice", testLinkDevice},
		{"LinkDeviceRefused", testLinkDeviceRefused},
		{"LinkDeviceConcurrent", testLinkDeviceConcurrent},
		{"Mailbox", testMailbox},
		{"MailboxExpiry", testMailboxExpiry},
		{"MailboxTakeConcurrent", testMailboxTakeConcurrent},
		{"StoreKeys", testStoreKeys},
		{"TakeBundle", testTakeBundle},
		{"TakeBundleMissingKeys", testTakeBundleMissingKeys},
		{"TakeBundleConcurrent", testTakeBundleConcurrent},
		{"Enqueue", testEnqueue},
		{"EnqueueDuplicate", testEnqueueDuplicate},
		{"SendUsed", testSendUsed},
		{"EnqueueQueueFull", testEnqueueQueueFull},
		{"EnqueueRemovedDevice", testEnqueueRemovedDevice},
		{"EnqueueConcurrent", testEnqueueConcurrent},
		{"EnqueueConcurrentFailures", testEnqueueConcurrentFailures},
		{"QueuePaging", testQueuePaging},
		{"Ack", testAck},
		{"AckMany", testAckMany},
		{"EnqueueMany", testEnqueueMany},
		{"EnqueueDuplicateFirst", testEnqueueDuplicateFirst},
		{"LookupMany", testLookupMany},
		{"Expire", testExpire},
		{"UnidentifiedAccess", testUnidentifiedAccess},
		{"LastSeenDay", testLastSeenDay},
		{"SealedSend", testSealedSend},
		{"DeleteAccount", testDeleteAccount},
		{"DeleteAccountLeavesNothing", testDeleteAccountLeavesNothing},
		{"PendingUpdates", testPendingUpdates},
		{"AppendEpoch", testAppendEpoch},
		{"AppendEpochConcurrent", testAppendEpochConcurrent},
		{"Cosignatures", testCosignatures},
		{"Reports", testReports},
		{"ReportsOutliveAccounts", testReportsOutliveAccounts},
		{"ExpireReports", testExpireReports},
		{"ReportCount", testReportCount},
		{"LegalRequests", testLegalRequests},
		{"LegalNonceConcurrent", testLegalNonceConcurrent},
		{"TransparencyReports", testTransparencyReports},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// t0 is the creation time of the fixtures.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// key returns distinct fake key bytes for a kind of key and an id.
func key(kind string, id uint32, size int) []byte {
	b := make([]byte, size)
	copy(b, fmt.Sprintf("%s-%d-", kind, id))
	return b
}

// keys returns an upload with a signed prekey, a last-resort Kyber prekey,
// one-time prekeys 1..pre and one-time Kyber prekeys 101..100+kyber.
func keys(pre, kyber int) *store.KeyUpload {
	k := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: key("spk", 1, 33), Signature: key("spk-sig", 1, 64)},
		LastResort:   &store.KyberPreKey{ID: 1000, PublicKey: key("lr", 1000, 1569), Signature: key("lr-sig", 1000, 64)},
	}
	for i := 1; i <= pre; i++ {
		k.PreKeys = append(k.PreKeys, store.PreKey{ID: uint32(i), PublicKey: key("pk", uint32(i), 33)})
	}
	for i := 101; i <= 100+kyber; i++ {
		k.KyberPreKeys = append(k.KyberPreKeys, store.KyberPreKey{ID: uint32(i), PublicKey: key("kpk", uint32(i), 1569), Signature: key("kpk-sig", uint32(i), 64)})
	}
	return k
}

// register creates an account named username with device 1 holding k.
func register(t *testing.T, s store.Store, username string, k *store.KeyUpload) (*store.Account, *store.Device) {
	t.Helper()
	a, d := newAccount(username)
	if err := s.CreateAccount(t.Context(), a, d, k, firstList(), nil); err != nil {
		t.Fatalf("CreateAccount(%q): %v", username, err)
	}
	return a, d
}

func newAccount(username string) (*store.Account, *store.Device) {
	id := newUUID()
	a := &store.Account{ID: id, Username: username, IdentityKey: key("ik-"+id, 0, 33), Created: t0}
	d := &store.Device{AccountID: id, ID: 1, RegistrationID: 4242, CredentialHash: key("cred-"+id, 1, 32), Created: t0}
	return a, d
}

// addr is a device's address.
type addr struct {
	account string
	device  uint32
}

func addrOf(d *store.Device) addr { return addr{d.AccountID, d.ID} }

// send returns a send from "from" with one envelope for each of to.
func send(from addr, content string, ts time.Time, to ...addr) *store.Send {
	s := &store.Send{SourceAccount: from.account, SourceDevice: from.device, SendID: newUUID()}
	for _, a := range to {
		s.Envelopes = append(s.Envelopes, store.Envelope{
			ID:              newUUID(),
			AccountID:       a.account,
			DeviceID:        a.device,
			Type:            3,
			SourceAccount:   from.account,
			SourceDevice:    from.device,
			ClientTimestamp: ts.Add(-time.Second),
			ServerTimestamp: ts,
			Content:         []byte(content),
			Franking:        frankingOf(content),
		})
	}
	return s
}

// frankingOf is a fake 32-byte franking commitment for a content.
func frankingOf(content string) []byte { return key("franking-"+content, 0, 32) }

func queue(t *testing.T, s store.Store, a addr) []store.Envelope {
	t.Helper()
	envs, err := s.Queue(t.Context(), a.account, a.device, 0, 1<<20)
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}
	return envs
}

func queueLen(t *testing.T, s store.Store, a addr) int {
	t.Helper()
	n, err := s.QueueLen(t.Context(), a.account, a.device)
	if err != nil {
		t.Fatalf("QueueLen: %v", err)
	}
	return n
}

func contents(envs []store.Envelope) []string {
	var cs []string
	for _, e := range envs {
		cs = append(cs, string(e.Content))
	}
	return cs
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// ---- Accounts ----

func testCreateAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, d := newAccount("alice")
	must(t, "CreateAccount", s.CreateAccount(ctx, a, d, keys(3, 2), firstList(), nil))

	for name, get := range map[string]func() (*store.Account, error){
		"AccountByUsername": func() (*store.Account, error) { return s.AccountByUsername(ctx, "alice") },
		"AccountByID":       func() (*store.Account, error) { return s.AccountByID(ctx, a.ID) },
	} {
		got, err := get()
		must(t, name, err)
		if got.ID != a.ID || got.Username != a.Username || !slices.Equal(got.IdentityKey, a.IdentityKey) || !got.Created.Equal(a.Created) {
			t.Errorf("%s = %+v, want %+v", name, got, a)
		}
	}

	gd, err := s.Device(ctx, a.ID, 1)
	must(t, "Device", err)
	if gd.AccountID != a.ID || gd.ID != 1 || gd.RegistrationID != d.RegistrationID ||
		!slices.Equal(gd.CredentialHash, d.CredentialHash) || !gd.Created.Equal(d.Created) {
		t.Errorf("Device = %+v, want %+v", gd, d)
	}
	ds, err := s.Devices(ctx, a.ID)
	must(t, "Devices", err)
	if len(ds) != 1 || ds[0].ID != 1 || ds[0].RegistrationID != d.RegistrationID {
		t.Errorf("Devices = %+v, want just device 1", ds)
	}

	// The keys went in with the account.
	c, err := s.KeyCounts(ctx, a.ID, 1)
	must(t, "KeyCounts", err)
	if c != (store.KeyCounts{PreKeys: 3, KyberPreKeys: 2}) {
		t.Errorf("KeyCounts = %+v, want 3 and 2", c)
	}
	b, err := s.TakeBundle(ctx, a.ID, 1)
	must(t, "TakeBundle", err)
	if k := keys(0, 0); b.SignedPreKey.ID != k.SignedPreKey.ID || !slices.Equal(b.SignedPreKey.PublicKey, k.SignedPreKey.PublicKey) ||
		!slices.Equal(b.SignedPreKey.Signature, k.SignedPreKey.Signature) {
		t.Errorf("bundle's signed prekey = %+v, want %+v", b.SignedPreKey, k.SignedPreKey)
	}

	// A second account is independent of the first.
	b2, d2 := newAccount("bob")
	must(t, "CreateAccount(bob)", s.CreateAccount(ctx, b2, d2, keys(1, 1), firstList(), nil))
	got, err := s.AccountByUsername(ctx, "bob")
	must(t, "AccountByUsername(bob)", err)
	if got.ID != b2.ID {
		t.Errorf("AccountByUsername(bob).ID = %s, want %s", got.ID, b2.ID)
	}
	if got, err := s.AccountByUsername(ctx, "alice"); err != nil || got.ID != a.ID {
		t.Errorf("AccountByUsername(alice) = %v, %v after creating bob", got, err)
	}
}

func testUsernameTaken(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))

	inv := &store.Invite{CodeHash: key("invite", 1, 32), Created: t0, Expires: t0.Add(time.Hour)}
	must(t, "CreateInvite", s.CreateInvite(ctx, inv))

	a2, d2 := newAccount("alice")
	wantErr(t, "CreateAccount(alice again)", s.CreateAccount(ctx, a2, d2, keys(1, 1), firstList(), inv.CodeHash), store.ErrUsernameTaken)

	// Nothing of the refused account was created, and the invite it carried
	// was not consumed.
	_, err := s.AccountByID(ctx, a2.ID)
	wantErr(t, "AccountByID(refused)", err, store.ErrNotFound)
	_, err = s.Device(ctx, a2.ID, 1)
	wantErr(t, "Device(refused)", err, store.ErrNotFound)
	_, err = s.KeyCounts(ctx, a2.ID, 1)
	wantErr(t, "KeyCounts(refused)", err, store.ErrNotFound)
	if got, err := s.AccountByUsername(ctx, "alice"); err != nil || got.ID != a.ID {
		t.Fatalf("AccountByUsername(alice) = %v, %v; want the first account", got, err)
	}
	a3, d3 := newAccount("carol")
	must(t, "CreateAccount(carol) with the invite the refused account carried", s.CreateAccount(ctx, a3, d3, nil, firstList(), inv.CodeHash))
}

func testInvites(t *testing.T, s store.Store) {
	ctx := t.Context()
	valid := &store.Invite{CodeHash: key("invite", 1, 32), Created: t0, Expires: t0.Add(time.Hour)}
	expired := &store.Invite{CodeHash: key("invite", 2, 32), Created: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour)}
	must(t, "CreateInvite", s.CreateInvite(ctx, valid))
	must(t, "CreateInvite", s.CreateInvite(ctx, expired))

	refused := func(name string, hash []byte, created time.Time) {
		t.Helper()
		a, d := newAccount(name)
		a.Created, d.Created = created, created
		wantErr(t, "CreateAccount("+name+")", s.CreateAccount(ctx, a, d, keys(1, 1), firstList(), hash), store.ErrInvalidInvite)
		_, err := s.AccountByUsername(ctx, name)
		wantErr(t, "AccountByUsername("+name+")", err, store.ErrNotFound)
		_, err = s.AccountByID(ctx, a.ID)
		wantErr(t, "AccountByID("+name+")", err, store.ErrNotFound)
		_, err = s.Device(ctx, a.ID, 1)
		wantErr(t, "Device("+name+")", err, store.ErrNotFound)
	}

	refused("unknown", key("invite", 3, 32), t0)
	refused("expired", expired.CodeHash, t0)
	// Expiry is judged at the account's creation time: the valid invite is
	// expired for an account created after its Expires.
	refused("late", valid.CodeHash, valid.Expires.Add(time.Millisecond))

	// The valid invite survived the refusals above; it works once.
	a, d := newAccount("first")
	a.Created = valid.Expires.Add(-time.Millisecond)
	must(t, "CreateAccount with a valid invite", s.CreateAccount(ctx, a, d, keys(1, 1), firstList(), valid.CodeHash))
	if _, err := s.AccountByUsername(ctx, "first"); err != nil {
		t.Fatalf("AccountByUsername(first): %v", err)
	}
	refused("second", valid.CodeHash, t0)

	// Without an invite hash no invite is needed.
	register(t, s, "noinvite", keys(1, 1))
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))

	_, err := s.AccountByUsername(ctx, "nobody")
	wantErr(t, "AccountByUsername", err, store.ErrNotFound)
	_, err = s.AccountByID(ctx, newUUID())
	wantErr(t, "AccountByID", err, store.ErrNotFound)
	_, err = s.Device(ctx, a.ID, 2)
	wantErr(t, "Device(2)", err, store.ErrNotFound)
	_, err = s.Device(ctx, newUUID(), 1)
	wantErr(t, "Device(unknown account)", err, store.ErrNotFound)
	ds, err := s.Devices(ctx, newUUID())
	if err != nil || len(ds) != 0 {
		t.Errorf("Devices(unknown account) = %v, %v; want none, nil", ds, err)
	}
	wantErr(t, "StoreKeys", s.StoreKeys(ctx, a.ID, 2, keys(1, 1)), store.ErrNotFound)
	_, err = s.TakeBundle(ctx, a.ID, 2)
	wantErr(t, "TakeBundle", err, store.ErrNotFound)
	_, err = s.KeyCounts(ctx, a.ID, 2)
	wantErr(t, "KeyCounts", err, store.ErrNotFound)
	wantErr(t, "RemoveDevice", s.RemoveDevice(ctx, a.ID, 2, nextList(t, s, a.ID)), store.ErrNotFound)
	wantErr(t, "Ack", s.Ack(ctx, a.ID, 1, newUUID()), store.ErrNotFound)
}

func testRemoveDevice(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, d := register(t, s, "alice", keys(5, 5))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(d), addrOf(db)

	must(t, "Enqueue", s.Enqueue(ctx, send(bob, "one", t0, alice, bob), 100))
	must(t, "Enqueue", s.Enqueue(ctx, send(bob, "two", t0, alice), 100))

	must(t, "RemoveDevice", s.RemoveDevice(ctx, a.ID, 1, nextList(t, s, a.ID)))

	_, err := s.Device(ctx, a.ID, 1)
	wantErr(t, "Device", err, store.ErrNotFound)
	ds, err := s.Devices(ctx, a.ID)
	if err != nil || len(ds) != 0 {
		t.Errorf("Devices = %v, %v; want none", ds, err)
	}
	// Its keys are gone.
	_, err = s.KeyCounts(ctx, a.ID, 1)
	wantErr(t, "KeyCounts", err, store.ErrNotFound)
	_, err = s.TakeBundle(ctx, a.ID, 1)
	wantErr(t, "TakeBundle", err, store.ErrNotFound)
	wantErr(t, "StoreKeys", s.StoreKeys(ctx, a.ID, 1, keys(1, 1)), store.ErrNotFound)
	// Its queue is gone.
	if n, err := s.QueueLen(ctx, a.ID, 1); err != nil && !errors.Is(err, store.ErrNotFound) || n != 0 {
		t.Errorf("QueueLen = %d, %v; want 0", n, err)
	}
	if envs, err := s.Queue(ctx, a.ID, 1, 0, 100); err != nil && !errors.Is(err, store.ErrNotFound) || len(envs) != 0 {
		t.Errorf("Queue = %d envelopes, %v; want none", len(envs), err)
	}
	wantErr(t, "Enqueue to it", s.Enqueue(ctx, send(bob, "three", t0, alice), 100), store.ErrNotFound)
	wantErr(t, "RemoveDevice again", s.RemoveDevice(ctx, a.ID, 1, nextList(t, s, a.ID)), store.ErrNotFound)

	// The account, and other devices' queues, stay.
	if _, err := s.AccountByID(ctx, a.ID); err != nil {
		t.Errorf("AccountByID after RemoveDevice: %v", err)
	}
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"one"}) {
		t.Errorf("bob's queue = %q, want [one]", got)
	}
}

// ---- Keys ----

// drain takes bundles until the one-time keys are gone, and returns the
// prekey and one-time Kyber prekey ids handed out, in order.
func drain(t *testing.T, s store.Store, a addr) (pre, kyber []uint32) {
	t.Helper()
	for {
		b, err := s.TakeBundle(t.Context(), a.account, a.device)
		must(t, "TakeBundle", err)
		if b.PreKey != nil {
			pre = append(pre, b.PreKey.ID)
		}
		if !b.KyberLastResort {
			kyber = append(kyber, b.KyberPreKey.ID)
		}
		if b.PreKey == nil && b.KyberLastResort {
			return pre, kyber
		}
	}
}

func sorted(ids []uint32) []uint32 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

func testStoreKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, d := register(t, s, "alice", keys(3, 2))
	alice := addrOf(d)

	// One-time keys are added; one with an id already held replaces it.
	up := &store.KeyUpload{
		PreKeys: []store.PreKey{
			{ID: 2, PublicKey: key("pk-new", 2, 33)},
			{ID: 4, PublicKey: key("pk", 4, 33)},
			{ID: 5, PublicKey: key("pk", 5, 33)},
		},
		KyberPreKeys: []store.KyberPreKey{
			{ID: 101, PublicKey: key("kpk-new", 101, 1569), Signature: key("kpk-sig-new", 101, 64)},
			{ID: 103, PublicKey: key("kpk", 103, 1569), Signature: key("kpk-sig", 103, 64)},
		},
	}
	must(t, "StoreKeys", s.StoreKeys(ctx, alice.account, alice.device, up))
	c, err := s.KeyCounts(ctx, alice.account, alice.device)
	must(t, "KeyCounts", err)
	if c != (store.KeyCounts{PreKeys: 5, KyberPreKeys: 3}) {
		t.Fatalf("KeyCounts = %+v, want 5 and 3", c)
	}

	// A new signed prekey and last-resort key replace the old ones; an
	// upload without them keeps what is held.
	spk := &store.SignedPreKey{ID: 2, PublicKey: key("spk", 2, 33), Signature: key("spk-sig", 2, 64)}
	lr := &store.KyberPreKey{ID: 2000, PublicKey: key("lr", 2000, 1569), Signature: key("lr-sig", 2000, 64)}
	must(t, "StoreKeys", s.StoreKeys(ctx, alice.account, alice.device, &store.KeyUpload{SignedPreKey: spk, LastResort: lr}))
	must(t, "StoreKeys(empty)", s.StoreKeys(ctx, alice.account, alice.device, &store.KeyUpload{}))

	pres := map[uint32][]byte{}
	kybers := map[uint32]store.KyberPreKey{}
	for {
		b, err := s.TakeBundle(ctx, alice.account, alice.device)
		must(t, "TakeBundle", err)
		if b.SignedPreKey.ID != spk.ID || !slices.Equal(b.SignedPreKey.PublicKey, spk.PublicKey) || !slices.Equal(b.SignedPreKey.Signature, spk.Signature) {
			t.Fatalf("bundle's signed prekey = %d, want the replacement %d", b.SignedPreKey.ID, spk.ID)
		}
		if b.PreKey != nil {
			pres[b.PreKey.ID] = b.PreKey.PublicKey
		}
		if b.KyberLastResort {
			if b.KyberPreKey.ID != lr.ID || !slices.Equal(b.KyberPreKey.PublicKey, lr.PublicKey) || !slices.Equal(b.KyberPreKey.Signature, lr.Signature) {
				t.Fatalf("last-resort key = %d, want the replacement %d", b.KyberPreKey.ID, lr.ID)
			}
			if b.PreKey == nil {
				break
			}
		} else {
			kybers[b.KyberPreKey.ID] = b.KyberPreKey
		}
	}
	if len(pres) != 5 || len(kybers) != 3 {
		t.Fatalf("handed out %d prekeys and %d Kyber prekeys, want 5 and 3", len(pres), len(kybers))
	}
	for id := uint32(1); id <= 5; id++ {
		want := key("pk", id, 33)
		if id == 2 {
			want = key("pk-new", 2, 33)
		}
		if !slices.Equal(pres[id], want) {
			t.Errorf("prekey %d is not the latest uploaded", id)
		}
	}
	for _, id := range []uint32{101, 102, 103} {
		want := key("kpk", id, 1569)
		sig := key("kpk-sig", id, 64)
		if id == 101 {
			want, sig = key("kpk-new", 101, 1569), key("kpk-sig-new", 101, 64)
		}
		if got := kybers[id]; !slices.Equal(got.PublicKey, want) || !slices.Equal(got.Signature, sig) {
			t.Errorf("Kyber prekey %d is not the latest uploaded", id)
		}
	}
}

func testTakeBundle(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, d := register(t, s, "alice", keys(4, 2))
	alice := addrOf(d)

	b, err := s.TakeBundle(ctx, alice.account, alice.device)
	must(t, "TakeBundle", err)
	if b.DeviceID != d.ID || b.RegistrationID != d.RegistrationID {
		t.Errorf("bundle is for device %d registration %d, want %d %d", b.DeviceID, b.RegistrationID, d.ID, d.RegistrationID)
	}
	if b.PreKey == nil || !slices.Equal(b.PreKey.PublicKey, key("pk", b.PreKey.ID, 33)) {
		t.Fatalf("bundle's prekey = %+v, want one of those uploaded", b.PreKey)
	}
	if b.KyberLastResort || !slices.Equal(b.KyberPreKey.PublicKey, key("kpk", b.KyberPreKey.ID, 1569)) ||
		!slices.Equal(b.KyberPreKey.Signature, key("kpk-sig", b.KyberPreKey.ID, 64)) {
		t.Fatalf("bundle's Kyber prekey = %d (last resort %v), want a one-time key", b.KyberPreKey.ID, b.KyberLastResort)
	}
	c, err := s.KeyCounts(ctx, alice.account, alice.device)
	must(t, "KeyCounts", err)
	if c != (store.KeyCounts{PreKeys: 3, KyberPreKeys: 1}) {
		t.Fatalf("KeyCounts after one bundle = %+v, want 3 and 1", c)
	}

	pre, kyber := drain(t, s, alice)
	pre = append(pre, b.PreKey.ID)
	kyber = append(kyber, b.KyberPreKey.ID)
	if got := sorted(pre); !slices.Equal(got, []uint32{1, 2, 3, 4}) {
		t.Errorf("prekeys handed out: %v, want each of 1..4 once", got)
	}
	if got := sorted(kyber); !slices.Equal(got, []uint32{101, 102}) {
		t.Errorf("Kyber prekeys handed out: %v, want each of 101, 102 once", got)
	}
	c, err = s.KeyCounts(ctx, alice.account, alice.device)
	must(t, "KeyCounts", err)
	if c != (store.KeyCounts{}) {
		t.Fatalf("KeyCounts after draining = %+v, want zero", c)
	}

	// With the one-time keys gone, every bundle has no prekey and the
	// last-resort Kyber key, which is never deleted.
	lr := keys(0, 0).LastResort
	for range 3 {
		b, err := s.TakeBundle(ctx, alice.account, alice.device)
		must(t, "TakeBundle", err)
		if b.PreKey != nil {
			t.Errorf("bundle has prekey %d after they ran out", b.PreKey.ID)
		}
		if !b.KyberLastResort || b.KyberPreKey.ID != lr.ID || !slices.Equal(b.KyberPreKey.PublicKey, lr.PublicKey) || !slices.Equal(b.KyberPreKey.Signature, lr.Signature) {
			t.Errorf("bundle's Kyber prekey = %d (last resort %v), want the last-resort key %d", b.KyberPreKey.ID, b.KyberLastResort, lr.ID)
		}
		if b.SignedPreKey.ID != 1 {
			t.Errorf("bundle's signed prekey = %d, want 1", b.SignedPreKey.ID)
		}
	}

	// A refill is handed out again.
	must(t, "StoreKeys", s.StoreKeys(ctx, alice.account, alice.device, &store.KeyUpload{
		PreKeys:      []store.PreKey{{ID: 9, PublicKey: key("pk", 9, 33)}},
		KyberPreKeys: []store.KyberPreKey{{ID: 109, PublicKey: key("kpk", 109, 1569), Signature: key("kpk-sig", 109, 64)}},
	}))
	b, err = s.TakeBundle(ctx, alice.account, alice.device)
	must(t, "TakeBundle", err)
	if b.PreKey == nil || b.PreKey.ID != 9 || b.KyberLastResort || b.KyberPreKey.ID != 109 {
		t.Errorf("bundle after refill: prekey %+v, Kyber %d (last resort %v); want 9 and 109", b.PreKey, b.KyberPreKey.ID, b.KyberLastResort)
	}
}

func testTakeBundleMissingKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Keys without a signed prekey.
	k := keys(2, 2)
	k.SignedPreKey = nil
	a, _ := register(t, s, "alice", k)
	_, err := s.TakeBundle(ctx, a.ID, 1)
	wantErr(t, "TakeBundle without a signed prekey", err, store.ErrNoSignedPreKey)

	// Keys without any Kyber prekey.
	k = keys(2, 0)
	k.LastResort = nil
	b, _ := register(t, s, "bob", k)
	_, err = s.TakeBundle(ctx, b.ID, 1)
	wantErr(t, "TakeBundle without a Kyber prekey", err, store.ErrNoKyberPreKey)

	// A refused TakeBundle takes nothing.
	for _, id := range []string{a.ID, b.ID} {
		c, err := s.KeyCounts(ctx, id, 1)
		must(t, "KeyCounts", err)
		if c.PreKeys != 2 {
			t.Errorf("refused TakeBundle left %d prekeys, want 2", c.PreKeys)
		}
	}
	if c, _ := s.KeyCounts(ctx, a.ID, 1); c.KyberPreKeys != 2 {
		t.Errorf("refused TakeBundle left %d Kyber prekeys, want 2", c.KyberPreKeys)
	}
}

func testTakeBundleConcurrent(t *testing.T, s store.Store) {
	const (
		takers   = 32
		preKeys  = 20
		kyberPre = 20
	)
	_, d := register(t, s, "alice", keys(preKeys, kyberPre))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pre     = map[uint32]int{}
		kyber   = map[uint32]int{}
		noPre   int
		lastRes int
		errs    []error
	)
	start := make(chan struct{})
	for range takers {
		wg.Go(func() {
			<-start
			b, err := s.TakeBundle(t.Context(), d.AccountID, d.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if b.PreKey == nil {
				noPre++
			} else {
				pre[b.PreKey.ID]++
			}
			if b.KyberLastResort {
				lastRes++
			} else {
				kyber[b.KyberPreKey.ID]++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("TakeBundle: %v", errs)
	}
	for id, n := range pre {
		if n != 1 {
			t.Errorf("prekey %d handed out %d times", id, n)
		}
	}
	for id, n := range kyber {
		if n != 1 {
			t.Errorf("Kyber prekey %d handed out %d times", id, n)
		}
	}
	if len(pre) != preKeys || noPre != takers-preKeys {
		t.Errorf("%d prekeys handed out and %d bundles without, want %d and %d", len(pre), noPre, preKeys, takers-preKeys)
	}
	if len(kyber) != kyberPre || lastRes != takers-kyberPre {
		t.Errorf("%d one-time Kyber prekeys handed out and %d last-resort, want %d and %d", len(kyber), lastRes, kyberPre, takers-kyberPre)
	}
	c, err := s.KeyCounts(t.Context(), d.AccountID, d.ID)
	must(t, "KeyCounts", err)
	if c != (store.KeyCounts{}) {
		t.Errorf("KeyCounts = %+v, want zero", c)
	}
}

// ---- Messages ----

func testEnqueue(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	alice, bob, carol := addrOf(da), addrOf(db), addrOf(dc)

	s1 := send(alice, "hello", t0, bob, carol)
	must(t, "Enqueue", s.Enqueue(ctx, s1, 10))
	s2 := send(alice, "again", t0.Add(time.Second), bob)
	must(t, "Enqueue", s.Enqueue(ctx, s2, 10))
	if s1.Envelopes[0].Seq <= 0 || s2.Envelopes[0].Seq <= s1.Envelopes[0].Seq {
		t.Errorf("bob's seqs = %d then %d, want positive and increasing", s1.Envelopes[0].Seq, s2.Envelopes[0].Seq)
	}

	got := queue(t, s, bob)
	want := []store.Envelope{s1.Envelopes[0], s2.Envelopes[0]}
	if len(got) != len(want) {
		t.Fatalf("bob's queue has %d envelopes, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.ID != w.ID || g.AccountID != w.AccountID || g.DeviceID != w.DeviceID || g.Type != w.Type ||
			g.SourceAccount != w.SourceAccount || g.SourceDevice != w.SourceDevice ||
			!g.ClientTimestamp.Equal(w.ClientTimestamp) || !g.ServerTimestamp.Equal(w.ServerTimestamp) ||
			!slices.Equal(g.Content, w.Content) || len(g.Franking) != 32 || !slices.Equal(g.Franking, w.Franking) {
			t.Errorf("queued envelope %d = %+v, want %+v", i, g, w)
		}
	}
	if got := queue(t, s, carol); len(got) != 1 || got[0].ID != s1.Envelopes[1].ID || got[0].Seq != s1.Envelopes[1].Seq {
		t.Errorf("carol's queue = %+v, want the one envelope enqueued for her", got)
	}
	if n := queueLen(t, s, bob); n != 2 {
		t.Errorf("QueueLen(bob) = %d, want 2", n)
	}
	if n := queueLen(t, s, alice); n != 0 {
		t.Errorf("QueueLen(alice) = %d, want 0", n)
	}

	// A sealed-sender envelope carries no source, nor does its Send.
	sealed := sealedSend(bob.account, "sealed", t0, bob)
	must(t, "Enqueue(sealed)", s.Enqueue(ctx, sealed, 10))
	if got := queue(t, s, bob); len(got) != 3 || got[2].SourceAccount != "" || got[2].SourceDevice != 0 ||
		!slices.Equal(got[2].Franking, frankingOf("sealed")) {
		t.Errorf("queue after a sealed-sender envelope = %+v, want it last with no source and its commitment", got)
	}
}

func testEnqueueDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)

	s1 := send(alice, "one", t0, bob)
	must(t, "Enqueue", s.Enqueue(ctx, s1, 10))

	// The same send id from the same device is refused and stores nothing,
	// even with other envelopes.
	again := send(alice, "retry", t0, bob)
	again.SendID = s1.SendID
	wantErr(t, "Enqueue(same send id)", s.Enqueue(ctx, again, 10), store.ErrDuplicate)
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"one"}) {
		t.Errorf("bob's queue after duplicate = %q, want [one]", got)
	}

	// Another device of the same account, and another account, may use it.
	other := send(addr{a.ID, 2}, "other device", t0, bob)
	other.SendID = s1.SendID
	must(t, "Enqueue(same send id, other device)", s.Enqueue(ctx, other, 10))
	fromBob := send(bob, "other account", t0, alice)
	fromBob.SendID = s1.SendID
	must(t, "Enqueue(same send id, other account)", s.Enqueue(ctx, fromBob, 10))
	if n := queueLen(t, s, bob); n != 2 {
		t.Errorf("QueueLen(bob) = %d, want 2", n)
	}
}

func testSendUsed(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)
	used := func(what string, from addr, id string, want bool) {
		t.Helper()
		got, err := s.SendUsed(ctx, from.account, from.device, id)
		must(t, "SendUsed("+what+")", err)
		if got != want {
			t.Errorf("SendUsed(%s) = %v, want %v", what, got, want)
		}
	}

	s1 := send(alice, "one", t0, bob)
	used("before Enqueue", alice, s1.SendID, false)
	must(t, "Enqueue", s.Enqueue(ctx, s1, 10))
	used("after Enqueue", alice, s1.SendID, true)
	// Only for the device and account that used it.
	used("other device", addr{a.ID, 2}, s1.SendID, false)
	used("other account", bob, s1.SendID, false)
	used("other send id", alice, newUUID(), false)
	// A send id used by a refused Enqueue is not recorded.
	failed := send(alice, "to nobody", t0, addr{newUUID(), 1})
	wantErr(t, "Enqueue to an unknown account", s.Enqueue(ctx, failed, 10), store.ErrNotFound)
	used("after a refused Enqueue", alice, failed.SendID, false)
	// SendUsed only reads: the send id is still free to use.
	must(t, "Enqueue after SendUsed", s.Enqueue(ctx, send(alice, "two", t0, bob), 10))

	// Expire forgets it with the other send ids.
	_, err := s.Expire(ctx, t0.Add(time.Hour))
	must(t, "Expire", err)
	used("after Expire", alice, s1.SendID, false)
}

func testEnqueueQueueFull(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	alice, bob, carol := addrOf(da), addrOf(db), addrOf(dc)
	const max = 3

	for i := range max {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint(i), t0, bob), max))
	}
	full := send(alice, "full", t0, carol, bob)
	wantErr(t, "Enqueue to a full queue", s.Enqueue(ctx, full, max), store.ErrQueueFull)
	if n := queueLen(t, s, bob); n != max {
		t.Errorf("QueueLen(bob) = %d, want %d", n, max)
	}
	if n := queueLen(t, s, carol); n != 0 {
		t.Errorf("QueueLen(carol) = %d after a refused send, want 0 (all or nothing)", n)
	}

	// A larger limit admits it; the refused attempt did not record its
	// send id.
	must(t, "Enqueue with room", s.Enqueue(ctx, full, max+1))
	if n := queueLen(t, s, carol); n != 1 {
		t.Errorf("QueueLen(carol) = %d, want 1", n)
	}

	// Acknowledging makes room.
	wantErr(t, "Enqueue to a full queue", s.Enqueue(ctx, send(alice, "more", t0, bob), max+1), store.ErrQueueFull)
	envs := queue(t, s, bob)
	must(t, "Ack", s.Ack(ctx, bob.account, bob.device, envs[0].ID))
	must(t, "Enqueue after Ack", s.Enqueue(ctx, send(alice, "more", t0, bob), max+1))
}

func testEnqueueRemovedDevice(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	alice, bob, carol := addrOf(da), addrOf(db), addrOf(dc)

	must(t, "RemoveDevice", s.RemoveDevice(ctx, carol.account, carol.device, nextList(t, s, carol.account)))
	sn := send(alice, "x", t0, bob, carol)
	wantErr(t, "Enqueue to a removed device", s.Enqueue(ctx, sn, 10), store.ErrNotFound)
	wantErr(t, "Enqueue to an unknown account", s.Enqueue(ctx, send(alice, "y", t0, bob, addr{newUUID(), 1}), 10), store.ErrNotFound)
	if n := queueLen(t, s, bob); n != 0 {
		t.Errorf("QueueLen(bob) = %d after refused sends, want 0 (all or nothing)", n)
	}
	// The refused send did not record its send id.
	sn.Envelopes = sn.Envelopes[:1]
	must(t, "Enqueue without the removed device", s.Enqueue(ctx, sn, 10))
}

func testEnqueueConcurrent(t *testing.T, s store.Store) {
	const (
		senders = 16
		sends   = 20
	)
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	bob, carol := addrOf(db), addrOf(dc)
	from := make([]addr, senders)
	for i := range from {
		_, d := register(t, s, fmt.Sprintf("sender%d", i), nil)
		from[i] = addrOf(d)
	}

	var wg sync.WaitGroup
	errs := make(chan error, senders*sends)
	seqs := make([][]int64, senders) // seqs[i]: bob's seqs of sender i's sends
	start := make(chan struct{})
	for i := range senders {
		wg.Go(func() {
			<-start
			for j := range sends {
				sn := send(from[i], fmt.Sprintf("%d/%d", i, j), t0, bob, carol)
				if err := s.Enqueue(t.Context(), sn, senders*sends); err != nil {
					errs <- err
					return
				}
				seqs[i] = append(seqs[i], sn.Envelopes[0].Seq)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Enqueue: %v", err)
	}

	for _, dev := range []addr{bob, carol} {
		envs := queue(t, s, dev)
		if len(envs) != senders*sends {
			t.Fatalf("queue has %d envelopes, want %d", len(envs), senders*sends)
		}
		next := make([]int, senders) // the next j expected from each sender
		for k, e := range envs {
			if k > 0 && e.Seq <= envs[k-1].Seq {
				t.Fatalf("queue out of Seq order at %d: %d after %d", k, e.Seq, envs[k-1].Seq)
			}
			var i, j int
			if _, err := fmt.Sscanf(string(e.Content), "%d/%d", &i, &j); err != nil {
				t.Fatalf("bad content %q", e.Content)
			}
			if j != next[i] {
				t.Fatalf("sender %d's message %d queued where %d was due", i, j, next[i])
			}
			next[i]++
			if dev == bob && seqs[i][j] != e.Seq {
				t.Fatalf("Enqueue set Seq %d, Queue says %d", seqs[i][j], e.Seq)
			}
		}
	}
}

// testEnqueueConcurrentFailures sends good and failing sends at once: each
// failing send fails alone, with its own error, and every good one lands.
func testEnqueueConcurrentFailures(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		max    = 20
		rounds = 8
	)
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, df := register(t, s, "full", keys(1, 1))
	_, dg := register(t, s, "gone", keys(1, 1))
	alice, bob, full, gone := addrOf(da), addrOf(db), addrOf(df), addrOf(dg)
	for i := range max {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint(i), t0, full), max))
	}
	used := send(alice, "used", t0, bob)
	must(t, "Enqueue", s.Enqueue(ctx, used, max))
	must(t, "RemoveDevice", s.RemoveDevice(ctx, gone.account, gone.device, nextList(t, s, gone.account)))

	type attempt struct {
		send *store.Send
		want error
	}
	var attempts []attempt
	var want []string
	for i := range rounds {
		good := send(alice, fmt.Sprint("good", i), t0, bob)
		want = append(want, fmt.Sprint("good", i))
		dup := send(alice, "dup", t0, bob)
		dup.SendID = used.SendID
		attempts = append(attempts,
			attempt{good, nil},
			attempt{send(alice, "full", t0, bob, full), store.ErrQueueFull},
			attempt{dup, store.ErrDuplicate},
			attempt{send(alice, "gone", t0, bob, gone), store.ErrNotFound},
		)
	}
	errs := make([]error, len(attempts))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, a := range attempts {
		wg.Go(func() {
			<-start
			errs[i] = s.Enqueue(ctx, a.send, max)
		})
	}
	close(start)
	wg.Wait()
	for i, a := range attempts {
		if a.want == nil && errs[i] != nil || a.want != nil && !errors.Is(errs[i], a.want) {
			t.Errorf("attempt %d: got %v, want %v", i, errs[i], a.want)
		}
	}
	got := contents(queue(t, s, bob))
	slices.Sort(got)
	want = append(want, "used")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("bob's queue = %q, want %q", got, want)
	}
	if n := queueLen(t, s, full); n != max {
		t.Errorf("QueueLen(full) = %d, want %d", n, max)
	}
}

func testQueuePaging(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)
	var want []string
	for i := range 10 {
		c := fmt.Sprint("m", i)
		want = append(want, c)
		must(t, "Enqueue", s.Enqueue(ctx, send(bob, "to alice", t0, alice), 100))
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, c, t0, bob), 100))
	}

	var got []string
	var after int64
	for page := 0; ; page++ {
		envs, err := s.Queue(ctx, bob.account, bob.device, after, 4)
		must(t, "Queue", err)
		if len(envs) > 4 {
			t.Fatalf("page of %d envelopes with limit 4", len(envs))
		}
		if len(envs) == 0 {
			break
		}
		if page == 0 && len(envs) != 4 {
			t.Fatalf("first page has %d envelopes, want 4", len(envs))
		}
		for _, e := range envs {
			if e.Seq <= after {
				t.Fatalf("Queue(after %d) returned seq %d", after, e.Seq)
			}
			if e.AccountID != bob.account || e.DeviceID != bob.device {
				t.Fatalf("bob's queue has an envelope for %s.%d", e.AccountID, e.DeviceID)
			}
			after = e.Seq
			got = append(got, string(e.Content))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged queue = %q, want %q", got, want)
	}

	// After the newest envelope of all is acknowledged, a new one still
	// sorts after it: paging from the last seq seen finds it.
	envs := queue(t, s, bob)
	last := envs[len(envs)-1]
	must(t, "Ack", s.Ack(ctx, bob.account, bob.device, last.ID))
	must(t, "Enqueue", s.Enqueue(ctx, send(alice, "new", t0, bob), 100))
	envs, err := s.Queue(ctx, bob.account, bob.device, last.Seq, 10)
	must(t, "Queue", err)
	if len(envs) != 1 || string(envs[0].Content) != "new" {
		t.Fatalf("Queue(after the acknowledged newest) = %q, want [new]", contents(envs))
	}
}

func testAck(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)
	for i := range 3 {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint("b", i), t0, bob), 100))
	}
	must(t, "Enqueue", s.Enqueue(ctx, send(bob, "a", t0, alice), 100))
	bobs, alices := queue(t, s, bob), queue(t, s, alice)

	must(t, "Ack", s.Ack(ctx, bob.account, bob.device, bobs[1].ID))
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"b0", "b2"}) {
		t.Errorf("bob's queue after Ack = %q, want [b0 b2]", got)
	}
	if n := queueLen(t, s, bob); n != 2 {
		t.Errorf("QueueLen(bob) = %d, want 2", n)
	}
	wantErr(t, "Ack again", s.Ack(ctx, bob.account, bob.device, bobs[1].ID), store.ErrNotFound)
	wantErr(t, "Ack of another device's envelope", s.Ack(ctx, bob.account, bob.device, alices[0].ID), store.ErrNotFound)
	wantErr(t, "Ack of an unknown id", s.Ack(ctx, bob.account, bob.device, newUUID()), store.ErrNotFound)
	if got := queue(t, s, alice); len(got) != 1 || got[0].ID != alices[0].ID {
		t.Errorf("alice's queue = %q after bob acknowledged her envelope's id, want it unchanged", contents(got))
	}
	if n := queueLen(t, s, bob); n != 2 {
		t.Errorf("QueueLen(bob) = %d after refused Acks, want 2", n)
	}
}

func testExpire(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)
	now := time.Now().Truncate(time.Millisecond)

	old := send(alice, "old", now.Add(-2*time.Hour), bob, alice)
	older := send(alice, "older", now.Add(-3*time.Hour), bob)
	fresh := send(alice, "fresh", now, bob)
	for _, sn := range []*store.Send{older, old, fresh} {
		must(t, "Enqueue", s.Enqueue(ctx, sn, 100))
	}

	n, err := s.Expire(ctx, now.Add(-time.Hour))
	must(t, "Expire", err)
	if n != 3 {
		t.Errorf("Expire deleted %d envelopes, want 3", n)
	}
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"fresh"}) {
		t.Errorf("bob's queue after Expire = %q, want [fresh]", got)
	}
	if n := queueLen(t, s, alice); n != 0 {
		t.Errorf("QueueLen(alice) after Expire = %d, want 0", n)
	}
	// A send id recorded after the cutoff is kept.
	wantErr(t, "Enqueue(fresh again)", s.Enqueue(ctx, fresh, 100), store.ErrDuplicate)

	n, err = s.Expire(ctx, now.Add(-time.Hour))
	must(t, "Expire again", err)
	if n != 0 {
		t.Errorf("second Expire deleted %d envelopes, want 0", n)
	}

	// With a cutoff after every send, every send id is forgotten: the
	// same send is accepted again.
	n, err = s.Expire(ctx, time.Now().Add(time.Hour))
	must(t, "Expire", err)
	if n != 1 {
		t.Errorf("Expire deleted %d envelopes, want 1", n)
	}
	fresh.Envelopes[0].ServerTimestamp = time.Now().Truncate(time.Millisecond)
	must(t, "Enqueue(fresh) after its send id expired", s.Enqueue(ctx, fresh, 100))
	if n := queueLen(t, s, bob); n != 1 {
		t.Errorf("QueueLen(bob) = %d, want 1", n)
	}
}

func testClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, d := register(t, s, "alice", keys(1, 1))
	alice := addrOf(d)
	must(t, "Close", s.Close())

	a2, d2 := newAccount("bob")
	checks := map[string]error{
		"Close":                 s.Close(),
		"CreateAccount":         s.CreateAccount(ctx, a2, d2, nil, firstList(), nil),
		"RemoveDevice":          s.RemoveDevice(ctx, a.ID, 1, &store.DeviceList{Version: 2, Signed: key("list", 2, 64)}),
		"CreateInvite":          s.CreateInvite(ctx, &store.Invite{CodeHash: key("inv", 1, 32), Created: t0, Expires: t0.Add(time.Hour)}),
		"StoreKeys":             s.StoreKeys(ctx, a.ID, 1, keys(1, 1)),
		"Enqueue":               s.Enqueue(ctx, send(alice, "x", t0, alice), 10),
		"Ack":                   s.Ack(ctx, a.ID, 1, newUUID()),
		"AckMany":               second(s.AckMany(ctx, []store.AckRef{{AccountID: a.ID, DeviceID: 1, EnvelopeID: newUUID()}})),
		"AccountsByID":          second(s.AccountsByID(ctx, []string{a.ID})),
		"DevicesOf":             second(s.DevicesOf(ctx, []string{a.ID})),
		"AccountByUsername":     second(s.AccountByUsername(ctx, "alice")),
		"AccountByID":           second(s.AccountByID(ctx, a.ID)),
		"Device":                second(s.Device(ctx, a.ID, 1)),
		"Devices":               second(s.Devices(ctx, a.ID)),
		"TakeBundle":            second(s.TakeBundle(ctx, a.ID, 1)),
		"KeyCounts":             second(s.KeyCounts(ctx, a.ID, 1)),
		"Queue":                 second(s.Queue(ctx, a.ID, 1, 0, 10)),
		"QueueLen":              second(s.QueueLen(ctx, a.ID, 1)),
		"SendUsed":              second(s.SendUsed(ctx, a.ID, 1, newUUID())),
		"SealedSendUsed":        second(s.SealedSendUsed(ctx, a.ID, newUUID())),
		"SetLastSeenDay":        s.SetLastSeenDay(ctx, a.ID, 1, store.Day(t0)+1),
		"DeleteAccount":         s.DeleteAccount(ctx, a.ID),
		"SetUnidentifiedAccess": s.SetUnidentifiedAccess(ctx, a.ID, nil, true),
		"Expire":                second(s.Expire(ctx, t0)),
		"DeviceList":            second(s.DeviceList(ctx, a.ID)),
		"CreateLinkToken": s.CreateLinkToken(ctx, &store.LinkToken{TokenHash: key("token", 1, 32), AccountID: a.ID, Expires: t0.Add(time.Hour)},
			t0, maxDeviceID, maxPending),
		"LinkToken":          second(s.LinkToken(ctx, key("token", 1, 32), t0)),
		"LinkDevice":         s.LinkDevice(ctx, key("token", 1, 32), &store.Device{AccountID: a.ID, ID: 2}, nil, listAt(a.ID, 2), nil),
		"CreateMailbox":      s.CreateMailbox(ctx, &store.Mailbox{AddressHash: key("box", 1, 32), Expires: t0.Add(time.Hour)}),
		"PutMailbox":         s.PutMailbox(ctx, key("box", 1, 32), []byte("x"), t0),
		"TakeMailbox":        second(s.TakeMailbox(ctx, key("box", 1, 32), t0)),
		"ExpireProvisioning": second(s.ExpireProvisioning(ctx, t0)),
	}
	for name, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }
