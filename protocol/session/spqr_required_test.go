package session

import (
	"errors"
	"testing"
	"time"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/keys"
)

// TestLibsignalRequiresSPQR answers, by test, whether libsignal 0.103 talks to a peer
// that does not speak SPQR: it does not, in either direction. That is why this package
// implements SPQR (docs/protocol.md).
func TestLibsignalRequiresSPQR(t *testing.T) {
	testWithoutPQR = true
	t.Cleanup(func() { testWithoutPQR = false })
	const goName, libName = "6f0a1e3c-54b7-4c1e-9d8a-2b9f3c4d5e6f", "0c4b7a9e-1d2f-4e3a-8b5c-6d7e8f9a0b1c"

	t.Run("libsignal-rejects-a-peer-without-spqr", func(t *testing.T) {
		g := newParty(t, goName)
		lib, libID := libsignal.StartTest(t, libName, 2)
		b, err := lib.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
		if err != nil {
			t.Fatal(err)
		}
		bundle := &Bundle{
			RegistrationID: b.RegistrationID, DeviceID: b.DeviceID,
			SignedPreKeyID: b.SignedPreKeyID, SignedPreKeySignature: b.SignedPreKeySignature,
			KyberPreKeyID: b.KyberPreKeyID, KyberPreKeySignature: b.KyberPreKeySignature,
			HasPreKey: true, PreKeyID: b.PreKeyID,
		}
		mustParse := func(dst *keys.PublicKey, src []byte) {
			k, err := keys.ParsePublicKey(src)
			if err != nil {
				t.Fatal(err)
			}
			*dst = k
		}
		mustParse(&bundle.IdentityKey, b.IdentityKey)
		mustParse(&bundle.SignedPreKey, b.SignedPreKeyPublic)
		mustParse(&bundle.PreKey, b.PreKeyPublic)
		if bundle.KyberPreKey, err = keys.ParseKEMPublicKey(b.KyberPreKeyPublic); err != nil {
			t.Fatal(err)
		}
		libAddr := Address{Name: libID.Name, DeviceID: libID.DeviceID}
		if err := g.record.InitiateSession(g.id, g.addr, libAddr, bundle, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		typ, ct, err := g.record.Encrypt([]byte("no post-quantum ratchet"), time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = lib.Decrypt(libsignal.Address{Name: goName, DeviceID: 1}, libsignal.Ciphertext{Type: int(typ), Body: ct})
		if !errors.Is(err, libsignal.ErrInvalidMessage) {
			t.Fatalf("libsignal 0.103 decrypting from a peer without SPQR: %v; want an invalid-message error", err)
		}
	})

	t.Run("a-peer-without-spqr-cannot-read-libsignal", func(t *testing.T) {
		g := newParty(t, goName)
		lib, libID := libsignal.StartTest(t, libName, 2)
		bundle := g.bundle(t, true)
		lb := libsignal.Bundle{
			RegistrationID: bundle.RegistrationID, DeviceID: 1,
			PreKeyID: bundle.PreKeyID, PreKeyPublic: bundle.PreKey.Bytes(),
			SignedPreKeyID: bundle.SignedPreKeyID, SignedPreKeyPublic: bundle.SignedPreKey.Bytes(),
			SignedPreKeySignature: bundle.SignedPreKeySignature,
			KyberPreKeyID:         bundle.KyberPreKeyID, KyberPreKeyPublic: bundle.KyberPreKey.Bytes(),
			KyberPreKeySignature: bundle.KyberPreKeySignature, IdentityKey: bundle.IdentityKey.Bytes(),
		}
		goAddr := libsignal.Address{Name: goName, DeviceID: 1}
		if err := lib.ProcessBundle(goAddr, lb); err != nil {
			t.Fatal(err)
		}
		c, err := lib.Encrypt(goAddr, []byte("with SPQR"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParsePreKeySignalMessage(c.Body)
		if err != nil {
			t.Fatal(err)
		}
		libAddr := Address{Name: libID.Name, DeviceID: libID.DeviceID}
		if _, _, err := g.record.DecryptPreKey(m, g.id, g.addr, libAddr, g.store, nil); !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("a peer without SPQR decrypting libsignal 0.103: %v; want ErrInvalidMessage", err)
		}
	})
}
