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

// FuzzBundle processes bundles with arbitrary curve keys and signatures (and a Kyber
// key with one byte changed anywhere): nothing may panic, a bundle is accepted only if
// it verifies, and a rejected bundle leaves no session. Keys are taken as raw 32-byte
// values so that the fuzzer reaches signature checking and key agreement instead of
// stopping at key parsing.
func FuzzBundle(f *testing.F) {
	alice, bob := newParty(f, "alice"), newParty(f, "bob")
	b := bob.bundle(f, true)
	f.Add(b.IdentityKey[:], b.SignedPreKey[:], b.SignedPreKeySignature, b.KyberPreKeySignature, b.PreKey[:], uint16(0), byte(0))
	f.Add(b.IdentityKey[:], b.SignedPreKey[:], b.SignedPreKeySignature, b.KyberPreKeySignature, b.PreKey[:], uint16(100), byte(1))
	kyber := b.KyberPreKey.Bytes()
	f.Fuzz(func(t *testing.T, identity, signed, signedSig, kyberSig, oneTime []byte, kyberAt uint16, kyberFlip byte) {
		fb := Bundle{SignedPreKeySignature: signedSig, KyberPreKeySignature: kyberSig}
		copy(fb.IdentityKey[:], identity)
		copy(fb.SignedPreKey[:], signed)
		if len(oneTime) > 0 {
			fb.HasPreKey = true
			copy(fb.PreKey[:], oneTime)
		}
		kb := bytes.Clone(kyber)
		kb[1+int(kyberAt)%(len(kb)-1)] ^= kyberFlip
		var err error
		if fb.KyberPreKey, err = keys.ParseKEMPublicKey(kb); err != nil {
			t.Fatalf("a Kyber key with one byte changed does not parse: %v", err)
		}
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
