package client

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
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
