package client

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/protocol/keys"
)

// queued returns the envelopes the server holds for a user's first device.
func (s *testServer) queued(t *testing.T, c *Client) []api.Envelope {
	t.Helper()
	envs, err := s.st.Queue(ctxT(t), c.AccountID(), 1, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]api.Envelope, len(envs))
	for i, e := range envs {
		out[i] = api.Envelope{Type: e.Type, SourceAccount: e.SourceAccount, SourceDevice: e.SourceDevice}
	}
	return out
}

// introduce has a and b write to each other once, so that each holds the
// other's access key.
func introduce(t *testing.T, a, b *Client) {
	t.Helper()
	mustSend(t, a, b.Username(), "hi")
	receive(t, b)
	mustSend(t, b, a.Username(), "hi back")
	receive(t, a)
}

func wantSealed(t *testing.T, envs []api.Envelope, sealed bool) {
	t.Helper()
	if len(envs) == 0 {
		t.Fatal("nothing queued")
	}
	for _, e := range envs {
		isSealed := e.Type == api.EnvelopeUnidentifiedSender && e.SourceAccount == "" && e.SourceDevice == 0
		if isSealed != sealed {
			t.Fatalf("envelope type %d from %q.%d, want sealed %v", e.Type, e.SourceAccount, e.SourceDevice, sealed)
		}
	}
}

// TestSealedAfterFirstContact: the first message to a new contact goes
// authenticated (its sender has no access key yet); every message after the
// contact wrote back goes sealed, both ways, and arrives named by the
// sender's certificate.
func TestSealedAfterFirstContact(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})

	mustSend(t, alice, "bob", "first contact")
	wantSealed(t, s.queued(t, bob), false)
	wantTexts(t, receive(t, bob), "alice", "first contact")

	mustSend(t, bob, "alice", "reply")
	wantSealed(t, s.queued(t, alice), true)
	wantTexts(t, receive(t, alice), "bob", "reply")

	mustSend(t, alice, "bob", "now sealed")
	mustSend(t, alice, "bob", "and again")
	wantSealed(t, s.queued(t, bob), true)
	evs := receive(t, bob)
	wantTexts(t, evs, "alice", "now sealed", "and again")
	if m := evs[0].(*Message); m.FromDevice != 1 {
		t.Errorf("sealed message from device %d", m.FromDevice)
	}
	if alice.Stats().Dropped != 0 || bob.Stats().Dropped != 0 {
		t.Errorf("dropped: %d, %d", alice.Stats().Dropped, bob.Stats().Dropped)
	}
}

// TestSealedStrangerNamedByCertificate: a sealed message from an account the
// recipient never heard of is named by the username the certificate
// carries.
func TestSealedStrangerNamedByCertificate(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	if err := bob.SetUnrestrictedAccess(ctxT(t), true); err != nil {
		t.Fatal(err)
	}
	// alice holds no key of bob's, and bob has never heard of her: the
	// server's answer with bob's keys says he takes sealed messages from
	// anyone, so her very first message goes sealed.
	mustSend(t, alice, "bob", "sealed to a stranger")
	wantSealed(t, s.queued(t, bob), true)
	wantTexts(t, receive(t, bob), "alice", "sealed to a stranger")
}

// TestStaleAccessKeyFallsBack: when the server refuses the access key this
// device holds (the contact made a new profile key), the message goes
// authenticated instead, and the key is forgotten until the contact's next
// message brings the new one.
func TestStaleAccessKeyFallsBack(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	introduce(t, alice, bob)

	// bob's account gets another key (as if another of his devices had
	// set one).
	other := accessKeyFrom(newProfileKey())
	if err := bob.do(ctxT(t), http.MethodPut, api.PathAttributes, &api.AccountAttributes{UnidentifiedAccessKey: other[:]}, nil); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "still arrives")
	wantSealed(t, s.queued(t, bob), false)
	wantTexts(t, receive(t, bob), "alice", "still arrives")
	if _, _, ok, _, err := alice.sealing(ctxT(t), "bob"); err != nil || ok {
		t.Fatalf("alice still holds bob's refused key: %v, %v", ok, err)
	}
}

// TestSealedFromUntrustedRootDropped: a sealed message whose certificate does
// not chain to the trust root the recipient pinned is dropped.
func TestSealedFromUntrustedRootDropped(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	introduce(t, alice, bob)

	other, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bob.st.Update(ctxT(t), func(tx *profile.Tx) error {
		return tx.PutSetting(settingTrustRoot, other.PublicKey().Bytes())
	})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "under a root bob does not trust")
	wantSealed(t, s.queued(t, bob), true)
	if evs := receive(t, bob); len(evs) != 0 {
		t.Fatalf("bob got %v", evs)
	}
	if bob.Stats().Dropped != 1 {
		t.Fatalf("dropped %d", bob.Stats().Dropped)
	}
}

// TestGroupMessagesSealed: once the members have written to each other,
// group messages reach every member sealed.
func TestGroupMessagesSealed(t *testing.T) {
	t.Parallel()
	var puts, multi atomic.Int64
	s := newWrappedServer(t, nil, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == api.PathMultiRecipient:
				multi.Add(1)
			case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/messages/"):
				puts.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})
	if _, err := alice.CreateGroup(ctxT(t), "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	receive(t, carol)
	for _, u := range []*Client{bob, carol} {
		mustSend(t, u, "#club", "hello from "+u.Username())
	}
	receive(t, alice)
	receive(t, bob)
	receive(t, carol)
	// alice's first group message hands out her sender key, pairwise.
	mustSend(t, alice, "#club", "warming up")
	for _, u := range []*Client{bob, carol} {
		wantSealed(t, s.queued(t, u), true)
		wantTexts(t, receive(t, u), "alice", "warming up")
	}
	puts.Store(0)
	multi.Store(0)
	if res := mustSend(t, alice, "#club", "sealed to the club"); res.Devices != 2 {
		t.Fatalf("queued for %d devices", res.Devices)
	}
	// One sealed sender v2 request for both members.
	if multi.Load() != 1 || puts.Load() != 0 {
		t.Fatalf("%d multi-recipient and %d one-recipient sends", multi.Load(), puts.Load())
	}
	for _, u := range []*Client{bob, carol} {
		wantSealed(t, s.queued(t, u), true)
		evs := receive(t, u)
		wantTexts(t, evs, "alice", "sealed to the club")
		if g := evs[0].(*Message).Group; g == nil || g.Title != "club" {
			t.Errorf("%s: group %+v", u.Username(), g)
		}
	}
}

// TestReceipts: a delivery receipt comes back once the recipient's device
// got the message, a read receipt once MarkRead; each can be turned off.
func TestReceipts(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	ctx := ctxT(t)
	for _, c := range []*Client{alice, bob} {
		if err := c.SetReceipts(ctx, true, true); err != nil {
			t.Fatal(err)
		}
	}
	res := mustSend(t, alice, "bob", "did you get this?")
	wantTexts(t, receive(t, bob), "alice", "did you get this?")
	receipt := func(read bool) {
		t.Helper()
		evs := receive(t, alice)
		if len(evs) != 1 {
			t.Fatalf("alice got %v", evs)
		}
		r, ok := evs[0].(*Receipt)
		if !ok || r.From != "bob" || r.Read != read || !slices.Equal(r.Messages, []string{res.ID}) {
			t.Fatalf("receipt %+v", evs[0])
		}
	}
	receipt(false)
	history := func() *Message {
		t.Helper()
		ms, err := alice.Messages(ctx, "bob", 0)
		if err != nil || len(ms) != 1 {
			t.Fatalf("history %v, %v", ms, err)
		}
		return ms[0]
	}
	if m := history(); !slices.Equal(m.DeliveredTo, []string{"bob"}) || m.ReadBy != nil {
		t.Fatalf("after delivery: %+v", m)
	}
	if n, err := bob.MarkRead(ctx, "alice"); err != nil || n != 1 {
		t.Fatalf("MarkRead = %d, %v", n, err)
	}
	if n, err := bob.MarkRead(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("second MarkRead = %d, %v", n, err)
	}
	receipt(true)
	if m := history(); !slices.Equal(m.ReadBy, []string{"bob"}) {
		t.Fatalf("after reading: %+v", m)
	}

	// Off: no receipt of either kind, and reading still marks read.
	if err := bob.SetReceipts(ctx, false, false); err != nil {
		t.Fatal(err)
	}
	if d, r, err := bob.Receipts(ctx); err != nil || d || r {
		t.Fatalf("Receipts = %v, %v, %v", d, r, err)
	}
	mustSend(t, alice, "bob", "quietly")
	wantTexts(t, receive(t, bob), "alice", "quietly")
	if n, err := bob.MarkRead(ctx, "alice"); err != nil || n != 1 {
		t.Fatalf("MarkRead = %d, %v", n, err)
	}
	if evs := receive(t, alice); len(evs) != 0 {
		t.Fatalf("alice got %v with bob's receipts off", evs)
	}

	// A receipt naming messages alice never sent to bob changes nothing.
	if err := bob.sendReceipt(context.Background(), "alice", content.ReceiptDelivered, []int64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if evs := receive(t, alice); len(evs) != 0 {
		t.Fatalf("alice got %v", evs)
	}
}

// TestOldProfilePinsRootOnReceive: a profile made before sealed sender has
// no trust root pinned; Receive pins it before it needs it, so the first
// sealed message is not dropped.
func TestOldProfilePinsRootOnReceive(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	introduce(t, alice, bob)
	err := bob.st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.PutSetting(settingTrustRoot, nil) })
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "sealed to an old profile")
	wantSealed(t, s.queued(t, bob), true)
	wantTexts(t, receive(t, bob), "alice", "sealed to an old profile")
	if bob.Stats().Dropped != 0 {
		t.Fatalf("dropped %d", bob.Stats().Dropped)
	}
}

// TestLinkedDeviceLearnsProfileKey: a linked device gets the account's
// profile key when it is linked, or, if it has none, from a transcript of its
// primary; it never takes another in place of its own.
func TestLinkedDeviceLearnsProfileKey(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	alice2, _ := s.link(t, alice, "alice2")
	bob, _ := s.register(t, "bob", Options{})
	own := func(c *Client) []byte {
		t.Helper()
		k, err := c.ownProfileKey(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	key := own(alice)
	if key == nil || !bytes.Equal(own(alice2), key) {
		t.Fatal("the linked device was not given the profile key")
	}
	err := alice2.st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.DeleteProfileKey(alice.AccountID()) })
	if err != nil {
		t.Fatal(err)
	}
	if own(alice2) != nil {
		t.Fatal("a linked device made its own profile key")
	}
	mustSend(t, alice, "bob", "with a transcript")
	receive(t, alice2)
	if !bytes.Equal(own(alice2), key) {
		t.Fatal("the linked device did not learn the key from the transcript")
	}
	receive(t, bob)
}
