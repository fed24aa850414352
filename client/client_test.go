package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

func TestConversationBothWays(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{Passphrase: "bob's passphrase"})

	before := time.Now().Add(-time.Second)
	for _, text := range []string{"hello bob", "", "ünïcödé ✓"} {
		res := mustSend(t, alice, "bob", text)
		if res.Devices != 1 || res.IdentityChanged {
			t.Fatalf("send result %+v", res)
		}
	}
	evs := receive(t, bob)
	wantTexts(t, evs, "alice", "hello bob", "", "ünïcödé ✓")
	m := evs[0].(*Message)
	if m.FromDevice != 1 || m.IdentityChanged || !api.ValidUUID(m.ID) || m.Sent.Before(before) || m.Received.Before(m.Sent.Add(-time.Minute)) {
		t.Errorf("message %+v", m)
	}

	mustSend(t, bob, "alice", "hi alice")
	wantTexts(t, receive(t, alice), "bob", "hi alice")
	mustSend(t, alice, "bob", "how are you")
	mustSend(t, bob, "alice", "fine")
	wantTexts(t, receive(t, bob), "alice", "how are you")
	wantTexts(t, receive(t, alice), "bob", "fine")

	// Nothing more, and nothing dropped.
	if evs := receive(t, bob); len(evs) != 0 {
		t.Errorf("extra events %v", evs)
	}
	if alice.Stats().Dropped != 0 || bob.Stats().Dropped != 0 {
		t.Errorf("dropped: %d, %d", alice.Stats().Dropped, bob.Stats().Dropped)
	}
}

func TestOfflineRecipientGetsEverythingInOrder(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	want := numbered("message", 100) // more than the server's window of 64
	for _, text := range want {
		mustSend(t, alice, "bob", text)
	}
	wantTexts(t, receive(t, bob), "alice", want...)
}

func TestReopenedProfileContinues(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, bobDir := s.register(t, "bob", Options{Passphrase: "pw"})
	mustSend(t, alice, "bob", "one")
	wantTexts(t, receive(t, bob), "alice", "one")
	bob.Close()

	if _, err := Open(bobDir, Options{Passphrase: "wrong"}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open with a wrong passphrase: %v", err)
	}
	if _, err := Open(bobDir, Options{}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open without the passphrase: %v", err)
	}
	bob2, err := Open(bobDir, Options{Passphrase: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	if bob2.Username() != "bob" || bob2.AccountID() != bob.AccountID() || bob2.DeviceID() != 1 || bob2.ServerURL() != s.url {
		t.Errorf("reopened: %s %s %d %s", bob2.Username(), bob2.AccountID(), bob2.DeviceID(), bob2.ServerURL())
	}
	mustSend(t, bob2, "alice", "two")
	wantTexts(t, receive(t, alice), "bob", "two")
	mustSend(t, alice, "bob", "three")
	wantTexts(t, receive(t, bob2), "alice", "three")
}

// TestRedeliveryNotHandedTwice: when acks are lost the server sends the
// envelopes again; they are acknowledged and never handed over twice.
func TestRedeliveryNotHandedTwice(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	want := numbered("m", 5)
	for _, text := range want {
		mustSend(t, alice, "bob", text)
	}
	bob.noAck = true
	wantTexts(t, receive(t, bob), "alice", want...)
	bob.noAck = false
	if evs := receive(t, bob); len(evs) != 0 {
		t.Fatalf("redelivered envelopes handed over again: %v", evs)
	}
	if r := bob.Stats().Redelivered; r != int64(len(want)) {
		t.Fatalf("%d envelopes redelivered, want %d", r, len(want))
	}
	// The redeliveries were acknowledged this time.
	mustSend(t, alice, "bob", "new")
	wantTexts(t, receive(t, bob), "alice", "new")
	if bob.Stats().Dropped != 0 {
		t.Errorf("dropped %d", bob.Stats().Dropped)
	}
}

// TestHandlerErrorKeepsEvent: an event whose handler fails is handed over
// again by the next Receive, and nothing is lost or repeated.
func TestHandlerErrorKeepsEvent(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	want := numbered("m", 6)
	for _, text := range want {
		mustSend(t, alice, "bob", text)
	}
	errFull := errors.New("disk full")
	var got []string
	n := 0
	err := bob.Receive(ctxT(t), ReceiveOptions{UntilEmpty: true}, func(ev Event) error {
		if n++; n == 3 {
			return errFull
		}
		got = append(got, ev.(*Message).Text)
		return nil
	})
	if !errors.Is(err, errFull) {
		t.Fatalf("Receive = %v, want the handler's error", err)
	}
	got = append(got, texts(t, receive(t, bob), "alice")...)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSafetyNumbers(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	// Before any message: the key comes from the server.
	a, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bob.SafetyNumber(ctxT(t), "Alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Displayable) != 60 || a.Displayable != b.Displayable || a.Verified || a.Username != "bob" {
		t.Fatalf("safety numbers %+v and %+v", a, b)
	}
	if len(a.Scannable) == 0 {
		t.Error("no scannable fingerprint")
	}
	wrong := []byte(a.Displayable)
	wrong[7] = '0' + (wrong[7]-'0'+1)%10
	if err := alice.Verify(ctxT(t), "bob", string(wrong)); !errors.Is(err, ErrSafetyNumberMismatch) {
		t.Fatalf("Verify of a wrong number: %v", err)
	}
	if err := alice.Verify(ctxT(t), "bob", a.Displayable[:59]); !errors.Is(err, ErrSafetyNumberMismatch) {
		t.Fatalf("Verify of a short number: %v", err)
	}
	spaced := ""
	for i := 0; i < 60; i += 5 {
		spaced += a.Displayable[i:i+5] + " "
	}
	if err := alice.Verify(ctxT(t), "bob", spaced); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	a2, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil || !a2.Verified || a2.Displayable != a.Displayable {
		t.Fatalf("after Verify: %+v, %v", a2, err)
	}
	// Messages flow to a verified contact.
	mustSend(t, alice, "bob", "verified hello")
	wantTexts(t, receive(t, bob), "alice", "verified hello")

	if _, err := alice.SafetyNumber(ctxT(t), "nobody"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("SafetyNumber of an unknown user: %v", err)
	}
}

// replaceIdentity gives c a new identity key pair, as if the user had
// reinstalled: the server still holds the old key, but every session c
// starts from now on carries the new one. c's sessions are forgotten.
func replaceIdentity(t *testing.T, c *Client) {
	t.Helper()
	kp, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.st.Update(ctxT(t), func(tx *profile.Tx) error {
		if err := tx.ReplaceIdentity(kp); err != nil {
			return err
		}
		for _, name := range []string{"alice", "bob"} {
			ct, err := tx.Contact(name)
			if err != nil {
				return err
			}
			if ct != nil {
				if err := forgetSessions(tx, ct.AccountID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.identity = kp
}

// TestIdentityChangeOnReceive: a message under a new identity key from a
// verified contact is delivered, announced by an IdentityChanged event just
// before it, and marked, as is the next one; the trusted key stays, and the
// safety number is over the key the log holds.
func TestIdentityChangeOnReceive(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, bob, "alice", "before")
	wantTexts(t, receive(t, alice), "bob", "before")
	sn, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Verify(ctxT(t), "bob", sn.Displayable); err != nil {
		t.Fatal(err)
	}

	replaceIdentity(t, bob)
	mustSend(t, bob, "alice", "after")
	mustSend(t, bob, "alice", "after again")
	evs := receive(t, alice)
	if len(evs) != 3 {
		t.Fatalf("events %v", evs)
	}
	ic, ok := evs[0].(*IdentityChanged)
	if !ok || ic.Username != "bob" || !ic.Verified {
		t.Fatalf("first event %#v, want IdentityChanged for verified bob", evs[0])
	}
	if m := evs[1].(*Message); m.Text != "after" || !m.IdentityChanged {
		t.Fatalf("second event %#v", m)
	}
	if m := evs[2].(*Message); m.Text != "after again" || !m.IdentityChanged {
		t.Fatalf("third event %#v, want it marked too: the key is not verified", m)
	}
	var trusted *profile.Contact
	err = alice.st.View(ctxT(t), func(tx *profile.Tx) error {
		trusted, err = tx.Contact("bob")
		return err
	})
	if err != nil || !trusted.Verified || trusted.PendingKey == nil {
		t.Fatalf("bob's contact after the change: %+v, %v; want verified, with the new key pending", trusted, err)
	}
	// Bob's new key never reached the server: the transparency log still
	// holds the old one. Alice's safety number is over the key the log
	// holds, the one she verified; the new key, which the log does not
	// hold, is dropped. Bob's number, over his new key, differs: comparing
	// them shows the change, and alice cannot verify his.
	sn2, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !sn2.Verified || sn2.Displayable != sn.Displayable {
		t.Fatalf("after the change: %+v (before %s)", sn2, sn.Displayable)
	}
	err = alice.st.View(ctxT(t), func(tx *profile.Tx) error {
		trusted, err = tx.Contact("bob")
		return err
	})
	if err != nil || !trusted.Verified || trusted.PendingKey != nil {
		t.Fatalf("bob's contact after the safety number: %+v, %v; want verified, nothing pending", trusted, err)
	}
	bsn, err := bob.SafetyNumber(ctxT(t), "alice")
	if err != nil || bsn.Displayable == sn2.Displayable {
		t.Fatalf("bob's number %v, %v; alice's %s", bsn, err, sn2.Displayable)
	}
	if err := alice.Verify(ctxT(t), "bob", bsn.Displayable); !errors.Is(err, ErrSafetyNumberMismatch) {
		t.Fatalf("alice verifies bob's number over a key the log does not hold: %v", err)
	}
}

// setContactKey makes c believe it had trusted another key for username, as
// if the server now presented a changed one.
func setContactKey(t *testing.T, c *Client, username string, verified bool) {
	t.Helper()
	kp, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.st.Update(ctxT(t), func(tx *profile.Tx) error {
		ct, err := tx.Contact(username)
		if err != nil {
			return err
		}
		ct.IdentityKey, ct.Verified = kp.Public, verified
		return tx.PutContact(ct, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifiedContactChangedKeyRefused(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "first")
	wantTexts(t, receive(t, bob), "alice", "first")

	setContactKey(t, alice, "bob", true)
	if _, err := alice.Send(ctxT(t), "bob", "must not arrive"); !errors.Is(err, ErrUntrustedIdentity) {
		t.Fatalf("Send to a verified contact with a changed key: %v", err)
	}
	if evs := receive(t, bob); len(evs) != 0 {
		t.Fatalf("bob got %v", evs)
	}
	// The safety number shown is over the key the server presents now,
	// which is bob's real one: the same bob sees.
	a, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bob.SafetyNumber(ctxT(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.Verified || a.Displayable != b.Displayable {
		t.Fatalf("alice sees %+v, bob %s", a, b.Displayable)
	}
	if _, err := alice.Send(ctxT(t), "bob", "still not"); !errors.Is(err, ErrUntrustedIdentity) {
		t.Fatalf("second Send: %v", err)
	}
	if err := alice.Verify(ctxT(t), "bob", b.Displayable); err != nil {
		t.Fatal(err)
	}
	res := mustSend(t, alice, "bob", "re-verified")
	if res.IdentityChanged {
		t.Error("IdentityChanged after re-verification")
	}
	wantTexts(t, receive(t, bob), "alice", "re-verified")
	if a, _ := alice.SafetyNumber(ctxT(t), "bob"); !a.Verified {
		t.Error("not verified after Verify")
	}
}

func TestUnverifiedContactChangedKeyAccepted(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "first")
	setContactKey(t, alice, "bob", false)
	res := mustSend(t, alice, "bob", "second")
	if !res.IdentityChanged || res.Devices != 1 {
		t.Fatalf("send result %+v", res)
	}
	wantTexts(t, receive(t, bob), "alice", "first", "second")
	if res := mustSend(t, alice, "bob", "third"); res.IdentityChanged {
		t.Error("IdentityChanged reported twice")
	}
}

// TestRefill: after other users took most of bob's one-time prekeys, the
// server asks bob's device to refill, and it does.
func TestRefill(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	if ks := keyStatus(t, bob); ks.PreKeys != targetPreKeys || ks.KyberPreKeys != targetPreKeys {
		t.Fatalf("after registration: %+v", ks)
	}
	for range targetPreKeys - api.RefillThreshold + 1 {
		var br api.BundleResponse
		if err := alice.do(ctxT(t), http.MethodGet, bundlePath("bob", 1), nil, &br); err != nil {
			t.Fatal(err)
		}
	}
	if ks := keyStatus(t, bob); ks.PreKeys >= api.RefillThreshold {
		t.Fatalf("after draining: %+v", ks)
	}
	receive(t, bob)
	if ks := keyStatus(t, bob); ks.PreKeys != targetPreKeys || ks.KyberPreKeys != targetPreKeys {
		t.Fatalf("after refill: %+v", ks)
	}
	// The new keys work.
	mustSend(t, alice, "bob", "after refill")
	wantTexts(t, receive(t, bob), "alice", "after refill")
}

// TestUsedPreKeysDeleted: a session's first message consumes the one-time
// prekeys it used, locally too.
func TestUsedPreKeysDeleted(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	counts := func() (int, int) {
		var p, k int
		bob.st.View(ctxT(t), func(tx *profile.Tx) error {
			var err error
			p, k, err = tx.KeyCounts()
			return err
		})
		return p, k
	}
	p0, k0 := counts()
	mustSend(t, alice, "bob", "hi")
	receive(t, bob)
	if p, k := counts(); p != p0-1 || k != k0-1 {
		t.Fatalf("local one-time keys %d, %d; before %d, %d", p, k, p0, k0)
	}
}

// TestTwoProcessesShareProfile: one Client receives while another, on the
// same profile, sends to the same peer: the session record is shared and
// no update is lost.
func TestTwoProcessesShareProfile(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bobListen, bobDir := s.register(t, "bob", Options{Passphrase: "pw"})
	bobSend, err := Open(bobDir, Options{Passphrase: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer bobSend.Close()

	const n = 15
	ctx, cancel := context.WithCancel(ctxT(t))
	var (
		mu      sync.Mutex
		got     []string
		fromBob []string
		wg      sync.WaitGroup
	)
	all := make(chan struct{})
	wg.Go(func() {
		err := bobListen.Receive(ctx, ReceiveOptions{}, func(ev Event) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev.(*Message).Text)
			if len(got) == n {
				close(all)
			}
			return nil
		})
		if err != nil {
			t.Errorf("streaming Receive: %v", err)
		}
	})
	wg.Go(func() {
		for i := range n {
			if _, err := bobSend.Send(ctx, "alice", fmt.Sprint("from bob ", i)); err != nil {
				t.Errorf("bob sends: %v", err)
				return
			}
		}
	})
	for i := range n {
		mustSend(t, alice, "bob", fmt.Sprint("from alice ", i))
		if i%5 == 4 {
			// Alice reads bob's messages meanwhile, so that the
			// ratchet turns both ways.
			fromBob = append(fromBob, texts(t, receive(t, alice), "bob")...)
		}
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatal("bob did not get every message")
	}
	cancel()
	wg.Wait()
	fromBob = append(fromBob, texts(t, receive(t, alice), "bob")...)
	if fmt.Sprint(got) != fmt.Sprint(numbered("from alice", n)) {
		t.Errorf("bob got %q", got)
	}
	if fmt.Sprint(fromBob) != fmt.Sprint(numbered("from bob", n)) {
		t.Errorf("alice got %q", fromBob)
	}
	if bobListen.Stats().Dropped+alice.Stats().Dropped != 0 {
		t.Errorf("dropped %d, %d", bobListen.Stats().Dropped, alice.Stats().Dropped)
	}
}

// TestStreamingReconnects: a streaming Receive survives its connection being
// cut, and returns nil when its context is cancelled.
func TestStreamingReconnects(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	var k cutter
	_, bobDir := s.register(t, "bob", Options{})
	bob, err := Open(bobDir, Options{HTTPClient: k.client()})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- bob.Receive(ctx, ReceiveOptions{}, func(ev Event) error {
			got <- ev.(*Message).Text
			return nil
		})
	}()
	next := func() string {
		select {
		case s := <-got:
			return s
		case <-ctx.Done():
			t.Fatal("no message")
			return ""
		}
	}
	mustSend(t, alice, "bob", "one")
	if s := next(); s != "one" {
		t.Fatalf("got %q", s)
	}
	k.cut()
	mustSend(t, alice, "bob", "two")
	if s := next(); s != "two" {
		t.Fatalf("got %q", s)
	}
	k.mu.Lock()
	dials := k.dials
	k.mu.Unlock()
	if dials < 2 {
		t.Errorf("%d dials: no reconnection", dials)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Receive after cancel = %v, want nil", err)
	}
}

func TestUntilEmptyCancelled(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	bob, _ := s.register(t, "bob", Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := bob.Receive(ctx, ReceiveOptions{UntilEmpty: true}, func(Event) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("UntilEmpty Receive with a cancelled context = %v", err)
	}
	if err := bob.Receive(ctx, ReceiveOptions{}, func(Event) error { return nil }); err != nil {
		t.Fatalf("streaming Receive with a cancelled context = %v", err)
	}
}

// TestBadEnvelopesDropped: garbage and a replayed ciphertext sent through
// the server are acknowledged and dropped, and the conversation goes on.
func TestBadEnvelopesDropped(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "real")

	// Encrypt a message as Send does, to send it twice.
	msgs, commitment, err := alice.encryptFor(ctxT(t), "bob", textContent("replayed"), nil, new(SendResult))
	if err != nil {
		t.Fatal(err)
	}
	captured := msgs[0]
	rawSend := func(m api.OutgoingMessage) {
		t.Helper()
		req := &api.SendRequest{ID: api.NewUUID(), Timestamp: time.Now().UnixMilli(), Franking: commitment, Messages: []api.OutgoingMessage{m}}
		if _, err := alice.putMessages(ctxT(t), "bob", req, nil); err != nil {
			t.Fatal(err)
		}
	}
	rawSend(captured)
	rawSend(captured)
	garbage := captured
	garbage.Content = []byte("not a signal message at all")
	rawSend(garbage)
	garbage.Type = api.EnvelopeWhisper
	rawSend(garbage)
	mustSend(t, alice, "bob", "after")
	wantTexts(t, receive(t, bob), "alice", "real", "replayed", "after")
	if d := bob.Stats().Dropped; d != 3 {
		t.Errorf("dropped %d, want 3", d)
	}
}

func TestRegisterErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	_, dir := s.register(t, "alice", Options{})
	ctx := ctxT(t)
	if _, err := Register(ctx, dir, s.url, "other", "", Options{}); !errors.Is(err, ErrProfileExists) {
		t.Errorf("Register over a profile: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "p")
	if _, err := Register(ctx, fresh, s.url, "alice", "", Options{}); !errors.Is(err, ErrUsernameTaken) {
		t.Errorf("Register of a taken name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fresh, ProfileFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed registration left a profile: %v", err)
	}
	if _, err := Register(ctx, fresh, s.url, "no", "", Options{}); !errors.Is(err, ErrInvalidUsername) {
		t.Errorf("Register of an invalid name: %v", err)
	}
	if _, err := Open(fresh, Options{}); !errors.Is(err, ErrNoProfile) {
		t.Errorf("Open of nothing: %v", err)
	}
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Send(ctx, "nobody", "hi"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Send to an unknown user: %v", err)
	}

	closed := newServer(t, func(cfg *server.Config) { cfg.Registration = api.RegistrationClosed })
	if _, err := Register(ctx, filepath.Join(t.TempDir(), "p"), closed.url, "bob", "", Options{}); !errors.Is(err, ErrRegistrationClosed) {
		t.Errorf("Register on a closed server: %v", err)
	}
	invite := newServer(t, func(cfg *server.Config) { cfg.Registration = api.RegistrationInvite })
	if _, err := Register(ctx, filepath.Join(t.TempDir(), "p"), invite.url, "bob", "bogus", Options{}); !errors.Is(err, ErrInvalidInvite) {
		t.Errorf("Register with a bogus invite: %v", err)
	}
}

func TestProfileModes(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	_, dir := s.register(t, "alice", Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o700 {
		t.Errorf("profile directory mode %o", m)
	}
	fi, err = os.Stat(filepath.Join(dir, ProfileFile))
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("profile database mode %o", m)
	}
}

// TestNoSecretsPrinted: the types holding secrets print none.
func TestNoSecretsPrinted(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{Passphrase: "hunter2hunter2"})
	opt := Options{Passphrase: "hunter2hunter2"}
	for _, out := range []string{
		fmt.Sprint(alice), fmt.Sprintf("%+v", alice), fmt.Sprintf("%#v", alice),
		fmt.Sprint(opt), fmt.Sprintf("%+v", opt), fmt.Sprintf("%#v", opt),
		alice.LogValue().String(), opt.LogValue().String(),
	} {
		if strings.Contains(out, alice.password) || strings.Contains(out, "hunter2") || !strings.Contains(out, "[redacted]") {
			t.Errorf("printed %q", out)
		}
	}
	m := &Message{ID: "x", From: "bob", Text: "top secret text"}
	for _, out := range []string{fmt.Sprint(m), m.LogValue().String()} {
		if strings.Contains(out, "top secret") {
			t.Errorf("message printed %q", out)
		}
	}
}

// TestSealedProfileHoldsNoPlaintext: with a passphrase, the profile's files
// hold neither the identity private key, nor the password, nor the text of a
// message waiting in the inbox.
func TestSealedProfileHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, dir := s.register(t, "bob", Options{Passphrase: "a long passphrase"})
	const text = "the launch codes are 0000 and that is a secret"
	mustSend(t, alice, "bob", text)
	errLater := errors.New("later")
	err := bob.Receive(ctxT(t), ReceiveOptions{UntilEmpty: true}, func(Event) error { return errLater })
	if !errors.Is(err, errLater) {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"identity private key": bob.identity.Private.Bytes(),
		"password":             []byte(bob.password),
		"message text":         []byte("launch codes"),
	}
	for _, name := range []string{ProfileFile, ProfileFile + "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for what, secret := range secrets {
			if strings.Contains(string(b), string(secret)) {
				t.Errorf("%s found in %s", what, name)
			}
		}
	}
	// The message is still there for the next Receive.
	wantTexts(t, receive(t, bob), "alice", text)
}

// TestRegisterReplacesIncompleteProfile: a registration that stopped before
// the server answered leaves a profile without an account, which the next
// Register replaces.
func TestRegisterReplacesIncompleteProfile(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	dir := t.TempDir()
	st, err := profile.Create(filepath.Join(dir, ProfileFile), "", kdfParams)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := keys.GenerateKeyPair(nil)
	if err := st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.InitAccount(kp, 1, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrNoProfile) {
		t.Fatalf("Open of an incomplete profile: %v", err)
	}
	c, err := Register(ctxT(t), dir, s.url, "carol", "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.identity.Public.Equal(kp.Public) {
		t.Error("the incomplete profile's identity was kept")
	}
}

// TestDisplaced: a second connection of the same device (another process on
// the same profile) displaces the first, whose streaming Receive returns
// ErrDisplaced instead of fighting back.
func TestDisplaced(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob1, dir := s.register(t, "bob", Options{})
	got := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- bob1.Receive(ctxT(t), ReceiveOptions{}, func(Event) error {
			got <- struct{}{}
			return nil
		})
	}()
	mustSend(t, alice, "bob", "connected?")
	<-got // bob1 is connected
	bob2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	receive(t, bob2)
	if err := <-done; !errors.Is(err, ErrDisplaced) {
		t.Fatalf("displaced Receive = %v", err)
	}
}

// TestFrameBufferBounded: the frames the reader may run ahead of their
// processing cannot pin more than 16 MiB.
func TestFrameBufferBounded(t *testing.T) {
	const maxBufferedBytes = 16 << 20
	if n := frameBuffer * api.MaxFrameSize(session.MaxMessageSize); n > maxBufferedBytes {
		t.Fatalf("%d frames of up to %d bytes: %d bytes, over %d", frameBuffer, api.MaxFrameSize(session.MaxMessageSize), n, maxBufferedBytes)
	}
}
