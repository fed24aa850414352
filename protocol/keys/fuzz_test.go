package keys

import (
	"bytes"
	"testing"
)

func FuzzParsePublicKey(f *testing.F) {
	k, _ := GenerateKeyPair(nil)
	f.Add(k.Public.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParsePublicKey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(pub.Bytes(), b) {
			t.Fatal("re-encoding differs")
		}
		_ = pub.IsCanonical()
	})
}

func FuzzParseKEMPublicKey(f *testing.F) {
	kp, _ := GenerateKEMKeyPair(KEMKyber1024, nil)
	f.Add(kp.Public.Bytes())
	f.Add([]byte{byte(KEMMLKEM1024)})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParseKEMPublicKey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(pub.Bytes(), b) {
			t.Fatal("re-encoding differs")
		}
		if _, _, err := pub.Encapsulate(nil); err != nil {
			t.Fatalf("parsed key cannot encapsulate: %v", err)
		}
	})
}

func FuzzParseKEMPrivateKey(f *testing.F) {
	kp, _ := GenerateKEMKeyPair(KEMKyber1024, nil)
	f.Add(kp.Private.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKEMPrivateKey(b)
		if err != nil {
			return
		}
		if _, err := k.Decapsulate(make([]byte, 3)); err == nil {
			t.Fatal("short ciphertext accepted")
		}
	})
}

// FuzzVerify checks that signature verification never panics and never accepts a
// signature over another message.
func FuzzVerify(f *testing.F) {
	k, _ := GeneratePrivateKey(nil)
	msg := []byte("message")
	sig, _ := k.Sign(nil, msg)
	pub := k.PublicKey()
	f.Add(pub[:], sig, msg)
	f.Fuzz(func(t *testing.T, pubBytes, sig, msg []byte) {
		var p PublicKey
		copy(p[:], pubBytes)
		if p.Verify(sig, msg) && p == pub && !bytes.Equal(msg, []byte("message")) {
			t.Fatal("signature verified over another message")
		}
	})
}
