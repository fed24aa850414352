package senderkey

import "testing"

// BenchmarkEncryptDecrypt is one 100-byte group message: the sender encrypts and signs,
// one member parses, verifies and decrypts.
func BenchmarkEncryptDecrypt(b *testing.B) {
	g := newGroup(b, 1)
	msg := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		ct, err := g.sender.Encrypt(msg, nil)
		if err != nil {
			b.Fatal(err)
		}
		m, err := ParseMessage(ct)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := g.members[0].Decrypt(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncrypt is the sender's side alone: encrypt and sign 100 bytes.
func BenchmarkEncrypt(b *testing.B) {
	g := newGroup(b, 0)
	msg := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.sender.Encrypt(msg, nil); err != nil {
			b.Fatal(err)
		}
	}
}
