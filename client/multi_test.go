package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// link makes a new device of primary's account, approved by primary.
func (s *testServer) link(t *testing.T, primary *Client, name string) (*Client, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	codes := make(chan string, 1)
	var (
		approved uint32
		aerr     error
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		code := <-codes
		approved, aerr = primary.ApproveLink(ctxT(t), code)
	})
	c, err := Link(ctxT(t), dir, s.url, Options{}, func(code string) error {
		if !strings.HasPrefix(code, linkCodePrefix) {
			t.Errorf("link code %q", code)
		}
		codes <- code
		return nil
	})
	wg.Wait()
	if aerr != nil {
		t.Fatalf("approving %s: %v", name, aerr)
	}
	if err != nil {
		t.Fatalf("linking %s: %v", name, err)
	}
	if c.DeviceID() != approved || c.AccountID() != primary.AccountID() || c.Username() != primary.Username() {
		t.Fatalf("linked device %d of %s, approved %d of %s", c.DeviceID(), c.AccountID(), approved, primary.AccountID())
	}
	if err := c.SetReceipts(ctxT(t), false, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dir
}

// messages returns the messages among evs.
func messages(evs []Event) []*Message {
	var out []*Message
	for _, ev := range evs {
		if m, ok := ev.(*Message); ok {
			out = append(out, m)
		}
	}
	return out
}

func msgTexts(evs []Event) []string {
	var out []string
	for _, m := range messages(evs) {
		out = append(out, m.Text)
	}
	return out
}

// TestThreePeopleTwoDevices: one-to-one messages reach every device of the
// recipient and, as sent, the sender's other device; a group reaches every
// device of every member, the sender's other device included.
func TestThreePeopleTwoDevices(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	people := map[string][2]*Client{}
	for _, name := range []string{"alice", "bob", "carol"} {
		c1, _ := s.register(t, name, Options{})
		c2, _ := s.link(t, c1, name+"2")
		people[name] = [2]*Client{c1, c2}
	}
	alice, bob, carol := people["alice"], people["bob"], people["carol"]
	ds, err := alice[0].Devices(ctxT(t))
	if err != nil || len(ds) != 2 || !ds[0].ThisDevice || ds[1].ID != alice[1].DeviceID() {
		t.Fatalf("alice's devices = %+v, %v", ds, err)
	}

	res := mustSend(t, alice[0], "bob", "hello bob")
	if res.Devices != 2 || res.TranscriptErr != nil {
		t.Fatalf("send: %+v", res)
	}
	for _, c := range bob {
		wantTexts(t, receive(t, c), "alice", "hello bob")
	}
	ms := messages(receive(t, alice[1]))
	if len(ms) != 1 || !ms[0].Outgoing || ms[0].To != "bob" || ms[0].Text != "hello bob" {
		t.Fatalf("alice's other device got %+v", ms)
	}
	// The reply, from bob's second device.
	mustSend(t, bob[1], "alice", "hi alice")
	for _, c := range alice {
		wantTexts(t, receive(t, c), "bob", "hi alice")
	}
	if ms := messages(receive(t, bob[0])); len(ms) != 1 || !ms[0].Outgoing || ms[0].Text != "hi alice" {
		t.Fatalf("bob's first device got %+v", ms)
	}

	g, err := carol[1].CreateGroup(ctxT(t), "trio", "alice", "bob")
	if err != nil || len(g.Members) != 3 {
		t.Fatalf("CreateGroup = %+v, %v", g, err)
	}
	if _, err := carol[1].SendMessage(ctxT(t), "#trio", Outgoing{Text: "welcome"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]*Client{alice, bob, carol} {
		for i, d := range c {
			if c == carol && i == 1 {
				continue // the sender
			}
			evs := receive(t, d)
			var joined bool
			for _, ev := range evs {
				if u, ok := ev.(*GroupUpdate); ok && u.Group.Title == "trio" && (u.Joined || d.Username() == "carol") {
					joined = true
				}
			}
			ms := messages(evs)
			if !joined || len(ms) != 1 || ms[0].Text != "welcome" || ms[0].Group == nil || ms[0].Group.Title != "trio" || ms[0].From != "carol" {
				t.Fatalf("%s device %d got %v", d.Username(), d.DeviceID(), evs)
			}
			if d.Username() == "carol" && !ms[0].Outgoing {
				t.Fatalf("carol's other device does not show the group message as sent")
			}
		}
	}
	// A member's second device answers in the group.
	if _, err := bob[1].SendMessage(ctxT(t), "#trio", Outgoing{Text: "thanks"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Client{alice[0], alice[1], carol[0], carol[1], bob[0]} {
		if got := msgTexts(receive(t, d)); !slices.Equal(got, []string{"thanks"}) {
			t.Fatalf("%s.%d got %q", d.Username(), d.DeviceID(), got)
		}
	}
}

// TestRemoveDevice: a removed device can no longer connect, and senders stop
// encrypting to it.
func TestRemoveDevice(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	alice2, _ := s.link(t, alice, "alice2")
	bob, _ := s.register(t, "bob", Options{})
	if res := mustSend(t, bob, "alice", "one"); res.Devices != 2 {
		t.Fatalf("sent to %d devices", res.Devices)
	}
	if err := alice.RemoveDevice(ctxT(t), alice2.DeviceID()); err != nil {
		t.Fatal(err)
	}
	err := alice2.Receive(ctxT(t), ReceiveOptions{UntilEmpty: true}, func(Event) error { return nil })
	if !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("removed device receives: %v", err)
	}
	if res := mustSend(t, bob, "alice", "two"); res.Devices != 1 {
		t.Fatalf("after removal, sent to %d devices", res.Devices)
	}
	wantTexts(t, receive(t, alice), "bob", "one", "two")
	ds, err := alice.Devices(ctxT(t))
	if err != nil || len(ds) != 1 {
		t.Fatalf("devices after removal: %+v, %v", ds, err)
	}
}

// TestUnlistedDeviceRefused: a device the server adds behind the account's
// back (here written straight into its store, with prekeys signed by the
// account's identity key, as a stolen and removed device could make) is not
// on the signed device list, and a sender refuses it.
func TestUnlistedDeviceRefused(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	now := time.Now()
	spk, err := keys.GenerateSignedPreKey(alice.identity.Private, 1, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	kpk, err := keys.GenerateKyberPreKey(alice.identity.Private, 1, keys.KEMKyber1024, true, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	up := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: spk.KeyPair.Public.Bytes(), Signature: spk.Signature},
		LastResort:   &store.KyberPreKey{ID: 1, PublicKey: kpk.KeyPair.Public.Bytes(), Signature: kpk.Signature},
	}
	// The store does not check signatures: the server would, but this is
	// the operator writing to its own database. The account keeps its
	// signed list (version 1, device 1 alone) under a bumped version.
	tok := &store.LinkToken{TokenHash: bytes.Repeat([]byte{9}, 32), AccountID: alice.AccountID(), Expires: now.Add(time.Hour)}
	if err := s.st.CreateLinkToken(ctxT(t), tok, now, api.MaxDevicesPerAccount, 3); err != nil {
		t.Fatal(err)
	}
	cur, err := s.st.DeviceList(ctxT(t), alice.AccountID())
	if err != nil {
		t.Fatal(err)
	}
	ghost := &store.Device{AccountID: alice.AccountID(), ID: tok.DeviceID, RegistrationID: 77, CredentialHash: make([]byte, 32), Created: now}
	if err := s.st.LinkDevice(ctxT(t), tok.TokenHash, ghost, up, &store.DeviceList{Version: cur.Version + 1, Signed: cur.Signed}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctxT(t), "alice", "for alice only"); !errors.Is(err, ErrUnlistedDevice) {
		t.Fatalf("send with a ghost device = %v, want ErrUnlistedDevice", err)
	}
	if _, err := alice.Devices(ctxT(t)); !errors.Is(err, ErrUnlistedDevice) {
		t.Fatalf("alice's Devices with a ghost = %v, want ErrUnlistedDevice", err)
	}
	if evs := receive(t, alice); len(evs) != 0 {
		t.Fatalf("alice got %v", evs)
	}
}

// TestGroupOfFifty: a group of 50 at the SDK level; removing a member
// rotates the sender keys, so that the removed member cannot read what is
// sent afterwards even if the server hands it the ciphertext.
func TestGroupOfFifty(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	const n = 50
	cs := make([]*Client, n)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("member%02d", i)
		cs[i], _ = s.register(t, names[i], Options{})
	}
	admin := cs[0]
	if _, err := admin.CreateGroup(ctxT(t), "fifty", names[1:]...); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SendMessage(ctxT(t), "#fifty", Outgoing{Text: "first"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs[1:] {
		if got := msgTexts(receive(t, c)); !slices.Equal(got, []string{"first"}) {
			t.Fatalf("%s got %q", c.Username(), got)
		}
	}
	// A member answers: everyone, the admin included, reads it.
	if _, err := cs[7].SendMessage(ctxT(t), "#fifty", Outgoing{Text: "from seven"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		if i == 7 {
			continue
		}
		if got := msgTexts(receive(t, c)); !slices.Equal(got, []string{"from seven"}) {
			t.Fatalf("%s got %q", c.Username(), got)
		}
	}

	removed := cs[3]
	if err := admin.RemoveGroupMembers(ctxT(t), "#fifty", names[3]); err != nil {
		t.Fatal(err)
	}
	evs := receive(t, removed)
	if len(evs) != 1 || !evs[0].(*GroupUpdate).Left {
		t.Fatalf("removed member got %v", evs)
	}
	for _, c := range cs[1:] {
		if c != removed {
			receive(t, c) // the change
		}
	}
	// The rotation: member 7 sends again. Catch the ciphertext queued for
	// member 5 and give it to the removed member, as a hostile server
	// could.
	if _, err := cs[7].SendMessage(ctxT(t), "#fifty", Outgoing{Text: "after removal"}); err != nil {
		t.Fatal(err)
	}
	q, err := s.st.Queue(ctxT(t), cs[5].AccountID(), 1, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var leaked *api.Envelope
	for _, e := range q {
		if e.Type == api.EnvelopeSenderKey {
			leaked = &api.Envelope{ID: api.NewUUID(), Type: e.Type, SourceAccount: e.SourceAccount, SourceUsername: names[7],
				SourceDevice: e.SourceDevice, ClientTimestamp: 1, ServerTimestamp: 1, Content: e.Content}
		}
	}
	if leaked == nil {
		t.Fatal("no sender-key message queued for a remaining member")
	}
	before := removed.Stats().Dropped
	if err := removed.processEnvelope(ctxT(t), leaked); err != nil {
		t.Fatal(err)
	}
	if removed.Stats().Dropped != before+1 {
		t.Fatal("the removed member did not drop the message sent after its removal")
	}
	ms, err := removed.Messages(ctxT(t), names[7], 0)
	if err != nil || len(ms) != 0 {
		t.Fatalf("removed member's history: %v, %v", ms, err)
	}
	if got := msgTexts(receive(t, cs[5])); !slices.Equal(got, []string{"after removal"}) {
		t.Fatalf("a remaining member got %q", got)
	}
	if _, err := removed.SendMessage(ctxT(t), "#fifty", Outgoing{Text: "still here?"}); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("removed member sends to the group: %v", err)
	}
}

// TestGroupChangeRefused: a change that is not signed by a current admin is
// dropped by every member, and the group stays as it was.
func TestGroupChangeRefused(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	admin, _ := s.register(t, "admin", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})
	s.register(t, "dave", Options{})
	if _, err := admin.CreateGroup(ctxT(t), "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	receive(t, carol)
	// Bob is no admin: his client refuses to make the change.
	if err := bob.AddGroupMembers(ctxT(t), "#club", "dave"); !errors.Is(err, ErrNotGroupAdmin) {
		t.Fatalf("non-admin change = %v", err)
	}
	// A forged change: the admin's next change with its signature broken,
	// sent by the admin's own session (so only the signature is wrong).
	g, err := admin.findGroup(ctxT(t), "#club")
	if err != nil {
		t.Fatal(err)
	}
	_, ch, err := g.state.SetTitle(admin.identity.Private, nil, "pwned")
	if err != nil {
		t.Fatal(err)
	}
	forged := ch.Bytes()
	forged[len(forged)-1] ^= 1
	before := carol.Stats().Dropped
	if err := admin.sendRawChange(ctxT(t), g, "carol", forged); err != nil {
		t.Fatal(err)
	}
	if evs := receive(t, carol); len(evs) != 0 {
		t.Fatalf("carol accepted a forged change: %v", evs)
	}
	if carol.Stats().Dropped != before+1 {
		t.Fatal("the forged change was not dropped")
	}
	cg, err := carol.Group(ctxT(t), "#club")
	if err != nil || cg.Title != "club" || cg.Version != 1 {
		t.Fatalf("carol's group = %+v, %v", cg, err)
	}
}

// sendRawChange sends a group change as it is, for tests.
func (c *Client) sendRawChange(ctx context.Context, g *localGroup, to string, change []byte) error {
	_, err := c.deliver(ctx, to, &content.Content{Timestamp: time.Now().UnixMilli(), GroupID: g.id[:], GroupChange: change}, nil)
	return err
}

// TestDisappearingMessages: after the timer, a message is gone from the
// history of every device of both sides, and its text from the profile's
// files.
func TestDisappearingMessages(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, adir := s.register(t, "alice", Options{Passphrase: "alice's passphrase"})
	alice2, a2dir := s.link(t, alice, "alice2")
	bob, bdir := s.register(t, "bob", Options{})
	if err := alice.SetTimer(ctxT(t), "bob", time.Hour); err != nil {
		t.Fatal(err)
	}
	evs := receive(t, bob)
	if ms := messages(evs); len(ms) != 1 || !ms[0].TimerUpdate || ms[0].ExpiresIn != time.Hour {
		t.Fatalf("bob got %v", evs)
	}
	if d, err := bob.Timer(ctxT(t), "alice"); err != nil || d != time.Hour {
		t.Fatalf("bob's timer = %v, %v", d, err)
	}
	receive(t, alice2)
	const secret = "this text disappears within the hour"
	mustSend(t, alice, "bob", secret)
	mustSend(t, bob, "alice", "a reply that disappears too")
	receive(t, bob)
	receive(t, alice)
	receive(t, alice2)
	for _, c := range []*Client{alice, alice2, bob} {
		with := "bob"
		if c == bob {
			with = "alice"
		}
		ms, err := c.Messages(ctxT(t), with, 0)
		if err != nil || len(ms) < 2 {
			t.Fatalf("%s.%d history before expiry: %v, %v", c.Username(), c.DeviceID(), ms, err)
		}
	}
	later := time.Now().Add(time.Hour + time.Minute)
	for _, c := range []*Client{alice, alice2, bob} {
		c.now = func() time.Time { return later }
		with := "bob"
		if c == bob {
			with = "alice"
		}
		ms, err := c.Messages(ctxT(t), with, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if !m.TimerUpdate {
				t.Fatalf("%s.%d kept %q after expiry", c.Username(), c.DeviceID(), m.Text)
			}
		}
	}
	for _, dir := range []string{adir, a2dir, bdir} {
		scanFor(t, dir, secret)
	}
}

// scanFor fails if any file under dir holds s, or if dir holds no file.
func scanFor(t *testing.T, dir, s string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s still holds %q", p, s)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("scanning %s: %d files, %v", dir, n, err)
	}
}

// TestFileMessages: a file sent with a message reaches every device of the
// recipient, saved under a sanitised name in the downloads directory with
// the type detected from its bytes; a view-once file opens once.
func TestFileMessages(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, bdir := s.register(t, "bob", Options{})
	bob2, b2dir := s.link(t, bob, "bob2")
	src := filepath.Join(t.TempDir(), "..evil\x1b[31m.png")
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("pixels"), 50_000)...)
	if err := os.WriteFile(src, png, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendMessage(ctxT(t), "bob", Outgoing{Text: "a picture", File: src}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*Client{bob, bob2} {
		dir := []string{bdir, b2dir}[i]
		ms := messages(receive(t, c))
		if len(ms) != 1 || ms[0].Attachment == nil {
			t.Fatalf("bob.%d got %+v", c.DeviceID(), ms)
		}
		a := ms[0].Attachment
		if a.Err != "" || a.ContentType != "image/png" || a.Size != int64(len(png)) || filepath.Dir(a.Path) != filepath.Join(dir, DownloadsDir) {
			t.Fatalf("attachment %+v", a)
		}
		if strings.ContainsAny(filepath.Base(a.Path), "\x1b/") || strings.HasPrefix(filepath.Base(a.Path), ".") {
			t.Fatalf("unsanitised name %q", a.Path)
		}
		got, err := os.ReadFile(a.Path)
		if err != nil || !bytes.Equal(got, png) {
			t.Fatalf("saved file differs (%v)", err)
		}
	}

	if _, err := alice.SendMessage(ctxT(t), "bob", Outgoing{File: src, ViewOnce: true}); err != nil {
		t.Fatal(err)
	}
	ms := messages(receive(t, bob))
	if len(ms) != 1 || ms[0].Attachment == nil || !ms[0].Attachment.ViewOnce || ms[0].Attachment.Path != "" {
		t.Fatalf("view-once message %+v", ms)
	}
	var out bytes.Buffer
	if err := bob.OpenViewOnce(ctxT(t), ms[0].ID, &out); err != nil || !bytes.Equal(out.Bytes(), png) {
		t.Fatalf("OpenViewOnce: %v", err)
	}
	if err := bob.OpenViewOnce(ctxT(t), ms[0].ID, &out); !errors.Is(err, ErrAlreadyOpened) {
		t.Fatalf("second OpenViewOnce = %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(bdir, viewOnceDir)); len(ents) != 0 {
		t.Fatalf("view-once blobs left: %v", ents)
	}
}

// preKeyFrom makes what a hostile server would deliver to to from a device that was removed from its account (from: it still holds
// the account's identity key): a session-starting message, as from's
// device, under that key.
func preKeyFrom(t *testing.T, from, to *Client, text string) *api.Envelope {
	t.Helper()
	var br api.BundleResponse
	if err := to.do(ctxT(t), http.MethodGet, bundlePath(to.Username(), to.DeviceID()), nil, &br); err != nil {
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
	local, addr := from.local()
	rec := new(session.Record)
	if err := rec.InitiateSession(local, addr, session.Address{Name: br.AccountID, DeviceID: to.DeviceID()}, b, time.Now(), randReader); err != nil {
		t.Fatal(err)
	}
	typ, ct, err := rec.Encrypt(pt, time.Now(), randReader)
	if err != nil {
		t.Fatal(err)
	}
	return &api.Envelope{ID: api.NewUUID(), Type: int(typ), SourceAccount: from.AccountID(), SourceUsername: from.Username(),
		SourceDevice: from.DeviceID(), ServerTimestamp: time.Now().UnixMilli(), Content: ct, Franking: commitment}
}

// encryptedTo returns the devices c encrypts a message to username for.
func encryptedTo(t *testing.T, c *Client, username string) []uint32 {
	t.Helper()
	msgs, _, err := c.encryptFor(ctxT(t), username, textContent("probe"), nil, new(SendResult))
	if err != nil {
		t.Fatalf("%s encrypts for %s: %v", c.Username(), username, err)
	}
	var ds []uint32
	for _, m := range msgs {
		ds = append(ds, m.DeviceID)
	}
	slices.Sort(ds)
	return ds
}

// TestRemovedDeviceGetsNothing: a device removed from alice's account
// still holds her identity key. With the server's help it starts a session
// with bob, and with alice's other device, as her device: the message is
// dropped (once a fresh lookup shows the device is not on her list), and
// nothing bob or alice's tablet sends goes to it: not a one-to-one message,
// not a transcript, not a sender-key message. A sender whose list of her
// devices is over an hour old looks it up again before writing, so a
// session it made with the device before its removal is not used either.
func TestRemovedDeviceGetsNothing(t *testing.T) {
	t.Parallel()
	s, k := newKTServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	laptop, _ := s.link(t, alice, "alice-laptop")
	tablet, _ := s.link(t, alice, "alice-tablet")
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})
	for _, c := range []*Client{bob, carol} {
		if res := mustSend(t, c, "alice", "before"); res.Devices != 3 {
			t.Fatalf("%s sent to %d devices", c.Username(), res.Devices)
		}
	}
	if _, err := bob.CreateGroup(ctxT(t), "club", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendMessage(ctxT(t), "#club", Outgoing{Text: "to the club"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{alice, laptop, tablet} {
		receive(t, c)
	}
	if err := alice.RemoveDevice(ctxT(t), laptop.DeviceID()); err != nil {
		t.Fatal(err)
	}
	// Bob's list of alice's devices is the log's newest, and so is the
	// tablet's (as after its next owner check).
	if _, err := bob.lookup(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	if err := tablet.CheckTransparency(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, to := range []*Client{bob, tablet} {
		before := to.Stats().Dropped
		if evs := deliver(t, to, preKeyFrom(t, laptop, to, "it is me, alice")); len(evs) != 0 {
			t.Fatalf("%s.%d shows %v from the removed device", to.Username(), to.DeviceID(), evs)
		}
		if to.Stats().Dropped != before+1 {
			t.Fatalf("%s.%d did not drop the message of the removed device", to.Username(), to.DeviceID())
		}
	}
	// Bob's sessions with the laptop, from before, are not used: not for
	// the club's sender key, nor for his messages.
	g, err := bob.findGroup(ctxT(t), "#club")
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := g.state.Member(alice.AccountID())
	msgs, _, err := bob.senderKeyMessages(ctxT(t), g, mem, []byte("skm"))
	if err != nil || len(msgs) != 2 || slices.ContainsFunc(msgs, func(m api.OutgoingMessage) bool { return m.DeviceID == laptop.DeviceID() }) {
		t.Fatalf("bob's sender-key messages for alice: %+v, %v", msgs, err)
	}
	if got := encryptedTo(t, bob, "alice"); !slices.Equal(got, []uint32{1, tablet.DeviceID()}) {
		t.Fatalf("bob encrypts for alice's devices %v", got)
	}
	// The tablet's transcripts go to alice's first device alone.
	if got := encryptedTo(t, tablet, "alice"); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("the tablet's transcripts go to %v", got)
	}
	for _, c := range []*Client{bob, tablet} {
		if slices.Contains(sessionsWith(t, c, alice.AccountID()), laptop.DeviceID()) {
			t.Fatalf("%s.%d keeps a session with the removed device", c.Username(), c.DeviceID())
		}
	}
	res := mustSend(t, bob, "alice", "after")
	if res.Devices != 2 {
		t.Fatalf("bob's message went to %d devices", res.Devices)
	}
	wantTexts(t, receive(t, alice), "bob", "after")

	// Carol has not looked alice up since: her session with the laptop
	// stands, until her list is an hour old and she looks again.
	later := time.Now().Add(listMaxAge + time.Minute)
	k.setClock(later)
	k.publish()
	carol.now = func() time.Time { return later }
	if got := encryptedTo(t, carol, "alice"); !slices.Equal(got, []uint32{1, tablet.DeviceID()}) {
		t.Fatalf("carol, an hour later, encrypts for alice's devices %v", got)
	}
	if slices.Contains(sessionsWith(t, carol, alice.AccountID()), laptop.DeviceID()) {
		t.Fatal("carol keeps a session with the removed device")
	}
}
