package session

import (
	"bytes"
	"testing"

	"github.com/doorless/doorless/protocol/keys"
)

// fuzzSeeds makes a real conversation and returns its messages and a record, so that the
// fuzzers start from valid inputs.
func fuzzSeeds(f *testing.F) (prekey, whisper, record []byte) {
	alice, bob := setup(f, true)
	typ, ct := alice.send(f, bob, "seed message")
	if typ != TypePreKey {
		f.Fatal("first message is not a prekey message")
	}
	if _, err := bob.receive(alice, typ, ct); err != nil {
		f.Fatal(err)
	}
	_, reply := bob.send(f, alice, "seed reply")
	rec, err := bob.record.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	return ct, reply, rec
}

func FuzzParseSignalMessage(f *testing.F) {
	_, whisper, _ := fuzzSeeds(f)
	f.Add(whisper)
	f.Add([]byte{0x44})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSignalMessage(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Bytes(), b) {
			t.Fatal("parsed message does not keep its bytes")
		}
	})
}

func FuzzParsePreKeySignalMessage(f *testing.F) {
	prekey, _, _ := fuzzSeeds(f)
	f.Add(prekey)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParsePreKeySignalMessage(b)
		if err != nil {
			return
		}
		_ = m.Message().Counter()
	})
}

func FuzzParseRecord(f *testing.F) {
	_, _, rec := fuzzSeeds(f)
	f.Add(rec)
	f.Add([]byte{recordFormatV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		// A record that parses marshals and parses again.
		out, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal of a parsed record: %v", err)
		}
		if _, err := ParseRecord(out); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzDecrypt feeds arbitrary messages to a live session: nothing may panic, and a
// message that fails must leave the record as it was.
func FuzzDecrypt(f *testing.F) {
	prekey, whisper, _ := fuzzSeeds(f)
	f.Add(whisper, false)
	f.Add(prekey, true)
	alice, bob := setup(f, true)
	typ, ct := alice.send(f, bob, "hello")
	if _, err := bob.receive(alice, typ, ct); err != nil {
		f.Fatal(err)
	}
	_, reply := bob.send(f, alice, "reply")
	f.Add(reply, false)
	base, err := alice.record.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, asPreKey bool) {
		rec, err := ParseRecord(base)
		if err != nil {
			t.Fatal(err)
		}
		alice.record = rec
		typ := TypeWhisper
		if asPreKey {
			typ = TypePreKey
		}
		if _, err := alice.receive(bob, typ, b); err != nil {
			after, _ := alice.record.MarshalBinary()
			if !bytes.Equal(after, base) {
				t.Fatal("a failed decryption changed the record")
			}
		}
	})
}

// FuzzBundle processes bundles with arbitrary keys and signatures: nothing may panic,
// and a bundle that is accepted must verify.
func FuzzBundle(f *testing.F) {
	alice, bob := newParty(f, "alice"), newParty(f, "bob")
	b := bob.bundle(f, true)
	f.Add(b.IdentityKey.Bytes(), b.SignedPreKey.Bytes(), b.SignedPreKeySignature, b.KyberPreKey.Bytes(), b.KyberPreKeySignature, b.PreKey.Bytes())
	f.Fuzz(func(t *testing.T, identity, signed, signedSig, kyber, kyberSig, oneTime []byte) {
		var fb Bundle
		var err error
		if fb.IdentityKey, err = keys.ParsePublicKey(identity); err != nil {
			return
		}
		if fb.SignedPreKey, err = keys.ParsePublicKey(signed); err != nil {
			return
		}
		if fb.KyberPreKey, err = keys.ParseKEMPublicKey(kyber); err != nil {
			return
		}
		if pk, err := keys.ParsePublicKey(oneTime); err == nil {
			fb.HasPreKey, fb.PreKey = true, pk
		}
		fb.SignedPreKeySignature, fb.KyberPreKeySignature = signedSig, kyberSig
		var r Record
		err = r.InitiateSession(alice.id, alice.addr, bob.addr, &fb, testNow, nil)
		if err == nil && fb.Verify() != nil {
			t.Fatal("a bundle that does not verify made a session")
		}
		if err != nil && r.HasCurrentSession() {
			t.Fatal("a rejected bundle left a session")
		}
	})
}
