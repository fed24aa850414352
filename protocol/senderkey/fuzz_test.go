package senderkey

import (
	"bytes"
	"testing"
)

// fuzzSeeds makes a real group exchange and returns its messages and records, so that
// the fuzzers start from valid inputs.
func fuzzSeeds(f *testing.F) (skdm, msg, senderRec, memberRec []byte) {
	g := newGroup(f, 1)
	d, err := g.sender.DistributionMessage(nil)
	if err != nil {
		f.Fatal(err)
	}
	encrypt(f, g.sender, "skipped")
	msg = encrypt(f, g.sender, "seed message")
	mustDecrypt(f, g.members[0], msg, "seed message")
	return d.Bytes(), msg, marshal(f, g.sender), marshal(f, g.members[0])
}

func FuzzParseMessage(f *testing.F) {
	_, msg, _, _ := fuzzSeeds(f)
	f.Add(msg)
	f.Add([]byte{versionByte})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Bytes(), b) {
			t.Fatal("a parsed message does not keep its bytes")
		}
	})
}

func FuzzParseDistributionMessage(f *testing.F) {
	skdm, _, _, _ := fuzzSeeds(f)
	f.Add(skdm)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDistributionMessage(b)
		if err != nil {
			return
		}
		// What parses can be processed, and the chain it gives encodes back to the
		// same fields.
		r := NewRecord(m.DistributionID())
		if err := r.Process(m); err != nil {
			t.Fatalf("process of a parsed message: %v", err)
		}
		re := newDistributionMessage(m.distributionID, m.chainID, m.iteration, &m.chainKey, m.signingKey)
		back, err := ParseDistributionMessage(re.Bytes())
		if err != nil || back.chainKey != m.chainKey || back.chainID != m.chainID || back.iteration != m.iteration {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	_, _, sender, member := fuzzSeeds(f)
	f.Add(sender)
	f.Add(member)
	f.Add([]byte{recordFormatV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		// A record that parses marshals and parses again to the same bytes.
		out := marshal(t, r)
		r2, err := ParseRecord(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(marshal(t, r2), out) {
			t.Fatal("marshal is not stable")
		}
	})
}

// FuzzDecrypt feeds arbitrary messages to a member's live record: nothing may panic,
// and a message that fails must leave the record as it was. With sign set, the input is
// the protobuf body of a message and the sender signs it, so that the fuzzer reaches past
// the signature check to iterations, skipped keys and padding.
func FuzzDecrypt(f *testing.F) {
	g := newGroup(f, 1)
	encrypt(f, g.sender, "skipped")
	mustDecrypt(f, g.members[0], encrypt(f, g.sender, "read"), "read")
	next := encrypt(f, g.sender, "next")
	f.Add(next, false)
	f.Add(next[1:len(next)-signatureSize], true)
	signer := g.sender.states[0].signing
	base := marshal(f, g.members[0])
	f.Fuzz(func(t *testing.T, b []byte, sign bool) {
		r, err := ParseRecord(base)
		if err != nil {
			t.Fatal(err)
		}
		if sign {
			body := append([]byte{versionByte}, b...)
			sig, err := signer.Sign(nil, body)
			if err != nil {
				t.Fatal(err)
			}
			b = append(body, sig...)
		}
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		if _, err := r.Decrypt(m); err != nil && !bytes.Equal(marshal(t, r), base) {
			t.Fatal("a failed decryption changed the record")
		}
	})
}
