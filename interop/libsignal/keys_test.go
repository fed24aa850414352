package libsignal_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/keys"
)

// TestInteropXEdDSA checks that signatures made by our keys verify in libsignal and the
// other way round, and that both refuse a signature with any one bit flipped.
func TestInteropXEdDSA(t *testing.T) {
	priv, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	lib, libID := libsignal.StartTest(t, "signer", 1)
	// libsignal imports our private key: both sides then hold the same identity.
	twin := libsignal.StartBare(t)
	twinID, err := twin.Init(libsignal.InitParams{Name: "twin", DeviceID: 1, IdentityPrivate: priv.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(twinID.IdentityKey, priv.PublicKey().Bytes()) {
		t.Fatalf("libsignal derives public key %x from our private key, we derive %x", twinID.IdentityKey, priv.PublicKey().Bytes())
	}
	libPub, err := keys.ParsePublicKey(libID.IdentityKey)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		msg := []byte(fmt.Sprintf("message %d %s", i, bytes.Repeat([]byte{byte(i)}, i*7)))

		ours, err := priv.Sign(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := lib.Verify(priv.PublicKey().Bytes(), msg, ours); err != nil || !ok {
			t.Fatalf("libsignal rejects our signature: %v %v", ok, err)
		}
		bad := bytes.Clone(ours)
		bad[i%64] ^= 1 << (i % 8)
		if ok, err := lib.Verify(priv.PublicKey().Bytes(), msg, bad); err != nil || ok {
			t.Fatalf("libsignal accepts our signature with a flipped bit: %v %v", ok, err)
		}

		theirs, err := lib.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !libPub.Verify(theirs, msg) {
			t.Fatal("we reject libsignal's signature")
		}
		bad = bytes.Clone(theirs)
		bad[(i*5)%64] ^= 1 << (i % 8)
		if libPub.Verify(bad, msg) {
			t.Fatal("we accept libsignal's signature with a flipped bit")
		}
		// A signature by libsignal with our private key verifies under our public key.
		twinSig, err := twin.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !priv.PublicKey().Verify(twinSig, msg) {
			t.Fatal("we reject libsignal's signature made with our key")
		}
	}
}
