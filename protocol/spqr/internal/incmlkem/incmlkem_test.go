package incmlkem

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/sha3"
	"testing"
)

// TestMatchesCryptoMLKEM checks the two-step encapsulation against the
// standard library: with the same randomness it must produce exactly the
// ciphertext and shared secret of ML-KEM.Encaps_internal, and the
// decapsulation key must recover the shared secret.
func TestMatchesCryptoMLKEM(t *testing.T) {
	for range 50 {
		seed := make([]byte, SeedSize)
		m := make([]byte, RandomnessSize)
		rand.Read(seed)
		rand.Read(m)

		header, ek, err := GenerateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		if len(header) != HeaderSize || len(ek) != EncapsulationKeySize {
			t.Fatalf("sizes: header %d, ek %d", len(header), len(ek))
		}
		if err := ValidateEncapsulationKey(header, ek); err != nil {
			t.Fatal(err)
		}
		ct1, ss, err := Encapsulate1(header, m)
		if err != nil {
			t.Fatal(err)
		}
		ct2, err := Encapsulate2(header, m, ek)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct1) != Ciphertext1Size || len(ct2) != Ciphertext2Size || len(ss) != SharedSecretSize {
			t.Fatalf("sizes: ct1 %d, ct2 %d, ss %d", len(ct1), len(ct2), len(ss))
		}

		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			t.Fatal(err)
		}
		wantSS, wantCT, err := mlkemtest.Encapsulate768(dk.EncapsulationKey(), m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(bytes.Clone(ct1), ct2...), wantCT) {
			t.Fatal("ciphertext differs from crypto/mlkem")
		}
		if !bytes.Equal(ss, wantSS) {
			t.Fatal("shared secret differs from crypto/mlkem")
		}
		got, err := Decapsulate(seed, ct1, ct2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, ss) {
			t.Fatal("decapsulation disagrees")
		}
	}
}

func TestHeaderLayout(t *testing.T) {
	seed := make([]byte, SeedSize)
	rand.Read(seed)
	header, ek, err := GenerateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	dk, _ := mlkem.NewDecapsulationKey768(seed)
	full := dk.EncapsulationKey().Bytes()
	if !bytes.Equal(ek, full[:1152]) || !bytes.Equal(header[:32], full[1152:]) {
		t.Fatal("pk2 must be t̂'s encoding and pk1 must start with ρ")
	}
	if h := sha3.Sum256(full); !bytes.Equal(header[32:], h[:]) {
		t.Fatal("pk1 must end with H(ek)")
	}
}

func TestValidateEncapsulationKey(t *testing.T) {
	seed := make([]byte, SeedSize)
	rand.Read(seed)
	header, ek, _ := GenerateKey(seed)

	bad := bytes.Clone(ek)
	bad[17] ^= 1
	if ValidateEncapsulationKey(header, bad) == nil {
		t.Error("accepted a key that does not match the header hash")
	}
	badHeader := bytes.Clone(header)
	badHeader[3] ^= 1 // ρ is part of the hashed key
	if ValidateEncapsulationKey(badHeader, ek) == nil {
		t.Error("accepted a header with a different ρ")
	}

	// A coefficient equal to q, with a header hash that matches it, must
	// fail the modulus check.
	unreduced := bytes.Clone(ek)
	unreduced[0] = byte(q & 0xff)
	unreduced[1] = unreduced[1]&0xf0 | byte(q>>8)
	h := sha3.New256()
	h.Write(unreduced)
	h.Write(header[:32])
	matching := append(bytes.Clone(header[:32]), h.Sum(nil)...)
	if err := ValidateEncapsulationKey(matching, unreduced); err != errUnreducedCoeffs {
		t.Errorf("unreduced coefficient: got %v", err)
	}

	if ValidateEncapsulationKey(header[:63], ek) == nil || ValidateEncapsulationKey(header, ek[:1151]) == nil {
		t.Error("accepted wrong sizes")
	}
}

func TestCompress(t *testing.T) {
	// Compare with the defining formula round(2ᵈ·x/q) mod 2ᵈ in exact
	// integer arithmetic.
	for _, d := range []uint{1, 4, 10, 11} {
		for x := range q {
			want := ((uint32(x)<<(d+1) + q) / (2 * q)) % (1 << d)
			if got := compress(fieldElement(x), d); uint32(got) != want {
				t.Fatalf("compress(%d, %d) = %d, want %d", x, d, got, want)
			}
		}
	}
}

func TestNTTRoundTrip(t *testing.T) {
	var f ringElement
	for i := range f {
		f[i] = fieldElement(i * 13 % q)
	}
	if inverseNTT(ntt(f)) != f {
		t.Fatal("NTT⁻¹(NTT(f)) != f")
	}
}

func BenchmarkEncapsulate1(b *testing.B) {
	seed := make([]byte, SeedSize)
	m := make([]byte, RandomnessSize)
	header, _, _ := GenerateKey(seed)
	for b.Loop() {
		Encapsulate1(header, m)
	}
}

func BenchmarkEncapsulate2(b *testing.B) {
	seed := make([]byte, SeedSize)
	m := make([]byte, RandomnessSize)
	header, ek, _ := GenerateKey(seed)
	for b.Loop() {
		Encapsulate2(header, m, ek)
	}
}
