package client

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/attachment"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/internal/franking"
)

func testFrankingServer(t *testing.T) *franking.Server {
	t.Helper()
	secret, err := franking.NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := franking.NewServer(secret)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestEncodeFranked: what goes out opens its commitment, binds it to the
// sender's account for the recipient (or the group), and leaves the
// caller's content as it was.
func TestEncodeFranked(t *testing.T) {
	srv := testFrankingServer(t)
	alice, bob := api.NewUUID(), api.NewUUID()
	key := srv.AccountKey(alice)
	groupID := bytes.Repeat([]byte{3}, content.GroupIDSize)
	for _, tc := range []struct {
		name string
		cont *content.Content
		ctx  []byte
	}{
		{"direct", &content.Content{Timestamp: 1, Body: "hi"}, franking.DirectContext(bob)},
		{"group", &content.Content{Timestamp: 1, Body: "hi all", GroupID: groupID}, franking.GroupContext(groupID)},
		{"receipt", &content.Content{Timestamp: 1, Receipt: &content.Receipt{Type: content.ReceiptRead, Timestamps: []int64{5}}},
			franking.DirectContext(bob)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, cm, err := encodeFranked(tc.cont, key, bob)
			if err != nil {
				t.Fatal(err)
			}
			if tc.cont.Franking != nil {
				t.Error("the caller's content was franked in place")
			}
			got, err := content.Parse(pt)
			if err != nil {
				t.Fatal(err)
			}
			if !franking.Opens(got, cm) {
				t.Fatal("the content does not open its own commitment")
			}
			if !srv.CheckSender(alice, cm, tc.ctx, got.Franking.SenderTag[:]) {
				t.Error("the sender tag does not bind the commitment to the sender for its context")
			}
			if srv.CheckSender(bob, cm, tc.ctx, got.Franking.SenderTag[:]) {
				t.Error("the sender tag binds the commitment to another account")
			}
			// Two sends of one content: fresh keys, different commitments.
			_, cm2, err := encodeFranked(tc.cont, key, bob)
			if err != nil || bytes.Equal(cm, cm2) {
				t.Errorf("a second franking reused the commitment (%v)", err)
			}
		})
	}
	if _, _, err := encodeFranked(&content.Content{Timestamp: -1}, key, bob); !errors.Is(err, content.ErrMalformed) {
		t.Errorf("malformed content: %v", err)
	}
}

// TestFrankingDoesNotRelyOnTheCipher is the "invisible salamanders" attack
// on franking, which works against a cipher that is not key-committing
// (AES-GCM; a multi-recipient send whose shared payload decrypts to one
// text for one recipient and to another for the next): however the sender
// makes one ciphertext decrypt to two plaintexts, both recipients check
// the one commitment the server saw against what they decrypted, and at
// most one of them opens it. The other drops its message, so the text a
// recipient sees is the text a report proves.
func TestFrankingDoesNotRelyOnTheCipher(t *testing.T) {
	srv := testFrankingServer(t)
	alice, bob := api.NewUUID(), api.NewUUID()
	shown := &content.Content{Timestamp: 7, Body: "meet me at noon"}
	pt, cm, err := encodeFranked(shown, srv.AccountKey(alice), bob)
	if err != nil {
		t.Fatal(err)
	}
	honest, err := content.Parse(pt)
	if err != nil {
		t.Fatal(err)
	}
	// What a second recipient would decrypt: another text, carrying the
	// very franking field (key and sender tag) of the first.
	other := *honest
	other.Body = "something abusive"
	if !franking.Opens(honest, cm) {
		t.Fatal("the honest plaintext does not open")
	}
	if franking.Opens(&other, cm) {
		t.Fatal("two plaintexts open one commitment")
	}
	// Nor with a franking key of the sender's choosing for the second.
	other.Franking = &content.Franking{}
	if _, err := io.ReadFull(rand.Reader, other.Franking.Key[:]); err != nil {
		t.Fatal(err)
	}
	if franking.Opens(&other, cm) {
		t.Fatal("a second key opens the commitment for another text")
	}
	// The server refuses to take the other text as reported.
	rep := &franking.Report{Content: encodedForTest(t, &other), Delivery: franking.Delivery{
		Commitment: cm[:], Recipient: bob, RecipientDevice: 1, Source: alice, SourceDevice: 1,
		EnvelopeType: api.EnvelopeWhisper, ServerTimestamp: 1}, Sender: alice}
	tag := srv.Tag(&rep.Delivery)
	rep.DeliveryTag = tag[:]
	if _, err := srv.VerifyReport(rep); !errors.Is(err, franking.ErrAltered) {
		t.Fatalf("report of the other text: %v, want ErrAltered", err)
	}
	rep.Content = pt
	if v, err := srv.VerifyReport(rep); err != nil || v.Content.Body != shown.Body {
		t.Fatalf("report of the text shown: %v", err)
	}
}

func encodedForTest(t *testing.T, c *content.Content) []byte {
	t.Helper()
	b, err := content.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAttachmentSwapFails: an attachment's 64-byte key and its blob's
// digest are inside the committed content. A sender that encrypts a second
// blob under the same key (valid MAC and all) cannot have it taken for the
// first: the digest the commitment covers is the first blob's, so the
// recipient refuses the second; and changing the digest in the content
// breaks the commitment.
func TestAttachmentSwapFails(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, attachment.KeySize)
	seal := func(text string, iv byte) ([]byte, *attachment.Pointer) {
		var blob bytes.Buffer
		rnd := io.MultiReader(bytes.NewReader(key), bytes.NewReader(bytes.Repeat([]byte{iv}, 16)))
		p, err := attachment.Encrypt(&blob, bytes.NewReader([]byte(text)), int64(len(text)), rnd)
		if err != nil {
			t.Fatal(err)
		}
		return blob.Bytes(), p
	}
	first, p1 := seal("the picture shown", 1)
	second, p2 := seal("the picture swapped", 2)
	if p1.Key != p2.Key || p1.Digest == p2.Digest {
		t.Fatal("the test wants one key and two blobs")
	}
	var out bytes.Buffer
	if err := attachment.Decrypt(&out, bytes.NewReader(first), int64(len(first)), p1); err != nil || out.String() != "the picture shown" {
		t.Fatalf("the first blob: %q, %v", out.String(), err)
	}
	swapped := *p1
	swapped.BlobSize = int64(len(second))
	swapped.Size = p2.Size
	out.Reset()
	if err := attachment.Decrypt(&out, bytes.NewReader(second), int64(len(second)), &swapped); !errors.Is(err, attachment.ErrDigestMismatch) || out.Len() != 0 {
		t.Fatalf("the swapped blob: %v, wrote %d bytes", err, out.Len())
	}

	srv := testFrankingServer(t)
	alice, bob := api.NewUUID(), api.NewUUID()
	cont := &content.Content{Timestamp: 1, Attachment: &content.Attachment{ID: "blob", Key: p1.Key[:], Digest: p1.Digest[:],
		Size: p1.Size, BlobSize: p1.BlobSize}}
	pt, cm, err := encodeFranked(cont, srv.AccountKey(alice), bob)
	if err != nil {
		t.Fatal(err)
	}
	got, err := content.Parse(pt)
	if err != nil {
		t.Fatal(err)
	}
	got.Attachment.Digest = p2.Digest[:]
	if franking.Opens(got, cm) {
		t.Fatal("the content opens its commitment with another blob's digest")
	}
}

// TestDroppedEventHasNoPlaintext: the event for a message dropped for its
// commitment names the sender and the time, nothing of the message.
func TestDroppedEventHasNoPlaintext(t *testing.T) {
	it, err := encodeEvent("e", &storedDropped{From: "alice", FromDevice: 2, Received: 1000})
	if err != nil {
		t.Fatal(err)
	}
	v, err := decodeEvent(it)
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := event(v).(*DroppedMessage)
	if !ok || ev.From != "alice" || ev.FromDevice != 2 || !ev.Received.Equal(time.UnixMilli(1000)) {
		t.Fatalf("event %#v", event(v))
	}
}

// setQueuedFranking rewrites the franking commitment of every envelope
// queued for c's account in the server's database, as a server does not:
// empty, an envelope as queued before the server franked (its store's
// migration 5 gave them no commitment); or another commitment.
func (s *testServer) setQueuedFranking(t *testing.T, c *Client, commitment []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", s.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctxT(t), `UPDATE envelopes SET franking = ? WHERE account_id = ?`, commitment, c.AccountID())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		t.Fatalf("rewrote %d envelopes: %v", n, err)
	}
}

// TestQuietPart: of content that came with no commitment, what shows
// nothing is kept and the rest set aside.
func TestQuietPart(t *testing.T) {
	group := bytes.Repeat([]byte{7}, content.GroupIDSize)
	pk := bytes.Repeat([]byte{9}, 32)
	receipt := &content.Receipt{Type: content.ReceiptDelivered, Timestamps: []int64{5}}
	for _, tt := range []struct {
		name string
		in   content.Content
		want content.Content
	}{
		{"receipt", content.Content{Timestamp: 1, Receipt: receipt, ProfileKey: pk},
			content.Content{Timestamp: 1, Receipt: receipt, ProfileKey: pk}},
		{"sender key distribution and its group change", content.Content{Timestamp: 1, GroupID: group, GroupChange: []byte("change"), SenderKey: []byte("skdm"), ProfileKey: pk},
			content.Content{Timestamp: 1, GroupID: group, SenderKey: []byte("skdm"), ProfileKey: pk}},
		{"text", content.Content{Timestamp: 1, Body: "hi", ExpireTimer: 60, ProfileKey: pk},
			content.Content{Timestamp: 1, ProfileKey: pk}},
		{"attachment", content.Content{Timestamp: 1, Attachment: &content.Attachment{ID: "x"}, ViewOnce: true},
			content.Content{Timestamp: 1}},
		{"group text", content.Content{Timestamp: 1, Body: "hi all", GroupID: group},
			content.Content{Timestamp: 1}},
		{"group change alone", content.Content{Timestamp: 1, GroupID: group, GroupChange: []byte("change"), ProfileKey: pk},
			content.Content{Timestamp: 1, ProfileKey: pk}},
		{"timer update", content.Content{Timestamp: 1, ExpireTimer: 60, TimerUpdate: true},
			content.Content{Timestamp: 1}},
		{"transcript", content.Content{Timestamp: 1, Sync: true, Destination: "bob", Body: "hi", ProfileKey: pk, Receipt: receipt},
			content.Content{Timestamp: 1}},
		{"sender key without a group", content.Content{Timestamp: 1, SenderKey: []byte("skdm")},
			content.Content{Timestamp: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			got := quietPart(&in)
			if got.Timestamp != tt.want.Timestamp || got.Body != "" || got.Attachment != nil || got.ViewOnce ||
				got.ExpireTimer != 0 || got.TimerUpdate || got.GroupChange != nil || got.Sync || got.Destination != "" ||
				got.Franking != nil || !bytes.Equal(got.GroupID, tt.want.GroupID) || !bytes.Equal(got.SenderKey, tt.want.SenderKey) ||
				!bytes.Equal(got.ProfileKey, tt.want.ProfileKey) || got.Receipt != tt.want.Receipt {
				t.Fatalf("quietPart = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestUnfrankedFromBeforeFranking: envelopes queued before the server
// franked (no commitment at all) are still acted on for what shows
// nothing: bob keeps alice's sender key from one (so her later group
// messages open) and the delivery receipt in another; the texts among
// them, direct and to the group, are dropped, each with a
// DroppedMessage, as they could not be reported. Carol, whose envelopes
// carry a wrong commitment instead, drops everything, the sender key
// too, so alice's later group message does not open for her.
func TestUnfrankedFromBeforeFranking(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})
	introduce(t, alice, bob)
	introduce(t, alice, carol)
	if _, err := alice.CreateGroup(ctxT(t), "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	receive(t, carol)
	if err := alice.SetReceipts(ctxT(t), true, false); err != nil {
		t.Fatal(err)
	}
	ping := mustSend(t, bob, "alice", "ping")
	receive(t, alice) // alice's delivery receipt goes to bob

	// Queued before the upgrade: the receipt, alice's sender key (with
	// her first group message) and a direct text.
	if _, err := alice.SendMessage(ctxT(t), "#club", Outgoing{Text: "group before"}); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "direct before")
	s.setQueuedFranking(t, bob, []byte{})
	s.setQueuedFranking(t, carol, make([]byte, api.FrankingSize))

	summarize := func(evs []Event) (texts []string, dropped int, receipts []string) {
		for _, ev := range evs {
			switch ev := ev.(type) {
			case *Message:
				texts = append(texts, ev.Text)
			case *DroppedMessage:
				if ev.From != "alice" {
					t.Errorf("dropped event %+v", ev)
				}
				dropped++
			case *Receipt:
				receipts = append(receipts, ev.Messages...)
			}
		}
		return
	}
	texts, dropped, receipts := summarize(receive(t, bob))
	if len(texts) != 0 || dropped != 2 || len(receipts) != 1 || receipts[0] != ping.ID {
		t.Fatalf("bob got texts %q, %d dropped, receipts for %q; want none, 2, [%s]", texts, dropped, receipts, ping.ID)
	}
	texts, dropped, _ = summarize(receive(t, carol))
	if len(texts) != 0 || dropped != 1 {
		t.Fatalf("carol got texts %q and %d dropped; want none and 1 (the sender key's envelope)", texts, dropped)
	}
	for _, c := range []*Client{bob, carol} {
		for _, with := range []string{"alice", "#club"} {
			ms, err := c.Messages(ctxT(t), with, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if strings.Contains(m.Text, "before") {
					t.Fatalf("%s keeps %q", c.Username(), m.Text)
				}
			}
		}
	}

	// After the upgrade: alice's next group message goes under the sender
	// key she distributed before (she has no reason to send it again).
	if _, err := alice.SendMessage(ctxT(t), "#club", Outgoing{Text: "group after"}); err != nil {
		t.Fatal(err)
	}
	if texts, _, _ := summarize(receive(t, bob)); len(texts) != 1 || texts[0] != "group after" {
		t.Fatalf("bob got %q, want the group message under the sender key from before the upgrade", texts)
	}
	before := carol.Stats().Dropped
	if texts, _, _ := summarize(receive(t, carol)); len(texts) != 0 || carol.Stats().Dropped != before+1 {
		t.Fatalf("carol got %q, dropped %d; want nothing, 1 (she dropped the sender key)", texts, carol.Stats().Dropped-before)
	}
}
