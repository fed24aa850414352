package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// impostor is a hostile server's help to mallory: when on, bundle requests
// for bob are answered with mallory's bundles, relabelled with bob's account
// id and registration id.
type impostor struct {
	on        atomic.Bool
	bobID     atomic.Pointer[string]
	bobRegID  atomic.Uint32
	rewritten atomic.Int32
}

func (im *impostor) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var to string
		for _, d := range []uint32{0, 1} {
			if r.URL.Path == bundlePath("bob", d) {
				to = bundlePath("mallory", d)
			}
		}
		if !im.on.Load() || r.Method != http.MethodGet || to == "" {
			next.ServeHTTP(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = to
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r2)
		var br api.BundleResponse
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &br) != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		br.AccountID = *im.bobID.Load()
		for i := range br.Devices {
			br.Devices[i].RegistrationID = im.bobRegID.Load()
		}
		im.rewritten.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(&br)
	})
}

// forgeFrom makes what a hostile server would deliver to c as a message from
// bob's device 1: a session-starting message under mallory's identity key
// that names bob's address as its sender.
func forgeFrom(t *testing.T, mallory, bob, c *Client, text string) *api.Envelope {
	t.Helper()
	var br api.BundleResponse
	if err := mallory.do(ctxT(t), http.MethodGet, bundlePath(c.Username(), 0), nil, &br); err != nil {
		t.Fatal(err)
	}
	ik, err := keys.ParsePublicKey(br.IdentityKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := toBundle(ik, &br.Devices[0])
	if err != nil {
		t.Fatal(err)
	}
	pt, commitment, err := encodeText(text)
	if err != nil {
		t.Fatal(err)
	}
	local, _ := mallory.local()
	from := session.Address{Name: bob.accountID, DeviceID: 1}
	to := session.Address{Name: br.AccountID, DeviceID: b.DeviceID}
	rec := new(session.Record)
	if err := rec.InitiateSession(local, from, to, b, time.Now(), randReader); err != nil {
		t.Fatal(err)
	}
	typ, ct, err := rec.Encrypt(pt, time.Now(), randReader)
	if err != nil {
		t.Fatal(err)
	}
	return &api.Envelope{
		ID:              api.NewUUID(),
		Type:            int(typ),
		SourceAccount:   bob.accountID,
		SourceUsername:  "bob",
		SourceDevice:    1,
		ServerTimestamp: time.Now().UnixMilli(),
		Content:         ct,
		Franking:        commitment,
	}
}

// deliver processes env at c as Receive does, and returns the events.
func deliver(t *testing.T, c *Client, env *api.Envelope) []Event {
	t.Helper()
	if err := c.processEnvelope(ctxT(t), env); err != nil {
		t.Fatal(err)
	}
	var evs []Event
	err := c.drainInbox(ctxT(t), func(ev Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestForgedPreKeyMessageDoesNotRekeyVerifiedContact: one prekey message
// under a new identity key, labelled as coming from a verified contact, is
// delivered marked, but the contact's trusted key stays: Send refuses the
// new key the server then presents (its key transparency proof is
// mallory's, so that refuses it first; the verified contact would next),
// and the safety number stays the one over the key the log holds.
func TestForgedPreKeyMessageDoesNotRekeyVerifiedContact(t *testing.T) {
	t.Parallel()
	im := new(impostor)
	s := newWrappedServer(t, nil, im.wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mallory, _ := s.register(t, "mallory", Options{})
	im.bobID.Store(&bob.accountID)
	err := bob.st.View(ctxT(t), func(tx *profile.Tx) error {
		a, err := tx.Account()
		if err == nil {
			im.bobRegID.Store(a.RegistrationID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	mustSend(t, bob, "alice", "hello")
	wantTexts(t, receive(t, alice), "bob", "hello")
	sn, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Verify(ctxT(t), "bob", sn.Displayable); err != nil {
		t.Fatal(err)
	}

	evs := deliver(t, alice, forgeFrom(t, mallory, bob, alice, "it is me, bob"))
	if len(evs) != 2 {
		t.Fatalf("events %v", evs)
	}
	if ic, ok := evs[0].(*IdentityChanged); !ok || ic.Username != "bob" || !ic.Verified {
		t.Fatalf("first event %#v, want IdentityChanged for verified bob", evs[0])
	}
	if m, ok := evs[1].(*Message); !ok || m.Text != "it is me, bob" || !m.IdentityChanged {
		t.Fatalf("second event %#v, want the message marked", evs[1])
	}

	im.on.Store(true)
	if _, err := alice.Send(ctxT(t), "bob", "must not reach mallory"); !errors.Is(err, ErrTransparency) {
		t.Fatalf("Send after the forged message: %v, want ErrTransparency", err)
	}
	if im.rewritten.Load() == 0 {
		t.Fatal("Send did not fetch bob's keys again")
	}
	// A second forged message is marked again, not announced again.
	evs = deliver(t, alice, forgeFrom(t, mallory, bob, alice, "still me"))
	if len(evs) != 1 || !evs[0].(*Message).IdentityChanged {
		t.Fatalf("events %v", evs)
	}
	if _, err := alice.Send(ctxT(t), "bob", "still not"); !errors.Is(err, ErrTransparency) {
		t.Fatalf("second Send: %v, want ErrTransparency", err)
	}

	// The safety number is over the key the log holds, bob's own: the
	// forged key is dropped, and its number does not verify.
	sn2, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !sn2.Verified || sn2.Displayable != sn.Displayable {
		t.Fatalf("safety number after the forged message %+v (verified one %s)", sn2, sn.Displayable)
	}
	forged, err := alice.fingerprint(bob.AccountID(), mallory.identity.Public)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Verify(ctxT(t), "bob", forged.Displayable()); !errors.Is(err, ErrSafetyNumberMismatch) {
		t.Fatalf("Verify of the forged key's number: %v", err)
	}
	if _, err := alice.Send(ctxT(t), "bob", "still not"); !errors.Is(err, ErrTransparency) {
		t.Fatalf("Send after Verify: %v, want ErrTransparency", err)
	}
}

// captured has c encrypt text for to, as Send would, and returns the
// envelope the server would deliver, with the sender labelled label.
func captured(t *testing.T, c *Client, to, label, text string) *api.Envelope {
	t.Helper()
	msgs, commitment, err := c.encryptFor(ctxT(t), to, textContent(text), nil, new(SendResult))
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%s encrypts: %v, %d messages", c.Username(), err, len(msgs))
	}
	return &api.Envelope{
		ID:              api.NewUUID(),
		Type:            msgs[0].Type,
		SourceAccount:   c.accountID,
		SourceUsername:  label,
		SourceDevice:    c.deviceID,
		ServerTimestamp: time.Now().UnixMilli(),
		Content:         msgs[0].Content,
		Franking:        commitment,
	}
}

// TestRelabelledSenderKeepsVerifiedContact: bob's envelope labelled with
// another username is bob's message, and bob stays a verified contact.
func TestRelabelledSenderKeepsVerifiedContact(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, bob, "alice", "hello")
	wantTexts(t, receive(t, alice), "bob", "hello")
	sn, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Verify(ctxT(t), "bob", sn.Displayable); err != nil {
		t.Fatal(err)
	}

	wantTexts(t, deliver(t, alice, captured(t, bob, "alice", "eve", "relabelled")), "bob", "relabelled")
	if sn, err := alice.SafetyNumber(ctxT(t), "bob"); err != nil || !sn.Verified {
		t.Fatalf("bob after the relabelled envelope: %+v, %v", sn, err)
	}
	mustSend(t, alice, "bob", "still verified")
	wantTexts(t, receive(t, bob), "alice", "still verified")
}

// TestRelabelledStrangerKeepsSessions: mallory's envelope labelled bob
// makes bob's contact point at mallory's account (bob is not verified: trust
// on first use), but bob's messages already in flight still decrypt.
func TestRelabelledStrangerKeepsSessions(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mallory, _ := s.register(t, "mallory", Options{})
	mustSend(t, alice, "bob", "hi")
	wantTexts(t, receive(t, bob), "alice", "hi")
	mustSend(t, bob, "alice", "yo")
	wantTexts(t, receive(t, alice), "bob", "yo")

	inFlight := captured(t, bob, "alice", "bob", "in flight")
	evs := deliver(t, alice, captured(t, mallory, "alice", "bob", "i am bob"))
	if len(evs) != 2 || evs[1].(*Message).Text != "i am bob" {
		t.Fatalf("events %v", evs)
	}
	var got []string
	for _, ev := range deliver(t, alice, inFlight) {
		if m, ok := ev.(*Message); ok {
			got = append(got, m.Text)
		}
	}
	if len(got) != 1 || got[0] != "in flight" {
		t.Fatalf("bob's message in flight: got %q; dropped %d", got, alice.dropped.Load())
	}
}

// TestServerAnswerCannotTakeVerifiedAccount: a bundle answer for "eve"
// carrying the account of the verified contact bob is refused (its key
// transparency proof is for bob's labels: ErrTransparency, before
// ErrVerifiedContact would), and bob stays.
func TestServerAnswerCannotTakeVerifiedAccount(t *testing.T) {
	t.Parallel()
	var on atomic.Bool
	s := newWrappedServer(t, nil, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if on.Load() && r.URL.Path == bundlePath("eve", 0) {
				r = r.Clone(r.Context())
				r.URL.Path = bundlePath("bob", 0)
			}
			next.ServeHTTP(w, r)
		})
	})
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	s.register(t, "eve", Options{})
	mustSend(t, alice, "bob", "hello")
	sn, err := alice.SafetyNumber(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Verify(ctxT(t), "bob", sn.Displayable); err != nil {
		t.Fatal(err)
	}
	on.Store(true)
	if _, err := alice.Send(ctxT(t), "eve", "to eve"); !errors.Is(err, ErrTransparency) {
		t.Fatalf("Send to eve answered with bob's account: %v", err)
	}
	if sn, err := alice.SafetyNumber(ctxT(t), "bob"); err != nil || !sn.Verified {
		t.Fatalf("bob afterwards: %+v, %v", sn, err)
	}
	mustSend(t, alice, "bob", "still bob")
	wantTexts(t, receive(t, bob), "alice", "hello", "still bob")
}
