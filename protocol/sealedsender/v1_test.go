package sealedsender

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

const bobUUID = "0c4b7a9e-1d2f-4e3a-8b5c-6d7e8f9a0b1c"

func randomContent(r *rand.Rand, from *party) *Content {
	types := []MessageType{TypeWhisper, TypePreKey, TypeSenderKey, TypePlaintext}
	c := from.content(types[r.IntN(len(types))], make([]byte, r.IntN(600)))
	for i := range c.Contents {
		c.Contents[i] = byte(r.Uint32())
	}
	c.Hint = ContentHint(r.IntN(4))
	if r.IntN(2) == 0 {
		c.GroupID = []byte{byte(r.Uint32()), 2, 3}
	}
	return c
}

func TestV1RoundTrip(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	bob := newParty(t, pki, bobUUID, 1)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range 200 {
		c := randomContent(r, alice)
		sealed, err := Encrypt(nil, bob.id.PublicKey(), alice.id, c)
		if err != nil {
			t.Fatal(err)
		}
		if sealed[0] != 0x11 {
			t.Fatalf("version byte %#x", sealed[0])
		}
		got, err := Decrypt(sealed, bob.id)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		sameContent(t, got, c)
		if err := got.Sender.Validate(pki.roots(), testExpiry); err != nil {
			t.Fatal(err)
		}
		if _, err := Decrypt(sealed, alice.id); !errors.Is(err, ErrDecryption) {
			t.Fatalf("#%d: opened by the sender: %v", i, err)
		}
	}
}

// TestV1Layout checks the outer encoding: the version byte and the three fields of
// UnidentifiedSenderMessage in libsignal's order, an ephemeral key, the sender's
// 33-byte key with a 10-byte MAC, and the content with a 10-byte MAC.
func TestV1Layout(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	bob := newParty(t, pki, bobUUID, 1)
	c := alice.content(TypeWhisper, []byte("hi"))
	sealed, err := Encrypt(nil, bob.id.PublicKey(), alice.id, c)
	if err != nil {
		t.Fatal(err)
	}
	var nums []protowire.Number
	var lens []int
	err = wire.Walk(sealed[1:], func(num protowire.Number, _ protowire.Type, _ uint64, bs []byte) error {
		nums, lens = append(nums, num), append(lens, len(bs))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{keys.PublicKeySize, keys.PublicKeySize + v1MACSize, len(c.Bytes()) + v1MACSize}
	if len(nums) != 3 || nums[0] != 1 || nums[1] != 2 || nums[2] != 3 || lens[0] != want[0] || lens[1] != want[1] || lens[2] != want[2] {
		t.Fatalf("fields %v, lengths %v, want lengths %v", nums, lens, want)
	}
}

func TestV1Refusals(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	bob := newParty(t, pki, bobUUID, 1)
	c := alice.content(TypeSenderKey, []byte("group message"))
	sealed, err := Encrypt(nil, bob.id.PublicKey(), alice.id, c)
	if err != nil {
		t.Fatal(err)
	}

	// Every byte after the version byte is covered: a flipped bit anywhere is refused.
	for i := 1; i < len(sealed); i++ {
		for bit := range 8 {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1 << bit
			if got, err := Decrypt(bad, bob.id); err == nil {
				t.Fatalf("byte %d bit %d flipped: decrypted %+v", i, bit, got)
			}
		}
	}
	for n := range len(sealed) {
		if _, err := Decrypt(sealed[:n], bob.id); err == nil {
			t.Fatalf("truncated to %d bytes: decrypted", n)
		}
	}
	// libsignal reads a high nibble of 0 as version 1 too; the low nibble is the writer's.
	for _, v := range []byte{0x01, 0x10, 0x1f} {
		bad := append([]byte{v}, sealed[1:]...)
		if _, err := Decrypt(bad, bob.id); err != nil {
			t.Errorf("version byte %#x: %v", v, err)
		}
	}
	for _, v := range []byte{0x33, 0x40, 0xff} {
		bad := append([]byte{v}, sealed[1:]...)
		if _, err := Decrypt(bad, bob.id); !errors.Is(err, ErrUnknownVersion) {
			t.Errorf("version byte %#x: %v", v, err)
		}
	}
	if _, err := Decrypt(nil, bob.id); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty: %v", err)
	}

	// A sender that seals someone else's certificate: the recipient sees that the key
	// the message was sealed with is not the certificate's.
	mallory := newKey(t)
	forged, err := encryptV1(nil, bob.id.PublicKey(), mallory, c.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decrypt(forged, bob.id); !errors.Is(err, ErrDecryption) {
		t.Errorf("someone else's certificate: %v", err)
	}
	// The content must parse after it decrypts.
	junk, err := encryptV1(nil, bob.id.PublicKey(), alice.id, []byte("not a content"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decrypt(junk, bob.id); !errors.Is(err, ErrMalformed) {
		t.Errorf("junk content: %v", err)
	}

	// Encrypt refuses what the recipient would refuse.
	for name, tc := range map[string]struct {
		c      *Content
		sender *keys.PrivateKey
	}{
		"no content":        {nil, alice.id},
		"no certificate":    {&Content{Type: TypeWhisper}, alice.id},
		"unknown type":      {alice.content(4, nil), alice.id},
		"no sender key":     {c, nil},
		"another's content": {c, mallory},
	} {
		if _, err := Encrypt(nil, bob.id.PublicKey(), tc.sender, tc.c); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := EncryptMulti(nil, []Recipient{{IdentityKey: bob.id.PublicKey(), Devices: []Device{{1, 1}}}}, tc.sender, tc.c); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("multi, %s: %v", name, err)
		}
	}
	if _, err := Encrypt(nil, keys.PublicKey{}, alice.id, c); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("small-order recipient key: %v", err)
	}
	if _, err := Decrypt(sealed, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no local key: %v", err)
	}
}
