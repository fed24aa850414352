package sealedsender

import (
	"bytes"
	"errors"
	"testing"

	"github.com/doorless/doorless/protocol/keys"
)

// party is an account with one device, an identity key and a sender certificate.
type party struct {
	uuid string
	id   *keys.PrivateKey
	cert *SenderCertificate
}

func newParty(t testing.TB, p *testPKI, uuid string, device uint32) *party {
	t.Helper()
	id := newKey(t)
	return &party{uuid: uuid, id: id, cert: p.issue(t, Sender{UUID: uuid, DeviceID: device, IdentityKey: id.PublicKey()}, testExpiry)}
}

func (p *party) content(typ MessageType, contents []byte) *Content {
	return &Content{Type: typ, Sender: p.cert, Contents: contents}
}

func sameContent(t testing.TB, got, want *Content) {
	t.Helper()
	if got.Type != want.Type || got.Hint != want.Hint || !bytes.Equal(got.Contents, want.Contents) ||
		!bytes.Equal(got.GroupID, want.GroupID) || !bytes.Equal(got.Sender.Bytes(), want.Sender.Bytes()) {
		t.Fatalf("content differs:\n got %+v\nwant %+v", got, want)
	}
}

func TestContentRoundTrip(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 2)
	for _, typ := range []MessageType{TypeWhisper, TypePreKey, TypeSenderKey, TypePlaintext} {
		for _, hint := range []ContentHint{HintDefault, HintResendable, HintImplicit, 5, 0xffffffff} {
			for _, group := range [][]byte{nil, []byte("group id")} {
				c := &Content{Type: typ, Sender: alice.cert, Contents: []byte("inner"), Hint: hint, GroupID: group}
				got, err := ParseContent(c.Bytes())
				if err != nil {
					t.Fatalf("%v %d: %v", typ, hint, err)
				}
				sameContent(t, got, c)
			}
		}
	}
}

// TestContentLayout checks the encoding against libsignal's: fields by number, the
// prekey type as 1 on the wire, no hint field for the default hint and no group id
// when empty, the contents even when empty.
func TestContentLayout(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 2)
	c := &Content{Type: TypePreKey, Sender: alice.cert}
	want := certFields(nil).varint(contentType, 1).bytes(contentSenderCert, alice.cert.Bytes()).bytes(contentContents, nil)
	if !bytes.Equal(c.Bytes(), want) {
		t.Fatalf("got %x\nwant %x", c.Bytes(), want)
	}
	c = &Content{Type: TypeSenderKey, Sender: alice.cert, Contents: []byte{1}, Hint: HintImplicit, GroupID: []byte{9}}
	want = certFields(nil).varint(contentType, 7).bytes(contentSenderCert, alice.cert.Bytes()).bytes(contentContents, []byte{1}).
		varint(contentContentHint, 2).bytes(contentGroupID, []byte{9})
	if !bytes.Equal(c.Bytes(), want) {
		t.Fatalf("got %x\nwant %x", c.Bytes(), want)
	}
}

func TestParseContentRefuses(t *testing.T) {
	pki := newPKI(t, 1)
	cert := newParty(t, pki, testUUID, 2).cert.Bytes()
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":          {nil, ErrMalformed},
		"no type":        {certFields(nil).bytes(contentSenderCert, cert).bytes(contentContents, nil), ErrMalformed},
		"no certificate": {certFields(nil).varint(contentType, 2).bytes(contentContents, nil), ErrMalformed},
		"no contents":    {certFields(nil).varint(contentType, 2).bytes(contentSenderCert, cert), ErrMalformed},
		"type 3":         {certFields(nil).varint(contentType, 3).bytes(contentSenderCert, cert).bytes(contentContents, nil), ErrMalformed},
		"type 0":         {certFields(nil).varint(contentType, 0).bytes(contentSenderCert, cert).bytes(contentContents, nil), ErrMalformed},
		"type as bytes":  {certFields(nil).bytes(contentType, []byte{2}).bytes(contentSenderCert, cert).bytes(contentContents, nil), ErrMalformed},
		"hint as bytes": {certFields(nil).varint(contentType, 2).bytes(contentSenderCert, cert).bytes(contentContents, nil).
			bytes(contentContentHint, nil), ErrMalformed},
		"truncated":       {certFields(nil).varint(contentType, 2).bytes(contentSenderCert, cert)[:20], ErrMalformed},
		"bad certificate": {certFields(nil).varint(contentType, 2).bytes(contentSenderCert, cert[:30]).bytes(contentContents, nil), ErrInvalidCertificate},
	} {
		if _, err := ParseContent(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// An unknown field is skipped, and a negative hint keeps its low 32 bits.
	b := certFields(nil).varint(contentType, 8).bytes(contentSenderCert, cert).bytes(contentContents, []byte("x")).
		varint(42, 1).varint(contentContentHint, ^uint64(0)) // an int32 -1, as protobuf writes it
	c, err := ParseContent(b)
	if err != nil || c.Type != TypePlaintext || c.Hint != 0xffffffff {
		t.Fatalf("%+v, %v", c, err)
	}
}

func TestServiceID(t *testing.T) {
	aci, err := NewACI(upperCase(testUUID))
	if err != nil {
		t.Fatal(err)
	}
	if !aci.IsACI() || aci.UUID() != testUUID || aci.String() != testUUID || aci[0] != 0 {
		t.Fatalf("ACI %v", aci)
	}
	pni, err := ParseServiceID("PNI:" + testUUID)
	if err != nil || pni.IsACI() || pni.String() != "PNI:"+testUUID || pni.UUID() != testUUID || pni[0] != 1 {
		t.Fatalf("PNI %v, %v", pni, err)
	}
	if back, err := ParseServiceID(aci.String()); err != nil || back != aci {
		t.Fatalf("ACI string round trip: %v", err)
	}
	for _, bad := range []string{"", "PNI:", "ACI:" + testUUID, testUUID[:35], testUUID + "0", "PNI:" + testUUID[1:] + "g"} {
		if _, err := ParseServiceID(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := NewACI("PNI:" + testUUID); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewACI of a PNI string: %v", err)
	}
}

func upperCase(s string) string { return string(bytes.ToUpper([]byte(s))) }
