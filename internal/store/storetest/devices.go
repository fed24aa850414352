package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
)

// The server limits the suite passes where the store takes them.
const (
	maxDeviceID = 127
	maxPending  = 10
	linkTTL     = 10 * time.Minute
)

// firstList is an account's first device list; the store does not read
// the signed blob, so fake bytes do.
func firstList() *store.DeviceList {
	return &store.DeviceList{Version: 1, Signed: key("list", 1, 80)}
}

// currentVersion is the version of the account's list, 0 for none.
func currentVersion(t *testing.T, s store.Store, accountID string) uint64 {
	t.Helper()
	l, err := s.DeviceList(t.Context(), accountID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0
	case err != nil:
		t.Fatalf("DeviceList: %v", err)
	}
	return l.Version
}

// listAt is a fake signed list of the given version for the account.
func listAt(accountID string, version uint64) *store.DeviceList {
	return &store.DeviceList{Version: version, Signed: key("list-"+accountID, uint32(version), 80)}
}

// nextList is a list one version up from the account's current one.
func nextList(t *testing.T, s store.Store, accountID string) *store.DeviceList {
	t.Helper()
	return listAt(accountID, currentVersion(t, s, accountID)+1)
}

func wantList(t *testing.T, s store.Store, accountID string, want *store.DeviceList) {
	t.Helper()
	got, err := s.DeviceList(t.Context(), accountID)
	must(t, "DeviceList", err)
	if got.Version != want.Version || !slices.Equal(got.Signed, want.Signed) {
		t.Fatalf("DeviceList = version %d %q…, want version %d %q…", got.Version, got.Signed[:12], want.Version, want.Signed[:12])
	}
}

func deviceIDs(t *testing.T, s store.Store, accountID string) []uint32 {
	t.Helper()
	ds, err := s.Devices(t.Context(), accountID)
	must(t, "Devices", err)
	var ids []uint32
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

// newToken makes a link token for the account, valid from t0 for linkTTL.
func newToken(t *testing.T, s store.Store, accountID string) *store.LinkToken {
	t.Helper()
	tok := &store.LinkToken{TokenHash: key("token-"+newUUID(), 0, 32), AccountID: accountID, Expires: t0.Add(linkTTL)}
	must(t, "CreateLinkToken", s.CreateLinkToken(t.Context(), tok, t0, maxDeviceID, maxPending))
	return tok
}

// linkedDevice is the device a token links, created at t0.
func linkedDevice(tok *store.LinkToken) *store.Device {
	return &store.Device{AccountID: tok.AccountID, ID: tok.DeviceID, RegistrationID: 77, CredentialHash: key("cred-linked", tok.DeviceID, 32), Created: t0}
}

// link adds a device to the account through a link token.
func link(t *testing.T, s store.Store, accountID string) *store.Device {
	t.Helper()
	tok := newToken(t, s, accountID)
	d := linkedDevice(tok)
	must(t, "LinkDevice", s.LinkDevice(t.Context(), tok.TokenHash, d, keys(2, 1), nextList(t, s, accountID), nil))
	return d
}

func testDeviceList(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	wantList(t, s, a.ID, firstList())
	_, err := s.DeviceList(ctx, newUUID())
	wantErr(t, "DeviceList(unknown account)", err, store.ErrNotFound)

	// The first list must be there, at version 1.
	for name, l := range map[string]*store.DeviceList{"no list": nil, "version 2": {Version: 2, Signed: key("list", 2, 80)}, "empty blob": {Version: 1}} {
		b, d := newAccount("bob")
		if err := s.CreateAccount(ctx, b, d, keys(1, 1), l, nil); err == nil {
			t.Fatalf("CreateAccount with %s succeeded", name)
		}
		if _, err := s.AccountByUsername(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CreateAccount with %s left an account: %v", name, err)
		}
	}

	d2 := link(t, s, a.ID)
	wantList(t, s, a.ID, listAt(a.ID, 2))

	// A removal must carry the next version; one that does not changes
	// nothing.
	for _, v := range []uint64{1, 2, 4} {
		wantErr(t, fmt.Sprint("RemoveDevice with version ", v), s.RemoveDevice(ctx, a.ID, d2.ID, listAt(a.ID, v)), store.ErrVersionConflict)
	}
	if ids := deviceIDs(t, s, a.ID); !slices.Equal(ids, []uint32{1, 2}) {
		t.Fatalf("refused removals changed the devices: %v", ids)
	}
	wantList(t, s, a.ID, listAt(a.ID, 2))
	// Removing a device that does not exist changes nothing either.
	wantErr(t, "RemoveDevice(9)", s.RemoveDevice(ctx, a.ID, 9, listAt(a.ID, 3)), store.ErrNotFound)
	wantList(t, s, a.ID, listAt(a.ID, 2))

	must(t, "RemoveDevice", s.RemoveDevice(ctx, a.ID, d2.ID, listAt(a.ID, 3)))
	wantList(t, s, a.ID, listAt(a.ID, 3))
	if ids := deviceIDs(t, s, a.ID); !slices.Equal(ids, []uint32{1}) {
		t.Fatalf("devices after removal: %v", ids)
	}
}

func testLinkToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	t2 := newToken(t, s, a.ID)
	t3 := newToken(t, s, a.ID)
	if t2.DeviceID != 2 || t3.DeviceID != 3 {
		t.Fatalf("tokens reserved %d and %d, want 2 and 3", t2.DeviceID, t3.DeviceID)
	}
	got, err := s.LinkToken(ctx, t3.TokenHash, t0)
	must(t, "LinkToken", err)
	if got.AccountID != a.ID || got.DeviceID != 3 || !got.Expires.Equal(t3.Expires) || !slices.Equal(got.TokenHash, t3.TokenHash) {
		t.Fatalf("LinkToken = %+v, want %+v", got, t3)
	}
	_, err = s.LinkToken(ctx, t3.TokenHash, t3.Expires)
	wantErr(t, "LinkToken at its expiry", err, store.ErrInvalidLinkToken)
	_, err = s.LinkToken(ctx, key("token-unknown", 0, 32), t0)
	wantErr(t, "LinkToken(unknown)", err, store.ErrInvalidLinkToken)
	tok := &store.LinkToken{TokenHash: key("token-x", 0, 32), AccountID: newUUID(), Expires: t0.Add(linkTTL)}
	wantErr(t, "CreateLinkToken(unknown account)", s.CreateLinkToken(ctx, tok, t0, maxDeviceID, maxPending), store.ErrNotFound)

	// Ids are never given twice: not the id of a device removed, nor the
	// id of a token never used.
	must(t, "LinkDevice", s.LinkDevice(ctx, t3.TokenHash, linkedDevice(t3), nil, nextList(t, s, a.ID), nil))
	must(t, "RemoveDevice(3)", s.RemoveDevice(ctx, a.ID, 3, nextList(t, s, a.ID)))
	if t4 := newToken(t, s, a.ID); t4.DeviceID != 4 {
		t.Fatalf("token after removing device 3 (and leaving 2 unused) reserved %d, want 4", t4.DeviceID)
	}
}

func testLinkTokenLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	mk := func(now time.Time, maxID uint32, pending int) (*store.LinkToken, error) {
		tok := &store.LinkToken{TokenHash: key("token-"+newUUID(), 0, 32), AccountID: a.ID, Expires: now.Add(linkTTL)}
		err := s.CreateLinkToken(ctx, tok, now, maxID, pending)
		return tok, err
	}
	// Two pending tokens at most: a third waits until one expires.
	for want := uint32(2); want <= 3; want++ {
		tok, err := mk(t0, maxDeviceID, 2)
		must(t, "CreateLinkToken", err)
		if tok.DeviceID != want {
			t.Fatalf("reserved %d, want %d", tok.DeviceID, want)
		}
	}
	_, err := mk(t0.Add(time.Minute), maxDeviceID, 2)
	wantErr(t, "third pending token", err, store.ErrTooManyLinkTokens)
	tok, err := mk(t0.Add(linkTTL), maxDeviceID, 2)
	must(t, "CreateLinkToken once the others expired", err)
	if tok.DeviceID != 4 {
		t.Fatalf("reserved %d, want 4 (the refused token reserved nothing)", tok.DeviceID)
	}
	// Ids run out at maxDeviceID; a refused token reserves nothing.
	_, err = mk(t0, 4, maxPending)
	wantErr(t, "token past the last id", err, store.ErrTooManyDevices)
	tok, err = mk(t0, 5, maxPending)
	must(t, "CreateLinkToken(max 5)", err)
	if tok.DeviceID != 5 {
		t.Fatalf("reserved %d, want 5", tok.DeviceID)
	}
}

func testLinkDevice(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	tok := newToken(t, s, a.ID)
	d := linkedDevice(tok)
	must(t, "LinkDevice", s.LinkDevice(ctx, tok.TokenHash, d, keys(3, 2), listAt(a.ID, 2), nil))

	got, err := s.Device(ctx, a.ID, tok.DeviceID)
	must(t, "Device", err)
	if got.RegistrationID != d.RegistrationID || !slices.Equal(got.CredentialHash, d.CredentialHash) || !got.Created.Equal(d.Created) {
		t.Fatalf("Device = %+v, want %+v", got, d)
	}
	c, err := s.KeyCounts(ctx, a.ID, tok.DeviceID)
	must(t, "KeyCounts", err)
	if c != (store.KeyCounts{PreKeys: 3, KyberPreKeys: 2}) {
		t.Fatalf("KeyCounts = %+v; want the keys LinkDevice stored", c)
	}
	if _, err := s.TakeBundle(ctx, a.ID, tok.DeviceID); err != nil {
		t.Fatalf("TakeBundle of the linked device: %v", err)
	}
	wantList(t, s, a.ID, listAt(a.ID, 2))
	if ids := deviceIDs(t, s, a.ID); !slices.Equal(ids, []uint32{1, 2}) {
		t.Fatalf("Devices = %v, want [1 2]", ids)
	}

	// The token is used up.
	_, err = s.LinkToken(ctx, tok.TokenHash, t0)
	wantErr(t, "LinkToken after use", err, store.ErrInvalidLinkToken)
	again := linkedDevice(tok)
	again.RegistrationID = 99
	wantErr(t, "LinkDevice with a used token", s.LinkDevice(ctx, tok.TokenHash, again, nil, listAt(a.ID, 3), nil), store.ErrInvalidLinkToken)
	wantList(t, s, a.ID, listAt(a.ID, 2))
	if got, _ := s.Device(ctx, a.ID, tok.DeviceID); got.RegistrationID != d.RegistrationID {
		t.Fatalf("a replayed token changed the device: %+v", got)
	}
}

func testLinkDeviceRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	b, _ := register(t, s, "bob", keys(1, 1))
	tok := newToken(t, s, a.ID)

	refuse := func(what string, hash []byte, d *store.Device, l *store.DeviceList, want error) {
		t.Helper()
		wantErr(t, what, s.LinkDevice(ctx, hash, d, keys(1, 1), l, nil), want)
		for _, acct := range []string{a.ID, b.ID} {
			if ids := deviceIDs(t, s, acct); !slices.Equal(ids, []uint32{1}) {
				t.Fatalf("%s: devices of %s are %v, want [1]", what, acct, ids)
			}
			wantList(t, s, acct, firstList())
		}
		// The token survived.
		if _, err := s.LinkToken(ctx, tok.TokenHash, t0); err != nil {
			t.Fatalf("%s consumed the token: %v", what, err)
		}
	}
	refuse("stale version", tok.TokenHash, linkedDevice(tok), listAt(a.ID, 1), store.ErrVersionConflict)
	refuse("skipped version", tok.TokenHash, linkedDevice(tok), listAt(a.ID, 3), store.ErrVersionConflict)
	other := linkedDevice(tok)
	other.AccountID = b.ID
	refuse("another account", tok.TokenHash, other, listAt(b.ID, 2), store.ErrInvalidLinkToken)
	other = linkedDevice(tok)
	other.ID++
	refuse("another device id", tok.TokenHash, other, listAt(a.ID, 2), store.ErrInvalidLinkToken)
	late := linkedDevice(tok)
	late.Created = tok.Expires
	refuse("expired", tok.TokenHash, late, listAt(a.ID, 2), store.ErrInvalidLinkToken)
	refuse("unknown token", key("token-unknown", 0, 32), linkedDevice(tok), listAt(a.ID, 2), store.ErrInvalidLinkToken)

	must(t, "LinkDevice after the refusals", s.LinkDevice(ctx, tok.TokenHash, linkedDevice(tok), keys(1, 1), listAt(a.ID, 2), nil))
}

// testLinkDeviceConcurrent: two devices linking at once with the same next
// version: one wins, the other gets ErrVersionConflict and keeps its token.
func testLinkDeviceConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	toks := []*store.LinkToken{newToken(t, s, a.ID), newToken(t, s, a.ID)}
	errs := make([]error, len(toks))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, tok := range toks {
		wg.Go(func() {
			<-start
			l := &store.DeviceList{Version: 2, Signed: key("list-by", tok.DeviceID, 80)}
			errs[i] = s.LinkDevice(ctx, tok.TokenHash, linkedDevice(tok), keys(1, 1), l, nil)
		})
	}
	close(start)
	wg.Wait()
	var winner, loser *store.LinkToken
	switch {
	case errs[0] == nil && errors.Is(errs[1], store.ErrVersionConflict):
		winner, loser = toks[0], toks[1]
	case errs[1] == nil && errors.Is(errs[0], store.ErrVersionConflict):
		winner, loser = toks[1], toks[0]
	default:
		t.Fatalf("concurrent links: %v and %v; want one success and one conflict", errs[0], errs[1])
	}
	if ids := deviceIDs(t, s, a.ID); !slices.Equal(ids, []uint32{1, winner.DeviceID}) {
		t.Fatalf("Devices = %v, want [1 %d]", ids, winner.DeviceID)
	}
	wantList(t, s, a.ID, &store.DeviceList{Version: 2, Signed: key("list-by", winner.DeviceID, 80)})
	// The loser retries with the next version.
	must(t, "LinkDevice retry", s.LinkDevice(ctx, loser.TokenHash, linkedDevice(loser), nil, listAt(a.ID, 3), nil))
	if ids := deviceIDs(t, s, a.ID); len(ids) != 3 {
		t.Fatalf("Devices after the retry = %v", ids)
	}
}

func testMailbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	box := &store.Mailbox{AddressHash: key("box", 1, 32), Expires: t0.Add(linkTTL)}
	must(t, "CreateMailbox", s.CreateMailbox(ctx, box))
	h := box.AddressHash

	_, err := s.TakeMailbox(ctx, h, t0)
	wantErr(t, "TakeMailbox(empty)", err, store.ErrMailboxEmpty)
	if err := s.PutMailbox(ctx, h, nil, t0); err == nil {
		t.Fatal("PutMailbox with an empty message succeeded")
	}
	_, err = s.TakeMailbox(ctx, h, t0)
	wantErr(t, "TakeMailbox after an empty put", err, store.ErrMailboxEmpty)

	must(t, "PutMailbox", s.PutMailbox(ctx, h, []byte("first"), t0))
	wantErr(t, "PutMailbox again", s.PutMailbox(ctx, h, []byte("second"), t0), store.ErrMailboxFull)
	msg, err := s.TakeMailbox(ctx, h, t0)
	must(t, "TakeMailbox", err)
	if string(msg) != "first" {
		t.Fatalf("TakeMailbox = %q, want %q", msg, "first")
	}
	_, err = s.TakeMailbox(ctx, h, t0)
	wantErr(t, "TakeMailbox again", err, store.ErrNotFound)
	wantErr(t, "PutMailbox after take", s.PutMailbox(ctx, h, []byte("third"), t0), store.ErrNotFound)

	unknown := key("box", 2, 32)
	wantErr(t, "PutMailbox(unknown)", s.PutMailbox(ctx, unknown, []byte("x"), t0), store.ErrNotFound)
	_, err = s.TakeMailbox(ctx, unknown, t0)
	wantErr(t, "TakeMailbox(unknown)", err, store.ErrNotFound)
}

func testMailboxExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	short := &store.Mailbox{AddressHash: key("box", 1, 32), Expires: t0.Add(linkTTL)}
	long := &store.Mailbox{AddressHash: key("box", 2, 32), Expires: t0.Add(time.Hour)}
	must(t, "CreateMailbox", s.CreateMailbox(ctx, short))
	must(t, "CreateMailbox", s.CreateMailbox(ctx, long))
	must(t, "PutMailbox", s.PutMailbox(ctx, short.AddressHash, []byte("m"), t0))
	shortTok := newToken(t, s, a.ID) // expires at t0+linkTTL
	longTok := &store.LinkToken{TokenHash: key("token-long", 0, 32), AccountID: a.ID, Expires: t0.Add(time.Hour)}
	must(t, "CreateLinkToken", s.CreateLinkToken(ctx, longTok, t0, maxDeviceID, maxPending))

	// At its expiry a mailbox is gone, whether or not it was swept.
	at := short.Expires
	wantErr(t, "PutMailbox at expiry", s.PutMailbox(ctx, short.AddressHash, []byte("m"), at), store.ErrNotFound)
	_, err := s.TakeMailbox(ctx, short.AddressHash, at)
	wantErr(t, "TakeMailbox at expiry", err, store.ErrNotFound)

	n, err := s.ExpireProvisioning(ctx, at)
	must(t, "ExpireProvisioning", err)
	if n != 2 {
		t.Fatalf("ExpireProvisioning deleted %d rows, want 2 (a mailbox and a token)", n)
	}
	// The rows are gone: even at a time they were valid, nothing is found.
	_, err = s.TakeMailbox(ctx, short.AddressHash, t0)
	wantErr(t, "TakeMailbox(expired) at t0", err, store.ErrNotFound)
	_, err = s.LinkToken(ctx, shortTok.TokenHash, t0)
	wantErr(t, "LinkToken(expired) at t0", err, store.ErrInvalidLinkToken)
	// What had not expired stays.
	_, err = s.TakeMailbox(ctx, long.AddressHash, at)
	wantErr(t, "TakeMailbox(long)", err, store.ErrMailboxEmpty)
	if _, err := s.LinkToken(ctx, longTok.TokenHash, at); err != nil {
		t.Fatalf("LinkToken(long): %v", err)
	}
}

// testMailboxTakeConcurrent: however many take at once, one gets the
// message.
func testMailboxTakeConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	box := &store.Mailbox{AddressHash: key("box", 1, 32), Expires: t0.Add(linkTTL)}
	must(t, "CreateMailbox", s.CreateMailbox(ctx, box))
	must(t, "PutMailbox", s.PutMailbox(ctx, box.AddressHash, []byte("once"), t0))
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  int
		errs []error
	)
	for range n {
		wg.Go(func() {
			msg, err := s.TakeMailbox(ctx, box.AddressHash, t0)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && string(msg) == "once" {
				got++
			} else if !errors.Is(err, store.ErrNotFound) {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if got != 1 || len(errs) != 0 {
		t.Fatalf("%d takes got the message (want 1); unexpected errors: %v", got, errs)
	}
}
