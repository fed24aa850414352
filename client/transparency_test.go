package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
)

// inView returns what get reads from c's profile.
func inView[T any](t *testing.T, c *Client, get func(*profile.Tx) (T, error)) T {
	t.Helper()
	var v T
	err := c.st.View(ctxT(t), func(tx *profile.Tx) error {
		var err error
		v, err = get(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sessionsWith returns the devices of the account c holds sessions with.
func sessionsWith(t *testing.T, c *Client, accountID string) []uint32 {
	t.Helper()
	return inView(t, c, func(tx *profile.Tx) ([]uint32, error) { return tx.SessionDevices(accountID) })
}

// labelState returns what c last verified of a label.
func labelState(t *testing.T, c *Client, label []byte) *profile.LabelState {
	t.Helper()
	return inView(t, c, func(tx *profile.Tx) (*profile.LabelState, error) { return tx.TransparencyLabel(label) })
}

// ownerState returns c's owner monitor state.
func ownerState(t *testing.T, c *Client) *profile.OwnerState {
	t.Helper()
	return inView(t, c, (*profile.Tx).OwnerState)
}

func alertsOf(t *testing.T, c *Client) []TransparencyAlert {
	t.Helper()
	as, err := c.TransparencyAlerts(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func hasAlert(as []TransparencyAlert, kind AlertKind) bool {
	return slices.ContainsFunc(as, func(a TransparencyAlert) bool { return a.Kind == kind })
}

// checkAlerts runs c's owner check, which must find something
// (ErrTransparencyAlert), and returns the alerts stored then.
func checkAlerts(t *testing.T, c *Client, what string) []TransparencyAlert {
	t.Helper()
	if err := c.CheckTransparency(ctxT(t)); !errors.Is(err, ErrTransparencyAlert) {
		t.Fatalf("%s: %v, want ErrTransparencyAlert", what, err)
	}
	return alertsOf(t, c)
}

// wantRefused checks a send refused by key transparency: the error, no
// session with the recipient, nothing queued for it.
func wantRefused(t *testing.T, err error, cause error, from, to *Client) {
	t.Helper()
	if !errors.Is(err, ErrTransparency) {
		t.Fatalf("send: %v, want ErrTransparency", err)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Fatalf("send: %v, want it to wrap %v", err, cause)
	}
	if ds := sessionsWith(t, from, to.AccountID()); len(ds) != 0 {
		t.Fatalf("%s holds sessions with %s's devices %v after a refused lookup", from.Username(), to.Username(), ds)
	}
	if evs := receive(t, to); len(evs) != 0 {
		t.Fatalf("%s got %v", to.Username(), evs)
	}
}

// TestTransparencyGoodProof: a send verifies the bundle's proof, records
// the head and what it verified, and a reply to someone who wrote first
// looks their key up in the log before encrypting to it.
func TestTransparencyGoodProof(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "hello")
	wantTexts(t, receive(t, bob), "alice", "hello")

	st, err := alice.TransparencyStatus(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Origin != testOrigin || st.HeadSize == 0 || !st.Monitored || st.LastCheck.IsZero() || len(st.Alerts) != 0 {
		t.Fatalf("alice's status %+v", st)
	}
	if l := labelState(t, alice, kt.UsernameLabel("bob")); l == nil || !l.Present {
		t.Fatalf("alice recorded nothing of bob's entry: %+v", l)
	}
	// Bob's key for alice came with her first message: before he
	// replies, he looks her up.
	if l := labelState(t, bob, kt.UsernameLabel("alice")); l != nil {
		t.Fatalf("bob verified alice's key before replying: %+v", l)
	}
	mustSend(t, bob, "alice", "hi")
	wantTexts(t, receive(t, alice), "bob", "hi")
	l := labelState(t, bob, kt.UsernameLabel("alice"))
	if l == nil || !l.Present {
		t.Fatal("bob replied without verifying alice's key")
	}
	if v, err := kt.DecodeAccountValue(l.Value); err != nil || v.AccountID != alice.AccountID() ||
		!bytes.Equal(v.IdentityKey, alice.identity.Public.Bytes()) {
		t.Fatalf("bob verified %+v, %v", v, err)
	}
	if l.Counter != k.counter("alice") {
		t.Fatalf("bob verified counter %d, the log holds %d", l.Counter, k.counter("alice"))
	}
}

// TestTransparencyBundleDiffers: a bundle whose identity key or device list
// is not the one the log holds is refused, and no session is made.
func TestTransparencyBundleDiffers(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})

	// The log holds another identity key for bob (the server's bundle
	// still has his own).
	k.publishGhost("bob")
	_, err := alice.Send(ctxT(t), "bob", "to bob")
	wantRefused(t, err, errProofMismatch, alice, bob)

	// The log holds carol's key with another device list than the
	// server's bundle (one carol signed, a day older).
	oldC := k.account("carol")
	l, err := devicelist.Verify(carol.identity.Public, oldC.DeviceList)
	if err != nil {
		t.Fatal(err)
	}
	l.Timestamp -= 86400e3
	other, err := devicelist.Sign(carol.identity.Private, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.publishAccount("carol", oldC.IdentityKey, other)
	_, err = alice.Send(ctxT(t), "carol", "to carol")
	wantRefused(t, err, errProofMismatch, alice, carol)

	// The log maps dave's username to carol's account, with carol's keys
	// (the server's bundle names dave's account).
	dave, _ := s.register(t, "dave", Options{})
	k.publish(kt.Update{Label: kt.UsernameLabel("dave"), Value: oldC.Encode()})
	_, err = alice.Send(ctxT(t), "dave", "to dave")
	wantRefused(t, err, errProofMismatch, alice, dave)

	// Once the log holds carol's real value again, the send goes.
	k.publishAccount("carol", oldC.IdentityKey, oldC.DeviceList)
	mustSend(t, alice, "carol", "now")
	wantTexts(t, receive(t, carol), "alice", "now")
}

// TestTransparencyBadProofs: a missing, forged or truncated proof is
// refused with ErrTransparency (and the kt sentinel), and no session made.
func TestTransparencyBadProofs(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})

	cases := []struct {
		name   string
		tamper func([]byte) []byte
		cause  error
	}{
		{"missing", func([]byte) []byte { return nil }, errNoProof},
		{"truncated", func(p []byte) []byte { return p[:len(p)/2] }, kt.ErrMalformed},
		{"one byte", func(p []byte) []byte { return p[:1] }, kt.ErrMalformed},
		{"trailing byte", func(p []byte) []byte { return append(p, 0) }, kt.ErrMalformed},
	}
	// Forgeries: one bit flipped at places all over the proof.
	for _, at := range []int{10, 100, 200, 400, -40, -20, -5, -1} {
		cases = append(cases, struct {
			name   string
			tamper func([]byte) []byte
			cause  error
		}{"forged", func(p []byte) []byte {
			q := bytes.Clone(p)
			i := at
			if i < 0 {
				i += len(q)
			}
			q[min(max(i, 0), len(q)-1)] ^= 0x04
			return q
		}, nil})
	}
	for _, tc := range cases {
		k.setTamper(func(username string, p []byte) []byte {
			if username != "bob" {
				return p
			}
			return tc.tamper(p)
		})
		_, err := alice.Send(ctxT(t), "bob", "to bob")
		wantRefused(t, err, tc.cause, alice, bob)
		if tc.cause == nil && !errors.Is(err, kt.ErrInvalidProof) && !errors.Is(err, kt.ErrMalformed) &&
			!errors.Is(err, kt.ErrBadCheckpoint) && !errors.Is(err, kt.ErrInconsistent) {
			t.Errorf("%s: %v, want a kt sentinel", tc.name, err)
		}
	}
	k.setTamper(nil)
	mustSend(t, alice, "bob", "at last")
	wantTexts(t, receive(t, bob), "alice", "at last")
	// A forged consistency proof fails to show that the log extends the
	// head alice kept: a fork, as far as she can tell. Nothing else
	// alerts.
	for _, a := range alertsOf(t, alice) {
		if a.Kind != AlertFork {
			t.Errorf("forged proofs raised alert %v", a)
		}
	}
}

// TestTransparencyOldHeadRefused: a proof replayed from an older head than
// the client verified since is refused (and alerts: the server shows an
// older log).
func TestTransparencyOldHeadRefused(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	erin, _ := s.register(t, "erin", Options{})

	// Bob fetches erin's keys at the current head, with a proof from
	// nothing (bob's head is older): kept for a replay.
	var (
		mu  sync.Mutex
		old []byte
	)
	k.setTamper(func(username string, p []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		if username == "erin" && old == nil {
			old = p
		}
		return p
	})
	mustSend(t, bob, "erin", "from bob")
	// The log grows; alice verifies the newer head.
	s.register(t, "carol", Options{})
	mustSend(t, alice, "carol", "hello")
	// The server hands alice the old proof for erin.
	k.setTamper(func(username string, p []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		if username == "erin" {
			return old
		}
		return p
	})
	_, err := alice.Send(ctxT(t), "erin", "to erin")
	if !errors.Is(err, ErrTransparency) || !errors.Is(err, kt.ErrInconsistent) && !errors.Is(err, kt.ErrInvalidProof) {
		t.Fatalf("replayed proof: %v", err)
	}
	if ds := sessionsWith(t, alice, erin.AccountID()); len(ds) != 0 {
		t.Fatalf("sessions with erin after a replayed proof: %v", ds)
	}
	wantTexts(t, receive(t, erin), "bob", "from bob")
}

// TestTransparencyContactRollback: contact monitoring refuses a label whose
// counter went back, or whose value changed under the same counter, and
// keeps an alert.
func TestTransparencyContactRollback(t *testing.T) {
	t.Parallel()
	s, _ := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "hello")
	label := kt.UsernameLabel("bob")
	seen := labelState(t, alice, label)
	if seen == nil || !seen.Present {
		t.Fatalf("alice's state of bob's account: %+v", seen)
	}

	set := func(st *profile.LabelState) {
		t.Helper()
		err := alice.st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.PutTransparencyLabel(label, st) })
		if err != nil {
			t.Fatal(err)
		}
	}
	// Alice had seen bob's account at a later version than the log shows
	// now: the counter went back.
	ahead := *seen
	ahead.Counter += 3
	set(&ahead)
	_, err := alice.lookup(ctxT(t), "bob")
	if !errors.Is(err, ErrTransparencyRollback) || !errors.Is(err, ErrTransparency) {
		t.Fatalf("counter gone back: %v", err)
	}
	if got := labelState(t, alice, label); got.Counter != ahead.Counter {
		t.Fatalf("the refused proof was recorded: %+v", got)
	}
	as := alertsOf(t, alice)
	if len(as) != 1 || as[0].Kind != AlertRollback || as[0].Subject != "bob" {
		t.Fatalf("alerts %+v", as)
	}

	// The same version with another value.
	forked := *seen
	forked.Value = append(bytes.Clone(seen.Value), 0)
	set(&forked)
	if _, err := alice.lookup(ctxT(t), "bob"); !errors.Is(err, ErrTransparencyRollback) {
		t.Fatalf("another value under the same counter: %v", err)
	}
	// What was really seen: the lookup passes, and records the value.
	set(seen)
	if _, err := alice.lookup(ctxT(t), "bob"); err != nil {
		t.Fatal(err)
	}
	if n, err := alice.ClearTransparencyAlerts(ctxT(t), as[0].ID); err != nil || n != 1 {
		t.Fatalf("clear: %d, %v", n, err)
	}
}

// wantQuiet checks that c has raised no alert, that its owner monitor has
// its baseline at base, has seen device list version version in the log,
// and waits for no change of its own.
func wantQuiet(t *testing.T, c *Client, base int64, version uint64) {
	t.Helper()
	if as := alertsOf(t, c); len(as) != 0 {
		t.Fatalf("%s's device %d raised alerts %+v", c.Username(), c.DeviceID(), as)
	}
	st := ownerState(t, c)
	if !st.Baseline() || st.Base != base || st.ListVersion != version || st.OwnVersion != 0 {
		t.Fatalf("%s's device %d: owner state %+v, want base %d, list version %d, nothing waiting", c.Username(), c.DeviceID(), st, base, version)
	}
}

// TestOwnerMonitoringOwnChanges: registering, linking a device (on the
// new device and the approving one) and removing it raise no alert: each
// change is in the log, exactly, at the counter its version puts it at,
// which each device checks right after it; a linked device derives the
// base from the entry it joins under.
func TestOwnerMonitoringOwnChanges(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	// A username that had an account before: its entry's counter does
	// not start at 0, nor does the new account's base.
	old, _ := s.register(t, "alice", Options{})
	if err := old.DeleteAccount(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	k.publish(kt.Update{Label: kt.UsernameLabel("alice")}) // the deletion
	alice, _ := s.register(t, "alice", Options{})
	base := int64(k.counter("alice"))
	if base != 2 {
		t.Fatalf("the new alice's entry at counter %d, want 2", base)
	}
	wantQuiet(t, alice, base, 1)

	laptop, _ := s.link(t, alice, "alice-laptop")
	wantQuiet(t, alice, base, 2)
	wantQuiet(t, laptop, base, 2)
	if k.counter("alice") != 3 {
		t.Fatalf("after linking: counter %d, want 3", k.counter("alice"))
	}
	if err := alice.RemoveDevice(ctxT(t), laptop.DeviceID()); err != nil {
		t.Fatal(err)
	}
	wantQuiet(t, alice, base, 3)
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("alice's check: %v", err)
	}
	wantQuiet(t, alice, base, 3)
	if k.counter("alice") != 4 {
		t.Fatalf("after removing: counter %d, want 4", k.counter("alice"))
	}
}

// TestOwnerMonitoringQuickChanges: two device-list changes one after the
// other are both in the log, in order, each at its own counter.
func TestOwnerMonitoringQuickChanges(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	laptop, _ := s.link(t, alice, "alice-laptop")
	tablet, _ := s.link(t, alice, "alice-tablet")
	wantQuiet(t, alice, 0, 3)
	start := len(k.history("alice"))
	for _, c := range []*Client{laptop, tablet} {
		if err := alice.RemoveDevice(ctxT(t), c.DeviceID()); err != nil {
			t.Fatal(err)
		}
	}
	wantQuiet(t, alice, 0, 5)
	got := k.history("alice")[start:]
	if len(got) != 2 {
		t.Fatalf("%d versions published, want 2", len(got))
	}
	for i, e := range got {
		v, err := kt.DecodeAccountValue(e.Value)
		if err != nil {
			t.Fatal(err)
		}
		l, err := devicelist.Verify(alice.identity.Public, v.DeviceList)
		if err != nil || l.Version != uint64(4+i) || e.Leaf.Counter != uint32(3+i) {
			t.Fatalf("version %d published as list %+v (%v) at counter %d", 4+i, l, err, e.Leaf.Counter)
		}
	}
}

// TestOwnerMonitoringRealLog: with the server's own log and sequencer,
// registering, linking (the approving device may read the new list before
// it is published) and removing devices raise no alert on any device but
// the notice, on the first, of the device the second added; and each
// version is at its counter.
func TestOwnerMonitoringRealLog(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	wantQuiet(t, alice, 0, 1)
	laptop, _ := s.link(t, alice, "alice-laptop")
	wantQuiet(t, alice, 0, 2)
	wantQuiet(t, laptop, 0, 2)
	tablet, _ := s.link(t, laptop, "alice-tablet")
	wantQuiet(t, laptop, 0, 3)
	wantQuiet(t, tablet, 0, 3)
	if err := alice.RemoveDevice(ctxT(t), laptop.DeviceID()); err != nil {
		t.Fatal(err)
	}
	as := alertsOf(t, alice)
	if len(as) != 1 || as[0].Kind != AlertDeviceAdded || as[0].Device != tablet.DeviceID() {
		t.Fatalf("alice's alerts %+v, want the notice of the tablet the laptop added", as)
	}
	alice.ClearTransparencyAlerts(ctxT(t), as[0].ID)
	wantQuiet(t, alice, 0, 4)
	for _, c := range []*Client{alice, tablet} {
		if err := c.CheckTransparency(ctxT(t)); err != nil {
			t.Fatalf("device %d's check: %v", c.DeviceID(), err)
		}
		wantQuiet(t, c, 0, 4)
		if l := labelState(t, c, kt.UsernameLabel("alice")); l == nil || l.Counter != 3 {
			t.Fatalf("device %d verified the entry at %+v, want counter 3", c.DeviceID(), l)
		}
	}
}

// TestOwnerMonitoring: alice's client raises a persistent alert when the
// log holds another identity key for her, a value put there and taken
// back, or her username for another account; bob cannot send to the ghost
// key.
func TestOwnerMonitoring(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, dir := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("first check: %v", err)
	}

	// The server publishes a ghost identity key for alice.
	real, _ := k.publishGhost("alice")
	// Bob either sees a proof that shows the change to alice, or fails:
	// the server's bundle (alice's real key) differs from the log's.
	_, err := bob.Send(ctxT(t), "alice", "hi")
	if !errors.Is(err, ErrTransparency) {
		t.Fatalf("bob's send under the ghost entry: %v", err)
	}
	as := checkAlerts(t, alice, "check with a ghost key")
	if !hasAlert(as, AlertIdentityKey) || !hasAlert(as, AlertUnexplained) {
		t.Fatalf("alerts %+v", as)
	}
	// A second check does not pile up the same alert.
	n := len(as)
	alice.CheckTransparency(ctxT(t))
	if as := alertsOf(t, alice); len(as) != n {
		t.Fatalf("alerts after a second check: %+v", as)
	}

	// The alerts survive the profile being closed, and Receive hands
	// each over once.
	alice.Close()
	alice, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Close() })
	if as := alertsOf(t, alice); len(as) != n {
		t.Fatalf("alerts after reopening: %+v", as)
	}
	var got []*TransparencyAlert
	for _, ev := range receive(t, alice) {
		if a, ok := ev.(*TransparencyAlert); ok {
			got = append(got, a)
		}
	}
	if len(got) != n || got[0].Kind == "" || got[0].ID != as[0].ID {
		t.Fatalf("alert events %+v, want %d", got, n)
	}
	if evs := receive(t, alice); len(evs) != 0 {
		t.Fatalf("events again: %v", evs)
	}
	if as := alertsOf(t, alice); len(as) != n {
		t.Fatal("handing the alerts over cleared them")
	}

	// The ghost goes, the real value comes back: two counter steps more
	// than the device list's versions.
	if _, err := alice.ClearTransparencyAlerts(ctxT(t), as[len(as)-1].ID); err != nil {
		t.Fatal(err)
	}
	k.publishAccount("alice", real.IdentityKey, real.DeviceList)
	as = checkAlerts(t, alice, "check after the revert")
	if len(as) != 1 || as[0].Kind != AlertUnexplained {
		t.Fatalf("alerts after the revert %+v", as)
	}
	// Once the user has looked into it, the checks go on quietly from
	// what the log holds now.
	alice.ClearTransparencyAlerts(ctxT(t), as[0].ID)
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("a quiet check: %v", err)
	}

	// Alice's username, mapped to bob's account.
	k.publish(kt.Update{Label: kt.UsernameLabel("alice"), Value: k.account("bob").Encode()})
	if as := checkAlerts(t, alice, "check with the username moved"); !hasAlert(as, AlertUsername) {
		t.Fatalf("alerts %+v", as)
	}
}

// TestOwnerMonitoringGhostAndRevert: a ghost key put in the log and taken
// out again between two checks is caught by the counter, also by a device
// linked afterwards (whose base the entry's history already shifted: the
// primary's checks catch that one).
func TestOwnerMonitoringGhostAndRevert(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	real, ghost := k.publishGhost("alice")
	k.publishAccount("alice", real.IdentityKey, real.DeviceList)
	as := checkAlerts(t, alice, "check")
	if len(as) != 1 || as[0].Kind != AlertUnexplained {
		t.Fatalf("alerts %+v", as)
	}
	// The same, between two changes of alice's own: the next change's
	// check finds its list at the wrong counter.
	alice.ClearTransparencyAlerts(ctxT(t), as[0].ID)
	base := ownerState(t, alice).Base
	k.publishAccount("alice", ghost.Public.Bytes(), real.DeviceList)
	k.publishAccount("alice", real.IdentityKey, real.DeviceList)
	s.link(t, alice, "alice-laptop")
	as = alertsOf(t, alice)
	if len(as) != 1 || as[0].Kind != AlertUnexplained {
		t.Fatalf("alerts after linking %+v", as)
	}
	if st := ownerState(t, alice); st.Base != base+2 || st.ListVersion != 2 {
		t.Fatalf("owner state %+v after the alert, want base %d", st, base+2)
	}
}

// TestOwnerMonitoringSuppressedVersion: the server publishes a ghost and,
// so that the counter lines up again, leaves alice's next device list out
// of the log. The check her device makes right after that change raises
// the alert; once her following list is in, at the counter the ghost's
// step makes right, the counter rule alone would be content.
func TestOwnerMonitoringSuppressedVersion(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	laptop, _ := s.link(t, alice, "alice-laptop")
	wantQuiet(t, alice, 0, 2)

	// A ghost key (counter 2); alice's removal of the laptop (version 3)
	// is left out of the log.
	k.publishGhost("alice")
	k.suppressNext(1)
	if err := alice.RemoveDevice(ctxT(t), laptop.DeviceID()); err != nil {
		t.Fatal(err)
	}
	as := alertsOf(t, alice)
	if !hasAlert(as, AlertOwnChange) {
		t.Fatalf("alerts after a change left out of the log: %+v", as)
	}
	alice.ClearTransparencyAlerts(ctxT(t), as[len(as)-1].ID)

	// Alice links a new device (version 4), published at counter 3 =
	// 0 + 4 - 1, where her base puts it: the ghost's step is hidden from
	// every later check.
	tablet, _ := s.link(t, alice, "alice-tablet")
	if k.counter("alice") != 3 {
		t.Fatalf("counter %d, want 3", k.counter("alice"))
	}
	wantQuiet(t, tablet, 0, 4)
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("alice's check: %v", err)
	}
	wantQuiet(t, alice, 0, 4)
}

// TestOwnerMonitoringUnfinishedCheck: when the check right after a change
// does not complete, the next check looks for the change: a log that went
// past it without holding it raises the alert, also when its counter is
// right (a ghost took the left-out version's step).
func TestOwnerMonitoringUnfinishedCheck(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	laptop, _ := s.link(t, alice, "alice-laptop")
	tablet, _ := s.link(t, alice, "alice-tablet")
	wantQuiet(t, alice, 0, 3)
	// A ghost (counter 3); alice removes the laptop (version 4), the log
	// leaves it out, and her check fails: the server hands her no proof
	// for a while.
	k.publishGhost("alice")
	k.suppressNext(1)
	k.setTamper(func(username string, p []byte) []byte {
		if username == "alice" {
			return nil
		}
		return p
	})
	if err := alice.RemoveDevice(ctxT(t), laptop.DeviceID()); err != nil {
		t.Fatal(err)
	}
	if st := ownerState(t, alice); st.OwnVersion != 4 || len(alertsOf(t, alice)) != 0 {
		t.Fatalf("after a check that failed: %+v, alerts %+v", st, alertsOf(t, alice))
	}
	k.setTamper(nil)
	// Version 5 (the tablet removed) is published at counter 4 = 0 + 5 - 1.
	if err := alice.RemoveDevice(ctxT(t), tablet.DeviceID()); err != nil {
		t.Fatal(err)
	}
	if k.counter("alice") != 4 {
		t.Fatalf("counter %d, want 4", k.counter("alice"))
	}
	as := alertsOf(t, alice)
	if len(as) != 1 || as[0].Kind != AlertOwnChange {
		t.Fatalf("alerts %+v, want the change left out", as)
	}
	if st := ownerState(t, alice); st.OwnVersion != 0 || st.Base != 0 || st.ListVersion != 5 {
		t.Fatalf("owner state after the alert: %+v", st)
	}
}

// TestMonitorInReceive: a streaming Receive runs the owner monitor every
// MonitorInterval and hands the alert to its handler.
func TestMonitorInReceive(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, dir := s.register(t, "alice", Options{})
	alice.Close()
	alice, err := Open(dir, Options{MonitorInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	real := k.account("alice")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// The ghost comes while Receive streams (or, on a slow machine,
	// before it starts: then its first check finds it).
	ghost, _ := keys.GenerateKeyPair(nil)
	ghostValue := *real
	ghostValue.IdentityKey = ghost.Public.Bytes()
	time.AfterFunc(100*time.Millisecond, func() { k.publish(kt.Update{Label: kt.UsernameLabel("alice"), Value: ghostValue.Encode()}) })
	var got *TransparencyAlert
	err = alice.Receive(ctx, ReceiveOptions{}, func(ev Event) error {
		if a, ok := ev.(*TransparencyAlert); ok && got == nil {
			got = a
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Kind != AlertIdentityKey && got.Kind != AlertUnexplained {
		t.Fatalf("alert %+v", got)
	}
}

// TestTransparencyAuditors: a client that requires an auditor's
// cosignature takes lookups the auditor cosigned, and refuses those of a
// log without them.
func TestTransparencyAuditors(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	vkey := k.withAuditor()
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	if err := alice.RequireAuditor(ctxT(t), vkey, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	st, err := alice.TransparencyStatus(ctxT(t))
	if err != nil || len(st.Policy.Auditors) != 1 || st.Policy.Cosignatures != 1 || st.Policy.MaxAuditLag != time.Hour {
		t.Fatalf("policy %+v, %v", st, err)
	}
	if err := alice.RequireAuditor(ctxT(t), vkey, 2, 0); err == nil {
		t.Fatal("two cosignatures of one auditor accepted")
	}
	mustSend(t, alice, "bob", "audited")
	wantTexts(t, receive(t, bob), "alice", "audited")

	// Another auditor, whose cosignatures the server does not have.
	_, other, err := kt.GenerateCosignerKey(nil, "other.test")
	if err != nil {
		t.Fatal(err)
	}
	carol, _ := s.register(t, "carol", Options{Auditors: []string{other}})
	_, err = carol.Send(ctxT(t), "bob", "unaudited")
	if !errors.Is(err, ErrTransparency) || !errors.Is(err, kt.ErrMissingCosignature) {
		t.Fatalf("without the auditor's cosignature: %v", err)
	}
	if _, err := Open(t.TempDir(), Options{Auditors: []string{"not a key"}}); err == nil {
		t.Fatal("a malformed auditor key was accepted")
	}
}

// TestLinkedDevicePinsPrimarysLog: a linked device follows the log its
// primary pinned (from the provisioning message), from its head, with its
// auditors.
func TestLinkedDevicePinsPrimarysLog(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	vkey := k.withAuditor()
	alice, _ := s.register(t, "alice", Options{})
	if err := alice.RequireAuditor(ctxT(t), vkey, 1, 0); err != nil {
		t.Fatal(err)
	}
	pl, err := alice.pinnedLog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	laptop, _ := s.link(t, alice, "alice-laptop")
	ll, err := laptop.pinnedLog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if ll.Origin != pl.Origin || ll.LogKey != pl.LogKey || !bytes.Equal(ll.VRFKey, pl.VRFKey) ||
		!slices.Equal(ll.Auditors, pl.Auditors) || ll.Cosignatures != 1 || ll.HeadSize < pl.HeadSize {
		t.Fatalf("the linked device pinned %+v, the primary %+v", ll, pl)
	}
}

// TestReplyToUnprovenKeyRefused: bob's key for alice came with her first
// message; when the log holds another key for her account by the time he
// replies, nothing is encrypted to either: the server's keys are not the
// log's.
func TestReplyToUnprovenKeyRefused(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "hello")
	wantTexts(t, receive(t, bob), "alice", "hello")

	real, _ := k.publishGhost("alice")
	before := sessionsWith(t, bob, alice.AccountID())
	if _, err := bob.Send(ctxT(t), "alice", "reply"); !errors.Is(err, ErrTransparency) {
		t.Fatalf("reply: %v", err)
	}
	if evs := receive(t, alice); len(evs) != 0 {
		t.Fatalf("alice got %v", evs)
	}
	if after := sessionsWith(t, bob, alice.AccountID()); !slices.Equal(before, after) {
		t.Fatalf("bob's sessions with alice changed from %v to %v", before, after)
	}
	// Once the log holds her key again, the reply goes, on the session
	// her message started.
	k.publishAccount("alice", real.IdentityKey, real.DeviceList)
	mustSend(t, bob, "alice", "reply")
	wantTexts(t, receive(t, alice), "bob", "reply")
}

// TestGroupMemberVerified: a group member joins with the key the log holds
// for them; a member known from a message whose key the log does not hold
// is refused.
func TestGroupMemberVerified(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})
	mustSend(t, carol, "alice", "hi alice")
	wantTexts(t, receive(t, alice), "carol", "hi alice")

	real, _ := k.publishGhost("carol")
	if _, err := alice.CreateGroup(ctxT(t), "friends", "bob", "carol"); !errors.Is(err, ErrTransparency) {
		t.Fatalf("a group with carol under a key the log does not hold: %v", err)
	}
	k.publishAccount("carol", real.IdentityKey, real.DeviceList)
	if _, err := alice.CreateGroup(ctxT(t), "friends", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "#friends", "welcome")
	for _, c := range []*Client{bob, carol} {
		var got []string
		for _, m := range messages(receive(t, c)) {
			got = append(got, m.Text)
		}
		if !slices.Contains(got, "welcome") {
			t.Fatalf("%s got %q", c.Username(), got)
		}
	}
}

// TestMonitorDue: the owner monitor runs once its interval has passed
// since the last check, and not before.
func TestMonitorDue(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	checked := func() time.Time { return ownerState(t, alice).Checked }
	t0 := checked()
	if t0.IsZero() {
		t.Fatal("registration did not check")
	}
	alice.now = func() time.Time { return t0.Add(30 * time.Minute) }
	alice.monitorIfDue(ctxT(t))
	if got := checked(); !got.Equal(t0) {
		t.Fatalf("checked at %v, half an interval after %v", got, t0)
	}
	later := t0.Add(DefaultMonitorInterval + time.Minute)
	alice.now = func() time.Time { return later }
	// (The log's clock moves with the client's: it makes its epochs
	// meanwhile, or the check would find it stale.)
	k.setClock(later)
	k.publish()
	alice.monitorIfDue(ctxT(t))
	if got := checked(); !got.Equal(later.Truncate(time.Millisecond)) {
		t.Fatalf("checked at %v, want %v", got, later)
	}
}

// TestFrozenViewOwner: the server keeps alice's devices on the log as it
// was before it published a ghost key for her, while bob sees the log with
// the ghost: both views are consistent (one extends the other), so only
// the age of alice's newest epoch gives it away. Within the hour her check
// passes; once her log is over an hour old (the server makes an epoch
// every ten minutes) her check fails closed and raises one stale alert,
// however often it runs, while a client that allows a day notices nothing.
// Shown the real log again, she finds the ghost.
func TestFrozenViewOwner(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, dir := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	k.freezeFor(alice.AccountID())
	_, ghost := k.publishGhost("alice")
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("check on the frozen log, within the hour: %v", err)
	}

	// An hour and a minute later: the log bob sees moved on (an empty
	// epoch), alice's did not.
	later := time.Now().Add(DefaultMaxEpochAge + time.Minute)
	k.setClock(later)
	k.publish()
	bob.now = func() time.Time { return later }
	if v, err := bob.lookup(ctxT(t), "alice"); err != nil || !bytes.Equal(v.IdentityKey, ghost.Public.Bytes()) {
		t.Fatalf("bob's lookup of alice on the fresh log: %+v, %v", v, err)
	}
	alice.now = func() time.Time { return later }
	err := alice.CheckTransparency(ctxT(t))
	if !errors.Is(err, ErrTransparency) || !errors.Is(err, kt.ErrStale) {
		t.Fatalf("check on a frozen log an hour old: %v, want ErrTransparency and kt.ErrStale", err)
	}
	as := alertsOf(t, alice)
	if len(as) != 1 || as[0].Kind != AlertStale || as[0].Subject != "alice" || !strings.Contains(as[0].Detail, "has not moved since") {
		t.Fatalf("alerts %+v, want one stale alert", as)
	}
	// Later checks of the same frozen log add nothing.
	alice.now = func() time.Time { return later.Add(time.Hour) }
	alice.CheckTransparency(ctxT(t))
	if as := alertsOf(t, alice); len(as) != 1 {
		t.Fatalf("alerts after a second check %+v", as)
	}
	// Without the check (a day allowed), the frozen log passes: the gap.
	alice.Close()
	lax, err := Open(dir, Options{MaxEpochAge: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lax.Close() })
	lax.now = func() time.Time { return later }
	if err := lax.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("a day allowed: %v", err)
	}

	// Shown the log everyone sees, alice finds the ghost.
	k.unfreeze(alice.AccountID())
	if as := checkAlerts(t, lax, "check on the real log"); !hasAlert(as, AlertIdentityKey) {
		t.Fatalf("alerts %+v", as)
	}
}

// TestStaleLogRefused: a log whose newest epoch is over an hour older than
// the client's clock, or that far ahead of it, fails a send closed (nothing
// encrypted) and a lookup, with kt.ErrStale; a fresh epoch lets them
// through. Options.MaxEpochAge makes the bound stricter or looser.
func TestStaleLogRefused(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, bdir := s.register(t, "bob", Options{})
	if st, err := bob.TransparencyStatus(ctxT(t)); err != nil || st.Policy.MaxEpochAge != DefaultMaxEpochAge {
		t.Fatalf("bob's policy %+v, %v", st.Policy, err)
	}

	start := time.Now()
	later := start.Add(DefaultMaxEpochAge + time.Minute)
	bob.now = func() time.Time { return later }
	_, err := bob.Send(ctxT(t), "alice", "hi")
	wantRefused(t, err, kt.ErrStale, bob, alice)
	if _, err := bob.lookup(ctxT(t), "alice"); !errors.Is(err, ErrTransparency) || !errors.Is(err, kt.ErrStale) {
		t.Fatalf("lookup of a stale log: %v", err)
	}
	// A contact's lookup raises no alert: only the owner's check does.
	if as := alertsOf(t, bob); len(as) != 0 {
		t.Fatalf("bob's alerts %+v", as)
	}
	// A clock two hours behind: the log is ahead of it.
	bob.now = func() time.Time { return start.Add(-2 * time.Hour) }
	if _, err := bob.lookup(ctxT(t), "alice"); !errors.Is(err, kt.ErrStale) {
		t.Fatalf("lookup of a log ahead of the clock: %v", err)
	}
	bob.CheckTransparency(ctxT(t))
	if as := alertsOf(t, bob); len(as) != 1 || as[0].Kind != AlertStale || !strings.Contains(as[0].Detail, "ahead of this device's clock") {
		t.Fatalf("bob's alerts with his clock behind %+v", as)
	}

	// The server makes an epoch: the log is fresh again.
	k.setClock(later)
	k.publish()
	bob.now = func() time.Time { return later }
	alice.now = bob.now
	mustSend(t, bob, "alice", "hi")
	wantTexts(t, receive(t, alice), "bob", "hi")

	// Stricter: ten minutes, and the log is 30 minutes old; looser: two
	// hours, and it is 90 minutes old.
	bob.Close()
	for _, c := range []struct {
		age  time.Duration
		at   time.Duration
		want error
	}{
		{10 * time.Minute, 30 * time.Minute, kt.ErrStale},
		{10 * time.Minute, 5 * time.Minute, nil},
		{2 * time.Hour, 90 * time.Minute, nil},
		{2 * time.Hour, 121 * time.Minute, kt.ErrStale},
	} {
		b, err := Open(bdir, Options{MaxEpochAge: c.age})
		if err != nil {
			t.Fatal(err)
		}
		b.now = func() time.Time { return later.Add(c.at) }
		_, err = b.lookup(ctxT(t), "alice")
		b.Close()
		if !errors.Is(err, c.want) || c.want == nil && err != nil {
			t.Fatalf("MaxEpochAge %v, log %v old: %v, want %v", c.age, c.at, err, c.want)
		}
	}
	if _, err := Open(bdir, Options{MaxEpochAge: -time.Minute}); err == nil {
		t.Fatal("a negative MaxEpochAge accepted")
	}
}

// failingTransport fails every request, as a device without a network.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network")
}

// TestOwnerCheckFailingAlerts: the server answers alice's own lookups with
// a 404, a 500 or a proof that does not verify, while it logs a ghost key
// for her and serves bob the proof of it. Her failing checks raise no
// alert for three monitoring intervals after the last that succeeded, then
// one unchecked alert, however often they fail; a device without a
// network gets it too, and Receive's monitor raises it.
func TestOwnerCheckFailingAlerts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		refuse  func(k *ktLog)
		offline bool
	}{
		{name: "404", refuse: func(k *ktLog) { k.refuseLookups("alice", http.StatusNotFound) }},
		{name: "500", refuse: func(k *ktLog) { k.refuseLookups("alice", http.StatusInternalServerError) }},
		{name: "bad proof", refuse: func(k *ktLog) { k.refuseLookups("alice", badProof) }},
		{name: "offline", offline: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, k := newKTServer(t, nil)
			alice, dir := s.register(t, "alice", Options{})
			bob, _ := s.register(t, "bob", Options{})
			wantQuiet(t, alice, 0, 1)
			last := ownerState(t, alice).Checked
			if c.offline {
				alice.Close()
				var err error
				alice, err = Open(dir, Options{HTTPClient: &http.Client{Transport: failingTransport{}}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { alice.Close() })
			} else {
				c.refuse(k)
			}
			_, ghost := k.publishGhost("alice")
			if v, err := bob.lookup(ctxT(t), "alice"); err != nil || !bytes.Equal(v.IdentityKey, ghost.Public.Bytes()) {
				t.Fatalf("bob's lookup of alice: %+v, %v", v, err)
			}

			// (The log makes its epochs as the clock goes: it is never
			// stale.)
			at := func(d time.Duration) {
				tm := last.Add(d)
				k.setClock(tm)
				k.publish()
				alice.now = func() time.Time { return tm }
			}
			// Within three intervals of the last check that succeeded:
			// a failure, not an alert.
			at(3 * DefaultMonitorInterval)
			if err := alice.CheckTransparency(ctxT(t)); err == nil || errors.Is(err, ErrTransparencyAlert) {
				t.Fatalf("alice's check: %v, want a failure", err)
			}
			if as := alertsOf(t, alice); len(as) != 0 {
				t.Fatalf("alerts within the bound: %+v", as)
			}
			// Past them: the alert, from the check Receive's monitor makes.
			at(3*DefaultMonitorInterval + time.Minute)
			alice.monitorIfDue(ctxT(t))
			as := alertsOf(t, alice)
			if len(as) != 1 || as[0].Kind != AlertUnchecked || as[0].Subject != "alice" || !strings.Contains(as[0].Detail, "for over 3h") ||
				!strings.Contains(as[0].Detail, last.UTC().Format(time.RFC3339)) {
				t.Fatalf("alerts %+v, want one unchecked alert", as)
			}
			// It stays one alert while the checks go on failing.
			at(10 * DefaultMonitorInterval)
			alice.CheckTransparency(ctxT(t))
			if as := alertsOf(t, alice); len(as) != 1 {
				t.Fatalf("alerts after more failures %+v", as)
			}
			st, err := alice.TransparencyStatus(ctxT(t))
			if err != nil || !st.LastCheck.Equal(last) || st.UncheckedAfter != 3*DefaultMonitorInterval || len(st.Alerts) != 1 {
				t.Fatalf("status %+v, %v", st, err)
			}
		})
	}
}

// TestJoinCheckMustSucceed: the server fails alice's lookups right after
// she registers, publishes a ghost key for her and takes it back (two
// counter steps), and lets a later check through. Registration keeps the
// account, but raises an unchecked alert at once, and the check that
// finally takes the base says when it took it. A check that fails once
// and then succeeds within registration raises nothing; a linked device
// whose first check fails gets the alert too.
func TestJoinCheckMustSucceed(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	k.refuseLookups("alice", http.StatusInternalServerError)
	alice, _ := s.register(t, "alice", Options{})
	as := alertsOf(t, alice)
	if len(as) != 1 || as[0].Kind != AlertUnchecked || !strings.Contains(as[0].Detail, "right after this device joined did not succeed") {
		t.Fatalf("alerts after a registration whose check failed: %+v", as)
	}
	if st := ownerState(t, alice); st.Baseline() || !st.JoinUnchecked || !st.Checked.IsZero() {
		t.Fatalf("owner state %+v, want no base, the join unchecked", st)
	}
	real, _ := k.publishGhost("alice")
	k.publishAccount("alice", real.IdentityKey, real.DeviceList)
	k.refuseLookups("alice", 0)
	as = checkAlerts(t, alice, "the first check that succeeds")
	if len(as) != 2 || as[1].Kind != AlertUnchecked || !strings.Contains(as[1].Detail, "not right after this device joined") ||
		!strings.Contains(as[1].Detail, "(version 2, device list version 1)") {
		t.Fatalf("alerts once the base is taken: %+v", as)
	}
	if st := ownerState(t, alice); !st.Baseline() || st.Base != 2 || st.JoinUnchecked {
		t.Fatalf("owner state %+v", st)
	}
	// Later checks go on quietly from that base.
	alice.ClearTransparencyAlerts(ctxT(t), as[1].ID)
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("a later check: %v", err)
	}
	wantQuiet(t, alice, 2, 1)

	// A linked device whose first check fails: the alert, on it alone.
	k.refuseLookups("alice", http.StatusNotFound)
	laptop, _ := s.link(t, alice, "alice-laptop")
	if as := alertsOf(t, laptop); len(as) != 1 || as[0].Kind != AlertUnchecked {
		t.Fatalf("the laptop's alerts %+v", as)
	}
	if as := alertsOf(t, alice); len(as) != 0 {
		t.Fatalf("alice's alerts %+v", as)
	}
	k.refuseLookups("alice", 0)

	// A check that fails once, then succeeds, within registration.
	var fails int
	k.setTamper(func(username string, p []byte) []byte {
		if username == "carol" && fails < 1 {
			fails++
			return nil
		}
		return p
	})
	carol, _ := s.register(t, "carol", Options{})
	if fails != 1 {
		t.Fatalf("carol's check failed %d times", fails)
	}
	wantQuiet(t, carol, 0, 1)
}

// TestDeviceAddedByAnotherDevice: a device another device of the account
// added (approving a link) is a notice on the others, once; the device
// that approved it, and the new device, see nothing. A removed device,
// which still holds the identity key, that signs a list naming itself again
// (which the server publishes, in order: the counter rule is content) is
// caught by the device that removed it.
func TestDeviceAddedByAnotherDevice(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	laptop, _ := s.link(t, alice, "alice-laptop")
	wantQuiet(t, alice, 0, 2)
	wantQuiet(t, laptop, 0, 2)
	tablet, _ := s.link(t, laptop, "alice-tablet")
	wantQuiet(t, laptop, 0, 3)
	wantQuiet(t, tablet, 0, 3)
	as := checkAlerts(t, alice, "alice's check")
	if len(as) != 1 || as[0].Kind != AlertDeviceAdded || as[0].Device != tablet.DeviceID() ||
		!strings.Contains(as[0].Detail, fmt.Sprintf("device %d was added to your account by another of its devices", tablet.DeviceID())) {
		t.Fatalf("alice's alerts %+v", as)
	}
	// Once.
	if err := alice.CheckTransparency(ctxT(t)); err != nil {
		t.Fatalf("a second check: %v", err)
	}
	if n := len(alertsOf(t, alice)); n != 1 {
		t.Fatalf("%d alerts after a second check", n)
	}
	alice.ClearTransparencyAlerts(ctxT(t), as[0].ID)

	// Alice removes the laptop; it was stolen, and signs the next list
	// with itself on it again.
	if err := alice.RemoveDevice(ctxT(t), laptop.DeviceID()); err != nil {
		t.Fatal(err)
	}
	wantQuiet(t, alice, 0, 4)
	cur, err := devicelist.Verify(alice.identity.Public, k.account("alice").DeviceList)
	if err != nil {
		t.Fatal(err)
	}
	back, err := cur.With(laptop.DeviceID(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blob, err := devicelist.Sign(laptop.identity.Private, back, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.publishAccount("alice", alice.identity.Public.Bytes(), blob)
	as = checkAlerts(t, alice, "alice's check after the laptop added itself back")
	if len(as) != 1 || as[0].Kind != AlertDeviceAdded || as[0].Device != laptop.DeviceID() {
		t.Fatalf("alice's alerts after the laptop added itself back %+v", as)
	}
	if st := ownerState(t, alice); st.ListVersion != 5 || st.Base != 0 {
		t.Fatalf("owner state %+v", st)
	}
}

// TestSafetyNumberFromLog: bob's key for alice came with her first message;
// the log holds a ghost key for her. Bob's safety number for her is over
// the key the log holds (the one a send would encrypt to), looked up before
// it is shown, so comparing it with hers shows the ghost; once the log
// holds her key again and bob has looked it up, the numbers match.
func TestSafetyNumberFromLog(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "hello")
	wantTexts(t, receive(t, bob), "alice", "hello")
	// The ghost key comes with a device list it signed.
	real := k.account("alice")
	ghost, _ := keys.GenerateKeyPair(nil)
	ghostList, err := devicelist.Sign(ghost.Private, &devicelist.List{Version: 1, Timestamp: time.Now().UnixMilli(), Devices: []uint32{1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.publishAccount("alice", ghost.Public.Bytes(), ghostList)

	hers, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	his, err := bob.SafetyNumber(ctxT(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if l := labelState(t, bob, kt.UsernameLabel("alice")); l == nil || !l.Present {
		t.Fatal("bob showed a safety number without looking alice up")
	}
	if his.Displayable == hers.Displayable {
		t.Fatal("bob's safety number is over a key the log does not hold: it matches alice's, and hides the ghost")
	}
	ghostNumber, err := bob.fingerprint(alice.AccountID(), ghost.Public)
	if err != nil || his.Displayable != ghostNumber.Displayable() {
		t.Fatalf("bob's number is not over the log's key: %v", err)
	}

	// The log holds her key again, and bob looks her up (as a send does
	// when his view is an hour old).
	k.publishAccount("alice", real.IdentityKey, real.DeviceList)
	if _, err := bob.lookup(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	if his, err = bob.SafetyNumber(ctxT(t), "alice"); err != nil || his.Displayable != hers.Displayable {
		t.Fatalf("bob's number once the log holds alice's key: %+v, %v; hers %s", his, err, hers.Displayable)
	}
}
