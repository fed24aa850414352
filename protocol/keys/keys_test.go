package keys

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	mathrand "math/rand/v2"
	"os"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

type curveVectors struct {
	Agreement struct {
		AlicePrivate string `json:"alice_private"`
		AlicePublic  string `json:"alice_public"`
		BobPrivate   string `json:"bob_private"`
		BobPublic    string `json:"bob_public"`
		Shared       string `json:"shared"`
	} `json:"agreement"`
	Signature struct {
		Private   string `json:"private"`
		Public    string `json:"public"`
		Message   string `json:"message"`
		Signature string `json:"signature"`
	} `json:"signature"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadVectors(t *testing.T) curveVectors {
	t.Helper()
	data, err := os.ReadFile("testdata/libsignal-curve25519.json")
	if err != nil {
		t.Fatal(err)
	}
	var v curveVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAgreementVector(t *testing.T) {
	v := loadVectors(t).Agreement
	alice, err := NewPrivateKey(unhex(t, v.AlicePrivate))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewPrivateKey(unhex(t, v.BobPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if pub := alice.PublicKey(); !bytes.Equal(pub[:], unhex(t, v.AlicePublic)) {
		t.Fatalf("alice public = %x", pub[:])
	}
	s1, err := alice.Agree(bob.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s2, err := bob.Agree(alice.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1[:], unhex(t, v.Shared)) || s1 != s2 {
		t.Fatalf("shared secrets %x %x", s1, s2)
	}
}

func TestSmallOrderAgreementRejected(t *testing.T) {
	k, _ := GeneratePrivateKey(nil)
	if _, err := k.Agree(PublicKey{}); !errors.Is(err, ErrInvalidAgreement) {
		t.Fatalf("agreement with the zero point: %v", err)
	}
}

func TestSignatureVector(t *testing.T) {
	v := loadVectors(t).Signature
	priv, err := NewPrivateKey(unhex(t, v.Private))
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.PublicKey()
	if !bytes.Equal(pub[:], unhex(t, v.Public)) {
		t.Fatalf("public = %x", pub[:])
	}
	msg, sig := unhex(t, v.Message), unhex(t, v.Signature)
	if !pub.Verify(sig, msg) {
		t.Fatal("libsignal's signature does not verify")
	}
	for i := range sig {
		bad := bytes.Clone(sig)
		bad[i] ^= 1
		if pub.Verify(bad, msg) {
			t.Fatalf("signature with bit flipped in byte %d verifies", i)
		}
	}
}

func TestSignVerify(t *testing.T) {
	for i := 0; i < 50; i++ {
		k, err := GeneratePrivateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte{byte(i), 1, 2, 3}
		sig, err := k.Sign(nil, msg[:2], msg[2:])
		if err != nil {
			t.Fatal(err)
		}
		if !k.PublicKey().Verify(sig, msg) {
			t.Fatal("own signature does not verify")
		}
		if k.PublicKey().Verify(sig, append(msg, 0)) {
			t.Fatal("signature verifies over another message")
		}
		if k.PublicKey().Verify(sig[:63], msg) {
			t.Fatal("short signature verifies")
		}
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	k, _ := GenerateKeyPair(nil)
	b := k.Public.Bytes()
	if len(b) != PublicKeySize || b[0] != TypeDJB {
		t.Fatalf("encoding %x", b)
	}
	got, err := ParsePublicKey(b)
	if err != nil || got != k.Public {
		t.Fatalf("round trip: %v", err)
	}
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{nil, ErrBadKeyLength},
		{[]byte{0x06}, ErrBadKeyType},
		{b[:32], ErrBadKeyLength},
		{append(bytes.Clone(b), 0), ErrBadKeyLength},
	} {
		if _, err := ParsePublicKey(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("ParsePublicKey(%x) = %v, want %v", tc.in, err, tc.want)
		}
	}
	if !k.Public.IsCanonical() {
		t.Error("generated key is not canonical")
	}
	var big PublicKey
	for i := range big {
		big[i] = 0xff
	}
	big[31] = 0x7f
	if big.IsCanonical() {
		t.Error("u >= p accepted as canonical")
	}
}

func TestKEMRoundTrip(t *testing.T) {
	for _, typ := range []KEMType{KEMKyber1024, KEMMLKEM1024} {
		kp, err := GenerateKEMKeyPair(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ParseKEMPublicKey(kp.Public.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ss, ct, err := pub.Encapsulate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != KEMCiphertextSize || ct[0] != byte(typ) {
			t.Fatalf("%v ciphertext %d bytes, type %#x", typ, len(ct), ct[0])
		}
		priv, err := ParseKEMPrivateKey(kp.Private.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		got, err := priv.Decapsulate(ct)
		if err != nil || !bytes.Equal(got, ss) {
			t.Fatalf("%v: decapsulated %x, want %x (%v)", typ, got, ss, err)
		}
		other := KEMKyber1024
		if typ == KEMKyber1024 {
			other = KEMMLKEM1024
		}
		ct[0] = byte(other)
		if _, err := priv.Decapsulate(ct); !errors.Is(err, ErrWrongKEMType) {
			t.Fatalf("ciphertext of another type: %v", err)
		}
	}
}

func TestPreKeySignatures(t *testing.T) {
	id, _ := GenerateKeyPair(nil)
	spk, err := GenerateSignedPreKey(id.Private, 7, time.Unix(1, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Public.Verify(spk.Signature, spk.KeyPair.Public.Bytes()) {
		t.Fatal("signed prekey signature")
	}
	kpk, err := GenerateKyberPreKey(id.Private, 9, KEMKyber1024, true, time.Unix(1, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Public.Verify(kpk.Signature, kpk.KeyPair.Public.Bytes()) {
		t.Fatal("kyber prekey signature")
	}
	for i := 0; i < 100; i++ {
		r, err := GenerateRegistrationID(nil)
		if err != nil || r < 1 || r > MaxRegistrationID {
			t.Fatalf("registration id %d (%v)", r, err)
		}
	}
}

func TestSecretsRedacted(t *testing.T) {
	k, _ := GeneratePrivateKey(nil)
	kp, _ := GenerateKEMKeyPair(KEMKyber1024, nil)
	for _, s := range []string{k.String(), k.GoString(), k.LogValue().String(), kp.Private.String()} {
		if s != "[redacted]" {
			t.Fatalf("secret printed as %q", s)
		}
	}
}

// TestX25519MatchesStandardLibrary compares our X25519 with crypto/ecdh for random
// scalars and points, including u-coordinates with the top bit set and non-canonical
// ones, which RFC 7748 says to accept.
func TestX25519MatchesStandardLibrary(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		var sb, ub [32]byte
		for j := range sb {
			sb[j], ub[j] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		switch i % 3 {
		case 1:
			ub[31] |= 0x80
		case 2:
			ub = [32]byte{0xed - byte(i%5)}
			for j := 1; j < 31; j++ {
				ub[j] = 0xff
			}
			ub[31] = 0x7f // 2^255-19-k: p, p+1, ... non-canonical or small
		}
		k, err := NewPrivateKey(sb[:])
		if err != nil {
			t.Fatal(err)
		}
		std, err := ecdh.X25519().NewPrivateKey(k.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.PublicKey().Bytes()[1:], std.PublicKey().Bytes()) {
			t.Fatalf("public key of %x: %x, crypto/ecdh %x", sb, k.PublicKey(), std.PublicKey().Bytes())
		}
		peer, err := ecdh.X25519().NewPublicKey(ub[:])
		if err != nil {
			t.Fatal(err)
		}
		want, stdErr := std.ECDH(peer)
		got, err := k.Agree(PublicKey(ub))
		if (err != nil) != (stdErr != nil) {
			t.Fatalf("agreement with %x: error %v, crypto/ecdh %v", ub, err, stdErr)
		}
		if err == nil && !bytes.Equal(got[:], want) {
			t.Fatalf("agreement with %x: %x, crypto/ecdh %x", ub, got, want)
		}
	}
}

// TestX25519RFC7748 checks the iterated test vector of RFC 7748, section 5.2 (1,000
// iterations).
func TestX25519RFC7748(t *testing.T) {
	var k, u [32]byte
	k[0], u[0] = 9, 9
	for i := 0; i < 1000; i++ {
		var scalar, out [32]byte
		scalar = k
		scalar[0] &= 248
		scalar[31] &= 127
		scalar[31] |= 64
		x25519(&out, &scalar, &u)
		u, k = k, out
	}
	if got := hex.EncodeToString(k[:]); got != "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51" {
		t.Fatalf("after 1,000 iterations: %s", got)
	}
}

// TestIsCanonicalRejectsSmallOrder checks IsCanonical against points of small order and
// a generated key with a small-order component added.
func TestIsCanonicalRejectsSmallOrder(t *testing.T) {
	// u = 0 has order 2, u = 1 order 4; both are canonical encodings but not in the
	// prime-order subgroup.
	for _, u := range []byte{0, 1} {
		if (PublicKey{u}).IsCanonical() {
			t.Errorf("u = %d accepted", u)
		}
	}
	kp, _ := GenerateKeyPair(nil)
	if !kp.Public.IsCanonical() {
		t.Fatal("generated key rejected")
	}
	// Add a point of order 8 on the Edwards side and map back: the result is on the
	// curve but has a torsion component.
	y, _ := new(field.Element).SetBytes(kp.Public[:])
	var one, num, den field.Element
	one.One()
	num.Subtract(y, &one)
	den.Add(y, &one)
	ey := new(field.Element).Multiply(&num, den.Invert(&den))
	P, err := new(edwards25519.Point).SetBytes(ey.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	order8, _ := hex.DecodeString("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
	T, err := new(edwards25519.Point).SetBytes(order8)
	if err != nil {
		t.Fatal(err)
	}
	var mixed PublicKey
	copy(mixed[:], new(edwards25519.Point).Add(P, T).BytesMontgomery())
	if mixed.IsCanonical() {
		t.Fatal("key with a torsion component accepted")
	}
}
