package session

import "testing"

// BenchmarkEncryptDecrypt is one message on one chain: Alice encrypts 100 bytes, Bob
// parses and decrypts. The cross-library comparison is in the bench module.
func BenchmarkEncryptDecrypt(b *testing.B) {
	alice, bob := setup(b, false)
	typ, ct := alice.send(b, bob, "hello")
	if _, err := bob.receive(alice, typ, ct); err != nil {
		b.Fatal(err)
	}
	typ, ct = bob.send(b, alice, "reply")
	if _, err := alice.receive(bob, typ, ct); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		_, ct, err := alice.record.Encrypt(msg, testNow, nil)
		if err != nil {
			b.Fatal(err)
		}
		m, err := ParseSignalMessage(ct)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.record.Decrypt(m, nil); err != nil {
			b.Fatal(err)
		}
	}
}
