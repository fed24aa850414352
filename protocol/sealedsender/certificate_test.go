package sealedsender

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/uuid"
	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// testPKI is a trust root, a server certificate it signed and the server's key.
type testPKI struct {
	root      *keys.PrivateKey
	server    *ServerCertificate
	serverKey *keys.PrivateKey
}

func newKey(t testing.TB) *keys.PrivateKey {
	t.Helper()
	k, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPKI(t testing.TB, keyID uint32) *testPKI {
	t.Helper()
	p := &testPKI{root: newKey(t), serverKey: newKey(t)}
	var err error
	if p.server, err = NewServerCertificate(keyID, p.serverKey.PublicKey(), p.root, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) roots() []keys.PublicKey { return []keys.PublicKey{p.root.PublicKey()} }

func (p *testPKI) issue(t testing.TB, s Sender, expires time.Time) *SenderCertificate {
	t.Helper()
	c, err := NewSenderCertificate(s, expires, p.server, p.serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testUUID = "9d0652a3-dcc3-4d11-975f-74d61598733f"

var testExpiry = time.UnixMilli(1_800_000_000_123)

func TestServerCertificateRoundTrip(t *testing.T) {
	p := newPKI(t, 7)
	c, err := ParseServerCertificate(p.server.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyID() != 7 || !c.Key().Equal(p.serverKey.PublicKey()) || !bytes.Equal(c.Bytes(), p.server.Bytes()) {
		t.Fatalf("parsed certificate differs: id %d", c.KeyID())
	}
	if err := c.Validate(p.root.PublicKey()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if err := c.Validate(newKey(t).PublicKey()); !errors.Is(err, ErrUntrustedCertificate) {
		t.Fatalf("validate with another root: %v", err)
	}
	forged := bytes.Clone(c.Bytes())
	forged[len(forged)-5] ^= 1 // in the signature
	f, err := ParseServerCertificate(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(p.root.PublicKey()); !errors.Is(err, ErrUntrustedCertificate) {
		t.Fatalf("forged signature: %v", err)
	}
	revoked := newPKI(t, 0xDEADC357)
	if err := revoked.server.Validate(revoked.root.PublicKey()); !errors.Is(err, ErrRevokedCertificate) {
		t.Fatalf("revoked id: %v", err)
	}
}

// TestLibsignalServerCertificates reads the server certificates built into libsignal:
// they parse, validate under their roots and no other, and our encoder writes the same
// signed bytes for the same key id and key.
func TestLibsignalServerCertificates(t *testing.T) {
	raw, err := os.ReadFile("testdata/libsignal-server-certificates.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Certificates []struct {
			KeyID       uint32 `json:"keyId"`
			TrustRoot   string `json:"trustRoot"`
			Certificate string `json:"certificate"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Certificates) != 3 {
		t.Fatalf("%d certificates in testdata", len(doc.Certificates))
	}
	var roots []keys.PublicKey
	for _, v := range doc.Certificates {
		root, err := keys.ParsePublicKey(mustHex(t, v.TrustRoot))
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
	}
	for i, v := range doc.Certificates {
		c, err := ParseServerCertificate(mustHex(t, v.Certificate))
		if err != nil {
			t.Fatalf("certificate %d: %v", v.KeyID, err)
		}
		if c.KeyID() != v.KeyID {
			t.Errorf("key id %d, want %d", c.KeyID(), v.KeyID)
		}
		for j, root := range roots {
			err := c.Validate(root)
			if i == j && err != nil {
				t.Errorf("certificate %d under its root: %v", v.KeyID, err)
			}
			if i != j && !errors.Is(err, ErrUntrustedCertificate) {
				t.Errorf("certificate %d under root %d: %v", v.KeyID, j, err)
			}
		}
		// Same id and key: the signed bytes are libsignal's, byte for byte.
		ours, err := NewServerCertificate(c.KeyID(), c.Key(), newKey(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours.certificate, c.certificate) {
			t.Errorf("certificate %d: we encode %x, libsignal %x", v.KeyID, ours.certificate, c.certificate)
		}
	}
	// The test certificate: the root is the public key of an all-zero private key and
	// the certificate's key that of an all-0xFF one.
	zero, _ := keys.NewPrivateKey(make([]byte, 32))
	ff, _ := keys.NewPrivateKey(bytes.Repeat([]byte{0xff}, 32))
	test, _ := ParseServerCertificate(mustHex(t, doc.Certificates[2].Certificate))
	if !roots[2].Equal(zero.PublicKey()) || !test.Key().Equal(ff.PublicKey()) {
		t.Error("the test certificate's keys are not those libsignal documents")
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSenderCertificateRoundTrip(t *testing.T) {
	p := newPKI(t, 1)
	id := newKey(t).PublicKey()
	s := Sender{UUID: strings.ToUpper(testUUID), DeviceID: 127, IdentityKey: id}
	c := p.issue(t, s, testExpiry)
	parsed, err := ParseSenderCertificate(c.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := Sender{UUID: testUUID, DeviceID: 127, IdentityKey: id}
	for _, got := range []*SenderCertificate{c, parsed} {
		if got.Sender() != want {
			t.Errorf("sender %+v, want %+v", got.Sender(), want)
		}
		if !got.Expires().Equal(testExpiry) || got.E164() != "" {
			t.Errorf("expires %v, e164 %q", got.Expires(), got.E164())
		}
		if !bytes.Equal(got.Signer().Bytes(), p.server.Bytes()) {
			t.Error("signer differs")
		}
		if err := got.Validate(p.roots(), testExpiry); err != nil {
			t.Errorf("validate at expiry: %v", err)
		}
	}
	if !bytes.Equal(parsed.Bytes(), c.Bytes()) {
		t.Error("parsed bytes differ")
	}
}

func TestSenderCertificateValidate(t *testing.T) {
	p := newPKI(t, 1)
	c := p.issue(t, Sender{UUID: testUUID, DeviceID: 1, IdentityKey: newKey(t).PublicKey()}, testExpiry)
	other := newKey(t).PublicKey()

	if err := c.Validate([]keys.PublicKey{other, other, p.root.PublicKey()}, testExpiry.Add(-time.Hour)); err != nil {
		t.Errorf("right root last: %v", err)
	}
	if err := c.Validate(p.roots(), time.Unix(0, 0)); err != nil {
		t.Errorf("at the epoch: %v", err)
	}
	if err := c.Validate(p.roots(), testExpiry.Add(time.Millisecond)); !errors.Is(err, ErrExpiredCertificate) {
		t.Errorf("a millisecond late: %v", err)
	}
	if err := c.Validate([]keys.PublicKey{other}, testExpiry); !errors.Is(err, ErrUntrustedCertificate) {
		t.Errorf("wrong root: %v", err)
	}
	if err := c.Validate(nil, testExpiry); !errors.Is(err, ErrUntrustedCertificate) {
		t.Errorf("no roots: %v", err)
	}

	// Signed by a server key other than the certificate's.
	forged := bytes.Clone(c.Bytes())
	forged[len(forged)-3] ^= 0x10
	f, err := ParseSenderCertificate(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(p.roots(), testExpiry); !errors.Is(err, ErrUntrustedCertificate) {
		t.Errorf("forged signature: %v", err)
	}
	// Signed by a key other than the embedded server certificate's.
	rogue := &testPKI{root: p.root, server: p.server, serverKey: newKey(t)}
	rc, err := ParseSenderCertificate(rogue.sign(t, c.certificate))
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Validate(p.roots(), testExpiry); !errors.Is(err, ErrUntrustedCertificate) {
		t.Errorf("signed by another key: %v", err)
	}

	// A server certificate with a revoked id is refused even under the right root.
	rp := newPKI(t, 0xDEADC357)
	revoked := rp.issue(t, c.Sender(), testExpiry)
	if err := revoked.Validate(rp.roots(), testExpiry); !errors.Is(err, ErrRevokedCertificate) {
		t.Errorf("revoked signer: %v", err)
	}
}

func TestNewSenderCertificateRefuses(t *testing.T) {
	p := newPKI(t, 1)
	good := Sender{UUID: testUUID, DeviceID: 1, IdentityKey: newKey(t).PublicKey()}
	for name, tc := range map[string]struct {
		s       Sender
		expires time.Time
		signer  *ServerCertificate
		key     *keys.PrivateKey
	}{
		"not a UUID":     {Sender{UUID: "alice", DeviceID: 1}, testExpiry, p.server, p.serverKey},
		"device 0":       {Sender{UUID: testUUID, DeviceID: 0}, testExpiry, p.server, p.serverKey},
		"device 128":     {Sender{UUID: testUUID, DeviceID: 128}, testExpiry, p.server, p.serverKey},
		"before 1970":    {good, time.Unix(-1, 0), p.server, p.serverKey},
		"no signer":      {good, testExpiry, nil, p.serverKey},
		"no key":         {good, testExpiry, p.server, nil},
		"another server": {good, testExpiry, p.server, newKey(t)},
	} {
		if _, err := NewSenderCertificate(tc.s, tc.expires, tc.signer, tc.key, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewServerCertificate(1, good.IdentityKey, nil, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("server certificate without root: %v", err)
	}
}

// certFields is a hand-built SenderCertificate.Certificate, for the forms our encoder
// never writes.
type certFields []byte

func (f certFields) varint(num protowire.Number, v uint64) certFields {
	return wire.AppendVarintField(f, num, v)
}

func (f certFields) bytes(num protowire.Number, v []byte) certFields {
	return wire.AppendBytesField(f, num, v)
}

func (f certFields) fixed64(num protowire.Number, v uint64) certFields {
	return protowire.AppendFixed64(protowire.AppendTag(f, num, protowire.Fixed64Type), v)
}

// sign wraps the fields in a signed SenderCertificate.
func (p *testPKI) sign(t testing.TB, f certFields) []byte {
	t.Helper()
	sig, err := p.serverKey.Sign(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	return signedMessage(f, sig)
}

func TestParseSenderCertificateForms(t *testing.T) {
	p := newPKI(t, 1)
	id := newKey(t).PublicKey()
	raw, _ := uuid.Parse(testUUID)
	base := func() certFields {
		return certFields(nil).varint(senderCertDevice, 3).fixed64(senderCertExpires, uint64(testExpiry.UnixMilli())).
			bytes(senderCertIdentityKey, id.Bytes()).bytes(senderCertSigner, p.server.Bytes())
	}

	// Accepted forms.
	for name, f := range map[string]certFields{
		"uuid bytes":           base().bytes(senderCertUUIDBytes, raw[:]),
		"uuid string":          base().bytes(senderCertUUIDString, []byte(testUUID)),
		"upper-case uuid":      base().bytes(senderCertUUIDString, []byte(strings.ToUpper(testUUID))),
		"last oneof wins":      base().bytes(senderCertUUIDString, []byte("not a uuid")).bytes(senderCertUUIDBytes, raw[:]),
		"with e164":            base().bytes(senderCertE164, []byte("+14155550100")).bytes(senderCertUUIDString, []byte(testUUID)),
		"unknown field":        base().varint(99, 5).bytes(senderCertUUIDString, []byte(testUUID)),
		"signer id then cert":  base().varint(senderCertSignerID, 3).bytes(senderCertSigner, p.server.Bytes()).bytes(senderCertUUIDString, []byte(testUUID)),
		"last device id wins":  base().varint(senderCertDevice, 200).varint(senderCertDevice, 3).bytes(senderCertUUIDString, []byte(testUUID)),
		"fields in any order":  certFields(nil).bytes(senderCertUUIDString, []byte(testUUID)).bytes(senderCertSigner, p.server.Bytes()).bytes(senderCertIdentityKey, id.Bytes()).fixed64(senderCertExpires, uint64(testExpiry.UnixMilli())).varint(senderCertDevice, 3),
		"uuid bytes then text": base().bytes(senderCertUUIDBytes, make([]byte, 3)).bytes(senderCertUUIDString, []byte(testUUID)),
	} {
		c, err := ParseSenderCertificate(p.sign(t, f))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := Sender{UUID: testUUID, DeviceID: 3, IdentityKey: id}
		if name == "with e164" {
			want.Name = "+14155550100"
		}
		if c.Sender() != want {
			t.Errorf("%s: sender %+v", name, c.Sender())
		}
		if err := c.Validate(p.roots(), testExpiry); err != nil {
			t.Errorf("%s: validate: %v", name, err)
		}
		if name == "with e164" && c.E164() != "+14155550100" {
			t.Errorf("e164 %q", c.E164())
		}
	}

	// Refused forms.
	withUUID := func(f certFields) certFields { return f.bytes(senderCertUUIDString, []byte(testUUID)) }
	refused := map[string]struct {
		f    certFields
		want error
	}{
		"signer by id": {withUUID(base()).varint(senderCertSignerID, 3), ErrSignerByID},
		"no uuid":      {base(), ErrInvalidCertificate},
		"not a uuid":   {base().bytes(senderCertUUIDString, []byte("alice")), ErrInvalidCertificate},
		"short uuid":   {base().bytes(senderCertUUIDBytes, raw[:15]), ErrInvalidCertificate},
		"bad utf-8":    {withUUID(base()).bytes(senderCertE164, []byte{0xff}), ErrInvalidCertificate},
		"device 0":     {withUUID(base()).varint(senderCertDevice, 0), ErrInvalidCertificate},
		"device 128":   {withUUID(base()).varint(senderCertDevice, 128), ErrInvalidCertificate},
		"no device": {withUUID(certFields(nil).fixed64(senderCertExpires, 1).bytes(senderCertIdentityKey, id.Bytes()).
			bytes(senderCertSigner, p.server.Bytes())), ErrInvalidCertificate},
		"no expiry": {withUUID(certFields(nil).varint(senderCertDevice, 1).bytes(senderCertIdentityKey, id.Bytes()).
			bytes(senderCertSigner, p.server.Bytes())), ErrInvalidCertificate},
		"no key": {withUUID(certFields(nil).varint(senderCertDevice, 1).fixed64(senderCertExpires, 1).
			bytes(senderCertSigner, p.server.Bytes())), ErrInvalidCertificate},
		"no signer": {withUUID(certFields(nil).varint(senderCertDevice, 1).fixed64(senderCertExpires, 1).
			bytes(senderCertIdentityKey, id.Bytes())), ErrInvalidCertificate},
		"expiry as varint":  {withUUID(base()).varint(senderCertExpires, 1), ErrInvalidCertificate},
		"device as bytes":   {withUUID(base()).bytes(senderCertDevice, []byte{1}), ErrInvalidCertificate},
		"short key":         {withUUID(base()).bytes(senderCertIdentityKey, id.Bytes()[:32]), ErrInvalidCertificate},
		"bad signer":        {withUUID(base()).bytes(senderCertSigner, []byte{1, 2, 3}), ErrInvalidCertificate},
		"signer key absent": {withUUID(base()).bytes(senderCertSigner, signedMessage(certFields(nil).varint(serverCertID, 1), []byte{1})), ErrInvalidCertificate},
	}
	for name, tc := range refused {
		if _, err := ParseSenderCertificate(p.sign(t, tc.f)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"no signature":   wire.AppendBytesField(nil, certCertificate, withUUID(base())),
		"no certificate": wire.AppendBytesField(nil, certSignature, make([]byte, 64)),
		"truncated":      p.sign(t, withUUID(base()))[:40],
		"group":          {0x0b},
	} {
		if _, err := ParseSenderCertificate(b); !errors.Is(err, ErrInvalidCertificate) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := ParseServerCertificate(b); !errors.Is(err, ErrInvalidCertificate) {
			t.Errorf("server certificate, %s: %v", name, err)
		}
	}
}

// TestSenderCertificateLayout checks our encoding field by field: libsignal's order
// (fields by number, the uuidString member of its oneof last) and the values.
func TestSenderCertificateLayout(t *testing.T) {
	p := newPKI(t, 9)
	id := newKey(t).PublicKey()
	c := p.issue(t, Sender{UUID: testUUID, DeviceID: 5, IdentityKey: id}, testExpiry)
	want := certFields(nil).varint(senderCertDevice, 5).fixed64(senderCertExpires, uint64(testExpiry.UnixMilli())).
		bytes(senderCertIdentityKey, id.Bytes()).bytes(senderCertSigner, p.server.Bytes()).
		bytes(senderCertUUIDString, []byte(testUUID))
	if !bytes.Equal(c.certificate, want) {
		t.Fatalf("certificate\n got %x\nwant %x", c.certificate, want)
	}
	if !bytes.Equal(c.Bytes(), signedMessage(want, c.signature)) || len(c.signature) != keys.SignatureSize {
		t.Fatal("outer message differs")
	}
}

func TestCertificateParseKeepsNoAlias(t *testing.T) {
	p := newPKI(t, 1)
	b := bytes.Clone(p.issue(t, Sender{UUID: testUUID, DeviceID: 1, IdentityKey: newKey(t).PublicKey()}, testExpiry).Bytes())
	c, err := ParseSenderCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if err := c.Validate(p.roots(), testExpiry); err != nil {
		t.Fatalf("a parsed certificate depends on the caller's buffer: %v", err)
	}
}

// TestSenderCertificateName: a Doorless username travels in libsignal's phone
// number field, both ways.
func TestSenderCertificateName(t *testing.T) {
	p := newPKI(t, 1)
	id := newKey(t).PublicKey()
	s := Sender{UUID: testUUID, DeviceID: 2, IdentityKey: id, Name: "alice_1"}
	c := p.issue(t, s, testExpiry)
	parsed, err := ParseSenderCertificate(c.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []*SenderCertificate{c, parsed} {
		if got.Sender() != s || got.E164() != "alice_1" {
			t.Errorf("sender %+v, e164 %q", got.Sender(), got.E164())
		}
	}
	for _, name := range []string{strings.Repeat("a", MaxNameSize+1), "\xff"} {
		s.Name = name
		if _, err := NewSenderCertificate(s, testExpiry, p.server, p.serverKey, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("name %q: %v", name, err)
		}
	}
}
