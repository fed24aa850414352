package sealedsender

import (
	"bytes"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/internal/uuid"
	"github.com/doorless/doorless/protocol/keys"
)

// fuzzKey is the recipient key of the fuzz seeds made here: fixed, so that seeds stay
// meaningful across runs.
func fuzzKey(t testing.TB) *keys.PrivateKey {
	k, err := keys.NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// seeds are real encodings of each kind, to start the fuzzers from.
type seeds struct {
	server, sender, content, v1, received, sent [][]byte
}

// fuzzSeeds returns real messages: ours (sealed to fuzzKey) and libsignal's (from
// testdata/libsignal-sealed.json).
func fuzzSeeds(f *testing.F) seeds {
	var s seeds
	pki := newPKI(f, 3)
	alice := newParty(f, pki, testUUID, 2)
	c := &Content{Type: TypeSenderKey, Sender: alice.cert, Contents: []byte("seed"), Hint: HintResendable, GroupID: []byte("g")}
	sealed, err := Encrypt(nil, fuzzKey(f).PublicKey(), alice.id, c)
	if err != nil {
		f.Fatal(err)
	}
	other := newKey(f)
	sent, err := EncryptMulti(nil, []Recipient{
		{ServiceID: serviceIDOf(kindACI, [16]byte{1}), IdentityKey: fuzzKey(f).PublicKey(), Devices: []Device{{1, 5}, {2, 6}}},
		{ServiceID: serviceIDOf(kindPNI, [16]byte{2}), IdentityKey: other.PublicKey(), Devices: []Device{{3, 7}}},
		{ServiceID: serviceIDOf(kindACI, [16]byte{3})},
	}, alice.id, c)
	if err != nil {
		f.Fatal(err)
	}
	m, err := ParseSent(sent)
	if err != nil {
		f.Fatal(err)
	}
	s.server = append(s.server, pki.server.Bytes())
	s.sender = append(s.sender, alice.cert.Bytes())
	s.content = append(s.content, c.Bytes())
	s.v1 = append(s.v1, sealed)
	s.received = append(s.received, m.ForRecipient(0))
	s.sent = append(s.sent, sent)

	v := loadLibsignalVectors(f)
	for _, m := range v.V1 {
		s.v1 = append(s.v1, mustHex(f, m.Sealed))
		s.content = append(s.content, mustHex(f, m.USMC))
		if c, err := ParseContent(mustHex(f, m.USMC)); err == nil {
			s.sender = append(s.sender, c.Sender.Bytes())
			s.server = append(s.server, c.Sender.Signer().Bytes())
		}
	}
	for _, w := range v.V2 {
		s.sent = append(s.sent, mustHex(f, w.Sent))
		for _, r := range w.Recipients {
			s.received = append(s.received, mustHex(f, r.Received))
		}
	}
	return s
}

func FuzzParseServerCertificate(f *testing.F) {
	for _, b := range fuzzSeeds(f).server {
		f.Add(b)
	}
	root := newKey(f).PublicKey()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseServerCertificate(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Bytes(), b) {
			t.Fatal("a parsed certificate does not keep its bytes")
		}
		if c.Validate(root) == nil {
			t.Fatal("a fuzzed certificate validates under a fresh root")
		}
	})
}

func FuzzParseSenderCertificate(f *testing.F) {
	for _, b := range fuzzSeeds(f).sender {
		f.Add(b)
	}
	root := newKey(f).PublicKey()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseSenderCertificate(b)
		if err != nil {
			return
		}
		s := c.Sender()
		if s.DeviceID < 1 || s.DeviceID > MaxDeviceID {
			t.Fatalf("device id %d", s.DeviceID)
		}
		if u, ok := uuid.Parse(s.UUID); !ok || uuid.Format(u) != s.UUID {
			t.Fatalf("sender %q is not a canonical UUID", s.UUID)
		}
		if !bytes.Equal(c.Bytes(), b) || c.Signer() == nil {
			t.Fatal("a parsed certificate does not keep its bytes or signer")
		}
		c.Expires()
		if c.Validate([]keys.PublicKey{root}, time.Unix(0, 0)) == nil {
			t.Fatal("a fuzzed certificate validates under a fresh root")
		}
	})
}

func FuzzParseContent(f *testing.F) {
	for _, b := range fuzzSeeds(f).content {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseContent(b)
		if err != nil {
			return
		}
		// What parses encodes to bytes that parse to the same content.
		again, err := ParseContent(c.Bytes())
		if err != nil {
			t.Fatalf("re-encoded content does not parse: %v", err)
		}
		if again.Type != c.Type || again.Hint != c.Hint || !bytes.Equal(again.Contents, c.Contents) ||
			!bytes.Equal(again.GroupID, c.GroupID) || !bytes.Equal(again.Sender.Bytes(), c.Sender.Bytes()) {
			t.Fatal("re-encoded content differs")
		}
		if !bytes.Equal(again.Bytes(), c.Bytes()) {
			t.Fatal("encoding is not stable")
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	s := fuzzSeeds(f)
	for _, b := range append(s.v1, s.received...) {
		f.Add(b)
	}
	v := loadLibsignalVectors(f)
	local := []*keys.PrivateKey{fuzzKey(f), v.key(f, 0), v.key(f, 1)}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range local {
			c, err := Decrypt(b, k)
			if err != nil {
				continue
			}
			if c.Sender == nil {
				t.Fatal("decrypted content without a sender")
			}
		}
	})
}

func FuzzParseSent(f *testing.F) {
	for _, b := range fuzzSeeds(f).sent {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSent(b)
		if err != nil {
			return
		}
		seen := map[ServiceID]bool{}
		for i, r := range m.Recipients {
			if len(r.Devices) == 0 || seen[r.ServiceID] {
				t.Fatalf("recipient %d: %d devices, seen before %t", i, len(r.Devices), seen[r.ServiceID])
			}
			seen[r.ServiceID] = true
			for _, d := range r.Devices {
				if d.ID < 1 || d.ID > MaxDeviceID || d.RegistrationID > registrationIDMask {
					t.Fatalf("device %+v", d)
				}
			}
			got := m.ForRecipient(i)
			if got[0] != v2ReceivedVersion || len(got) != 1+recipientKeySize+len(b)-m.shared {
				t.Fatalf("ReceivedMessage of %d bytes", len(got))
			}
		}
		for _, e := range m.Excluded {
			if seen[e] {
				t.Fatalf("%v both excluded and a recipient", e)
			}
			seen[e] = true
		}
	})
}
