package vrf

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mathrand "math/rand/v2"
	"os"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

// vector is one example of RFC 9381 appendix B.3 (testdata/README.md).
type vector struct {
	Example int    `json:"example"`
	SK      string `json:"sk"`
	PK      string `json:"pk"`
	Alpha   string `json:"alpha"`
	X       string `json:"x"`
	Ctr     int    `json:"ctr"`
	H       string `json:"h"`
	KString string `json:"k_string"`
	K       string `json:"k"`
	U       string `json:"u"`
	V       string `json:"v"`
	Pi      string `json:"pi"`
	Beta    string `json:"beta"`
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	b, err := os.ReadFile("testdata/rfc9381-edwards25519-sha512-tai.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		tb.Fatal(err)
	}
	if len(vs) != 3 {
		tb.Fatalf("want 3 vectors, got %d", len(vs))
	}
	return vs
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(fmt.Sprintf("example%d", v.Example), func(t *testing.T) {
			sk, err := NewKeyFromSeed(unhex(t, v.SK))
			if err != nil {
				t.Fatal(err)
			}
			alpha := unhex(t, v.Alpha)
			if got := hex.EncodeToString(sk.Public().Bytes()); got != v.PK {
				t.Fatalf("public key %s, want %s", got, v.PK)
			}

			// The intermediate values, step by step.
			// The RFC prints x clamped but not reduced mod q.
			x, err := edwards25519.NewScalar().SetBytesWithClamping(unhex(t, v.X))
			if err != nil {
				t.Fatal(err)
			}
			if sk.x.Equal(x) != 1 {
				t.Errorf("x %x, want %s mod q", sk.x.Bytes(), v.X)
			}
			h, ctr := encodeToCurve(unhex(t, v.PK), alpha)
			if got := hex.EncodeToString(h.Bytes()); got != v.H || ctr != v.Ctr {
				t.Errorf("H %s at ctr %d, want %s at %d", got, ctr, v.H, v.Ctr)
			}
			kString, err := edwards25519.NewScalar().SetUniformBytes(unhex(t, v.KString))
			if err != nil {
				t.Fatal(err)
			}
			k := sk.nonce(h.Bytes())
			if got := hex.EncodeToString(k.Bytes()); got != v.K || k.Equal(kString) != 1 {
				t.Errorf("k %s, want %s", got, v.K)
			}
			if got := hex.EncodeToString(new(edwards25519.Point).ScalarBaseMult(k).Bytes()); got != v.U {
				t.Errorf("U %s, want %s", got, v.U)
			}
			if got := hex.EncodeToString(new(edwards25519.Point).ScalarMult(k, h).Bytes()); got != v.V {
				t.Errorf("V %s, want %s", got, v.V)
			}

			// The public functions.
			beta, pi := sk.Prove(alpha)
			if got := hex.EncodeToString(pi[:]); got != v.Pi {
				t.Errorf("pi %s, want %s", got, v.Pi)
			}
			if got := hex.EncodeToString(beta[:]); got != v.Beta {
				t.Errorf("beta %s, want %s", got, v.Beta)
			}
			if got := sk.Hash(alpha); hex.EncodeToString(got[:]) != v.Beta {
				t.Errorf("Hash %x, want %s", got, v.Beta)
			}
			pk, err := ParsePublicKey(unhex(t, v.PK))
			if err != nil {
				t.Fatal(err)
			}
			got, err := pk.Verify(alpha, unhex(t, v.Pi))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if hex.EncodeToString(got[:]) != v.Beta {
				t.Errorf("Verify's beta %x, want %s", got, v.Beta)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	rng := mathrand.NewChaCha8([32]byte{1})
	for i := range 20 {
		sk, err := GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		again, err := NewKeyFromSeed(sk.Seed())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Public().Bytes(), sk.Public().Bytes()) {
			t.Fatal("the seed does not give back the key")
		}
		pk, err := ParsePublicKey(sk.Public().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		alpha := make([]byte, i*7)
		rng.Read(alpha)
		beta, pi := sk.Prove(alpha)
		got, err := pk.Verify(alpha, pi[:])
		if err != nil {
			t.Fatalf("Verify of a fresh proof: %v", err)
		}
		if got != beta || sk.Hash(alpha) != beta {
			t.Fatal("Prove, Hash and Verify disagree on beta")
		}
		// Deterministic: the same input gives the same proof.
		if beta2, pi2 := sk.Prove(alpha); beta2 != beta || pi2 != pi {
			t.Fatal("Prove is not deterministic")
		}
		// Another input gives another output.
		if other := sk.Hash(append(alpha, 0)); other == beta {
			t.Fatal("two inputs share an output")
		}
	}
}

func TestKeys(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := NewKeyFromSeed(make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("seed of %d bytes: %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := GenerateKey(strings.NewReader("too short")); err == nil {
		t.Error("GenerateKey with a short reader succeeded")
	}
	a, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if !bytes.Equal(a.Seed(), b.Seed()) || !bytes.Equal(a.Public().Bytes(), b.Public().Bytes()) {
		t.Error("GenerateKey does not use its reader's bytes as the seed")
	}
	if c, err := GenerateKey(nil); err != nil || bytes.Equal(c.Seed(), a.Seed()) {
		t.Errorf("GenerateKey(nil): %v", err)
	}
	// Seed returns a copy.
	s := a.Seed()
	s[0] ^= 1
	if !bytes.Equal(a.Seed(), b.Seed()) {
		t.Error("Seed exposes the key's own buffer")
	}
	// Printing a key shows no part of it.
	seedHex := hex.EncodeToString(a.Seed())
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "k", a)
	for _, out := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %s", a, a, a), logged.String()} {
		if strings.Contains(out, seedHex) || !strings.Contains(out, "redacted") {
			t.Errorf("printed key: %q", out)
		}
	}
	// The zero public key verifies nothing.
	var zero PublicKey
	if _, err := zero.Verify(nil, make([]byte, ProofSize)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero key: %v, want ErrInvalidKey", err)
	}
	if zero.Bytes() != nil {
		t.Error("the zero key has an encoding")
	}
}

// fieldP is the base field's prime, 2^255 - 19.
var fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// yEncoding is the little-endian 32-byte encoding of y with the sign bit
// of x set as given.
func yEncoding(y *big.Int, sign bool) []byte {
	b := make([]byte, 32)
	y.FillBytes(b)
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	if sign {
		b[31] |= 0x80
	}
	return b
}

// smallOrderPoints returns the curve's eight points of order 1, 2, 4 and 8.
func smallOrderPoints(t testing.TB) []*edwards25519.Point {
	t.Helper()
	// bad_y2 of RFC 9381 section 5.4.5: the y of two points of order 8.
	badY2, _ := new(big.Int).SetString("2707385501144840649318225287225658788936804267575313519463743609750303402022", 10)
	t8, err := new(edwards25519.Point).SetBytes(yEncoding(badY2, false))
	if err != nil {
		t.Fatal(err)
	}
	points := []*edwards25519.Point{edwards25519.NewIdentityPoint()}
	for i := 1; i < 8; i++ {
		points = append(points, new(edwards25519.Point).Add(points[i-1], t8))
	}
	if new(edwards25519.Point).Add(points[7], t8).Equal(edwards25519.NewIdentityPoint()) != 1 {
		t.Fatal("bad_y2 is not of order 8")
	}
	if points[4].Equal(edwards25519.NewIdentityPoint()) == 1 {
		t.Fatal("bad_y2 is of order 4 or less")
	}
	return points[:8]
}

// badKeyEncodings are the encodings that must not parse as a key: the
// small-order points (canonical and not: RFC 9381 section 5.4.5's bad_pk
// list with both sign bits) and non-canonical encodings of good points.
func badKeyEncodings(t testing.TB) [][]byte {
	t.Helper()
	var bad [][]byte
	for _, p := range smallOrderPoints(t) {
		bad = append(bad, p.Bytes())
	}
	badY2, _ := new(big.Int).SetString("2707385501144840649318225287225658788936804267575313519463743609750303402022", 10)
	one := big.NewInt(1)
	for _, y := range []*big.Int{
		big.NewInt(0), one, badY2, new(big.Int).Sub(fieldP, badY2),
		new(big.Int).Sub(fieldP, one), fieldP, new(big.Int).Add(fieldP, one),
	} {
		bad = append(bad, yEncoding(y, false), yEncoding(y, true))
	}
	// y >= p: p+y for every small y that is a point's y is that point's
	// non-canonical encoding, which RFC 8032 refuses to decode.
	for y := int64(2); y < 19; y++ {
		for _, sign := range []bool{false, true} {
			if _, err := new(edwards25519.Point).SetBytes(yEncoding(big.NewInt(y), sign)); err != nil {
				continue
			}
			bad = append(bad, yEncoding(new(big.Int).Add(fieldP, big.NewInt(y)), sign))
		}
	}
	return bad
}

func TestParsePublicKeyRejects(t *testing.T) {
	bad := badKeyEncodings(t)
	if len(bad) < 8+14+2 {
		t.Fatalf("only %d bad encodings", len(bad))
	}
	for _, b := range bad {
		if _, err := ParsePublicKey(b); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParsePublicKey(%x): %v, want ErrInvalidKey", b, err)
		}
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := ParsePublicKey(make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d bytes: %v, want ErrInvalidKey", n, err)
		}
	}
	// Not a point at all: some y has no x.
	found := false
	for y := int64(2); y < 100; y++ {
		b := yEncoding(big.NewInt(y), false)
		if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
			continue
		}
		found = true
		if _, err := ParsePublicKey(b); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParsePublicKey(%x) (no point): %v", b, err)
		}
	}
	if !found {
		t.Fatal("no undecodable encoding found")
	}
}

// proofFixture is a valid proof and what it is for.
type proofFixture struct {
	sk    *PrivateKey
	pk    *PublicKey
	alpha []byte
	pi    [ProofSize]byte
}

func newFixture(t testing.TB) proofFixture {
	t.Helper()
	sk, err := NewKeyFromSeed(bytes.Repeat([]byte{0x42}, SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	alpha := []byte("alice")
	_, pi := sk.Prove(alpha)
	return proofFixture{sk: sk, pk: sk.Public(), alpha: alpha, pi: pi}
}

func expectInvalid(t *testing.T, pk *PublicKey, alpha, pi []byte, what string) {
	t.Helper()
	beta, err := pk.Verify(alpha, pi)
	if !errors.Is(err, ErrInvalidProof) {
		t.Errorf("%s: %v, want ErrInvalidProof", what, err)
	}
	if beta != ([OutputSize]byte{}) {
		t.Errorf("%s: a rejected proof returned an output", what)
	}
}

func TestForgedProofs(t *testing.T) {
	f := newFixture(t)
	if _, err := f.pk.Verify(f.alpha, f.pi[:]); err != nil {
		t.Fatal(err)
	}

	t.Run("flipped bits", func(t *testing.T) {
		// Every bit: in Gamma, c and s.
		for i := range ProofSize * 8 {
			pi := f.pi
			pi[i/8] ^= 1 << (i % 8)
			expectInvalid(t, f.pk, f.alpha, pi[:], fmt.Sprintf("bit %d", i))
		}
	})

	t.Run("s not reduced", func(t *testing.T) {
		// s + q is the same scalar mod q; decoding must refuse it
		// (section 5.4.4 step 8), and q itself.
		q, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
		sLE := f.pi[pointSize+challengeSize:]
		sBE := make([]byte, 32)
		for i := range sBE {
			sBE[i] = sLE[31-i]
		}
		s := new(big.Int).SetBytes(sBE)
		for _, bad := range []*big.Int{new(big.Int).Add(s, q), q, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))} {
			pi := f.pi
			copy(pi[pointSize+challengeSize:], yEncoding(bad, false)[:32])
			if bad.BitLen() == 256 {
				pi[ProofSize-1] = 0xff
			}
			expectInvalid(t, f.pk, f.alpha, pi[:], fmt.Sprintf("s = %v", bad))
		}
	})

	t.Run("zero c and s", func(t *testing.T) {
		pi := f.pi
		clear(pi[pointSize:])
		expectInvalid(t, f.pk, f.alpha, pi[:], "c = s = 0")
	})

	t.Run("small-order Gamma", func(t *testing.T) {
		for i, p := range smallOrderPoints(t) {
			pi := f.pi
			copy(pi[:pointSize], p.Bytes())
			expectInvalid(t, f.pk, f.alpha, pi[:], fmt.Sprintf("Gamma of small order #%d", i))
		}
	})

	t.Run("Gamma plus a small-order point", func(t *testing.T) {
		gamma, err := new(edwards25519.Point).SetBytes(f.pi[:pointSize])
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range smallOrderPoints(t)[1:] {
			pi := f.pi
			copy(pi[:pointSize], new(edwards25519.Point).Add(gamma, p).Bytes())
			expectInvalid(t, f.pk, f.alpha, pi[:], fmt.Sprintf("Gamma + T%d", i+1))
		}
	})

	t.Run("undecodable Gamma", func(t *testing.T) {
		for _, b := range badKeyEncodings(t)[8:] { // the non-canonical ones
			if _, err := new(edwards25519.Point).SetBytes(b); err != nil {
				continue
			}
			if _, ok := decodePoint(b); ok {
				continue // canonical (a small-order point, covered above)
			}
			pi := f.pi
			copy(pi[:pointSize], b)
			expectInvalid(t, f.pk, f.alpha, pi[:], fmt.Sprintf("non-canonical Gamma %x", b))
		}
		for y := int64(2); y < 30; y++ {
			b := yEncoding(big.NewInt(y), false)
			if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
				continue
			}
			pi := f.pi
			copy(pi[:pointSize], b)
			expectInvalid(t, f.pk, f.alpha, pi[:], fmt.Sprintf("Gamma not a point %x", b))
		}
	})

	t.Run("wrong length", func(t *testing.T) {
		for _, n := range []int{0, ProofSize - 1, ProofSize + 1} {
			pi := make([]byte, n)
			copy(pi, f.pi[:])
			expectInvalid(t, f.pk, f.alpha, pi, fmt.Sprintf("%d bytes", n))
		}
	})

	t.Run("wrong alpha", func(t *testing.T) {
		for _, alpha := range [][]byte{nil, []byte("alic"), []byte("alice\x00"), []byte("Alice")} {
			expectInvalid(t, f.pk, alpha, f.pi[:], fmt.Sprintf("alpha %q", alpha))
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		other, err := NewKeyFromSeed(bytes.Repeat([]byte{0x43}, SeedSize))
		if err != nil {
			t.Fatal(err)
		}
		expectInvalid(t, other.Public(), f.alpha, f.pi[:], "another key")
		// The key's negation shares its y.
		y, _ := new(edwards25519.Point).SetBytes(f.pk.Bytes())
		neg, err := ParsePublicKey(new(edwards25519.Point).Negate(y).Bytes())
		if err != nil {
			t.Fatal(err)
		}
		expectInvalid(t, neg, f.alpha, f.pi[:], "the negated key")
		// The key plus a small-order point is a valid key of its own,
		// with another encode_to_curve salt.
		for i, p := range smallOrderPoints(t)[1:] {
			tk, err := ParsePublicKey(new(edwards25519.Point).Add(y, p).Bytes())
			if err != nil {
				t.Fatal(err)
			}
			expectInvalid(t, tk, f.alpha, f.pi[:], fmt.Sprintf("key + T%d", i+1))
		}
	})

	t.Run("another input's proof", func(t *testing.T) {
		_, pi := f.sk.Prove([]byte("bob"))
		expectInvalid(t, f.pk, f.alpha, pi[:], "bob's proof for alice")
		// Gamma from one proof, c and s from another.
		mixed := f.pi
		copy(mixed[pointSize:], pi[pointSize:])
		expectInvalid(t, f.pk, f.alpha, mixed[:], "spliced proof")
	})
}

// A proof with a small-order key can be made to verify (the key's x is then
// meaningless); ParsePublicKey keeps such keys out, so Verify never sees
// one.
func TestSmallOrderKeyCannotVerify(t *testing.T) {
	for _, p := range smallOrderPoints(t) {
		if _, err := ParsePublicKey(p.Bytes()); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("small-order key %x parsed: %v", p.Bytes(), err)
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(unhex(f, v.PK))
	}
	for _, b := range badKeyEncodings(f) {
		f.Add(b)
	}
	small := smallOrderPoints(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ParsePublicKey(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) || pk != nil {
				t.Fatalf("error %v with key %v", err, pk)
			}
			return
		}
		if !bytes.Equal(pk.Bytes(), b) {
			t.Fatalf("accepted a non-canonical encoding %x (re-encodes as %x)", b, pk.Bytes())
		}
		for _, p := range small {
			if bytes.Equal(p.Bytes(), b) {
				t.Fatalf("accepted the small-order point %x", b)
			}
		}
	})
}

func FuzzVerify(f *testing.F) {
	vs := loadVectors(f)
	keys := map[string]*PrivateKey{}
	for _, v := range vs {
		f.Add(unhex(f, v.PK), unhex(f, v.Alpha), unhex(f, v.Pi))
		sk, err := NewKeyFromSeed(unhex(f, v.SK))
		if err != nil {
			f.Fatal(err)
		}
		keys[string(unhex(f, v.PK))] = sk
	}
	f.Add(unhex(f, vs[0].PK), unhex(f, vs[1].Alpha), unhex(f, vs[1].Pi))
	f.Add(unhex(f, vs[0].PK), []byte{}, make([]byte, ProofSize))
	f.Fuzz(func(t *testing.T, pkBytes, alpha, pi []byte) {
		pk, err := ParsePublicKey(pkBytes)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParsePublicKey: %v", err)
			}
			return
		}
		beta, err := pk.Verify(alpha, pi)
		if err != nil {
			if !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("Verify: %v", err)
			}
			return
		}
		// Uniqueness: for a key whose secret we know, a proof that
		// verifies must give the output the key's owner computes.
		if sk, ok := keys[string(pkBytes)]; ok {
			if want := sk.Hash(alpha); beta != want {
				t.Fatalf("verified output %x, want %x", beta, want)
			}
		}
	})
}

func BenchmarkProve(b *testing.B) {
	f := newFixture(b)
	for b.Loop() {
		f.sk.Prove(f.alpha)
	}
}

func BenchmarkHash(b *testing.B) {
	f := newFixture(b)
	for b.Loop() {
		f.sk.Hash(f.alpha)
	}
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	for b.Loop() {
		if _, err := f.pk.Verify(f.alpha, f.pi[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePublicKey(b *testing.B) {
	f := newFixture(b)
	enc := f.pk.Bytes()
	for b.Loop() {
		if _, err := ParsePublicKey(enc); err != nil {
			b.Fatal(err)
		}
	}
}
