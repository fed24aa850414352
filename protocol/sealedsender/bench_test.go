package sealedsender

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkV1EncryptDecrypt is one sealed message with 100 bytes of contents: sealed to
// one recipient, then opened by it.
func BenchmarkV1EncryptDecrypt(b *testing.B) {
	pki := newPKI(b, 1)
	alice := newParty(b, pki, testUUID, 1)
	bob := newKey(b)
	c := alice.content(TypeWhisper, make([]byte, 100))
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := Encrypt(nil, bob.PublicKey(), alice.id, c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decrypt(sealed, bob); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkV2EncryptMulti seals 100 bytes of contents to n accounts of one device each.
func BenchmarkV2EncryptMulti(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			pki := newPKI(b, 1)
			alice := newParty(b, pki, testUUID, 1)
			rs := recipientsOf(newAccounts(b, rand.New(rand.NewPCG(1, 1)), n, 1))
			c := alice.content(TypeSenderKey, make([]byte, 100))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncryptMulti(nil, rs, alice.id, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkV2ParseSentSplit is the server's work for one message to 1,000 accounts of
// one device each: parse the SentMessage and make every ReceivedMessage.
func BenchmarkV2ParseSentSplit(b *testing.B) {
	pki := newPKI(b, 1)
	alice := newParty(b, pki, testUUID, 1)
	rs := recipientsOf(newAccounts(b, rand.New(rand.NewPCG(1, 1)), 1000, 1))
	sent, err := EncryptMulti(nil, rs, alice.id, alice.content(TypeSenderKey, make([]byte, 100)))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(sent)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := ParseSent(sent)
		if err != nil {
			b.Fatal(err)
		}
		for i := range m.Recipients {
			_ = m.ForRecipient(i)
		}
	}
}
