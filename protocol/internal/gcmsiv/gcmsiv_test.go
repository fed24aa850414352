package gcmsiv

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"math/rand/v2"
	"os"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type intermediates struct {
	PolyvalExample struct {
		H, X, Result string
	} `json:"polyvalExample"`
	Vectors []struct {
		Section       string `json:"section"`
		Key           string `json:"key"`
		Nonce         string `json:"nonce"`
		AAD           string `json:"aad"`
		Plaintext     string `json:"plaintext"`
		AuthKey       string `json:"authKey"`
		EncKey        string `json:"encKey"`
		PolyvalResult string `json:"polyvalResult"`
		Tag           string `json:"tag"`
		Result        string `json:"result"`
	} `json:"vectors"`
}

type wycheproof struct {
	TestGroups []struct {
		KeySize int `json:"keySize"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Key     string   `json:"key"`
			IV      string   `json:"iv"`
			AAD     string   `json:"aad"`
			Msg     string   `json:"msg"`
			CT      string   `json:"ct"`
			Tag     string   `json:"tag"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func polyvalOf(h, x []byte) []byte {
	p := polyval{h: loadElement(h)}
	p.update(x)
	out := make([]byte, 16)
	p.s.store(out)
	return out
}

func TestPOLYVALWorkedExample(t *testing.T) {
	var doc intermediates
	loadJSON(t, "testdata/rfc8452-intermediates.json", &doc)
	ex := doc.PolyvalExample
	if got := polyvalOf(unhex(t, ex.H), unhex(t, ex.X)); !bytes.Equal(got, unhex(t, ex.Result)) {
		t.Fatalf("POLYVAL = %x, want %s", got, ex.Result)
	}
}

// TestRFC8452Intermediates checks every step of the RFC's worked vectors: the record
// keys, the POLYVAL result, the tag and the sealed result; and that the transcription
// agrees with Wycheproof's copy of the same vectors.
func TestRFC8452Intermediates(t *testing.T) {
	var doc intermediates
	loadJSON(t, "testdata/rfc8452-intermediates.json", &doc)
	var wp wycheproof
	loadJSON(t, "testdata/wycheproof_aes_gcm_siv_test.json", &wp)
	if len(doc.Vectors) < 12 {
		t.Fatalf("%d vectors", len(doc.Vectors))
	}
	for i, v := range doc.Vectors {
		key, nonce, aad, pt := unhex(t, v.Key), unhex(t, v.Nonce), unhex(t, v.AAD), unhex(t, v.Plaintext)
		c, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		a := c.(*aead)
		authKey, enc := a.deriveKeys(nonce)
		if !bytes.Equal(authKey[:], unhex(t, v.AuthKey)) || !bytes.Equal(enc[:len(key)], unhex(t, v.EncKey)) {
			t.Errorf("%s #%d: record keys %x %x", v.Section, i, authKey, enc[:len(key)])
		}
		var in []byte
		in = append(in, aad...)
		in = append(in, make([]byte, -len(aad)&15)...)
		in = append(in, pt...)
		in = append(in, make([]byte, -len(pt)&15)...)
		lengths := make([]byte, 16)
		lengths[0], lengths[1] = byte(len(aad)*8), byte(len(aad)*8>>8)
		lengths[8], lengths[9] = byte(len(pt)*8), byte(len(pt)*8>>8)
		in = append(in, lengths...)
		if got := polyvalOf(authKey[:], in); !bytes.Equal(got, unhex(t, v.PolyvalResult)) {
			t.Errorf("%s #%d: POLYVAL %x, want %s", v.Section, i, got, v.PolyvalResult)
		}
		sealed := c.Seal(nil, nonce, pt, aad)
		if !bytes.Equal(sealed, unhex(t, v.Result)) || !bytes.Equal(sealed[len(pt):], unhex(t, v.Tag)) {
			t.Errorf("%s #%d: sealed %x, want %s", v.Section, i, sealed, v.Result)
		}
		found := false
		for _, g := range wp.TestGroups {
			for _, w := range g.Tests {
				if w.Key == v.Key && w.IV == v.Nonce && w.AAD == v.AAD && w.Msg == v.Plaintext {
					found = found || w.CT+w.Tag == v.Result
				}
			}
		}
		if !found {
			t.Errorf("%s #%d: not in the Wycheproof file with the same result", v.Section, i)
		}
	}
}

// TestWycheproof runs every AES-GCM-SIV vector of Project Wycheproof, among them RFC
// 8452's Appendix C (AES-128, AES-256 and the counter-wrap vectors), wrapped counters
// and modified tags.
func TestWycheproof(t *testing.T) {
	var wp wycheproof
	loadJSON(t, "testdata/wycheproof_aes_gcm_siv_test.json", &wp)
	rfc256, total := 0, 0
	for _, g := range wp.TestGroups {
		for _, v := range g.Tests {
			total++
			if g.KeySize == 256 && v.Comment == "RFC 8452" {
				rfc256++
			}
			key, nonce, aad, msg := unhex(t, v.Key), unhex(t, v.IV), unhex(t, v.AAD), unhex(t, v.Msg)
			ct := append(unhex(t, v.CT), unhex(t, v.Tag)...)
			c, err := New(key)
			if err != nil {
				t.Fatalf("tc %d: %v", v.TcID, err)
			}
			pt, err := c.Open(nil, nonce, ct, aad)
			switch v.Result {
			case "valid":
				if err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("tc %d (%s): open: %v", v.TcID, v.Comment, err)
				}
				if got := c.Seal(nil, nonce, msg, aad); !bytes.Equal(got, ct) {
					t.Errorf("tc %d (%s): seal %x, want %x", v.TcID, v.Comment, got, ct)
				}
			case "invalid":
				if !errors.Is(err, ErrOpen) || pt != nil {
					t.Errorf("tc %d (%s): a bad ciphertext opened: %v", v.TcID, v.Comment, err)
				}
			default:
				t.Fatalf("tc %d: result %q", v.TcID, v.Result)
			}
		}
	}
	// C.2 has 24 vectors and C.3 two, all AES-256.
	if rfc256 != 26 || total < 200 {
		t.Fatalf("%d RFC AES-256 vectors, %d in all", rfc256, total)
	}
}

// refDot is dot computed the slow way, from the definition: the polynomial product
// reduced modulo P, then multiplied by x^-128 by 128 halvings (adding P when the
// constant term is set).
func refDot(a, b []byte) []byte {
	le := func(x []byte) *big.Int {
		r := make([]byte, len(x))
		for i := range x {
			r[len(x)-1-i] = x[i]
		}
		return new(big.Int).SetBytes(r)
	}
	p := new(big.Int).SetBit(new(big.Int), 128, 1)
	for _, e := range []int{127, 126, 121, 0} {
		p.SetBit(p, e, 1)
	}
	x, y := le(a), le(b)
	prod := new(big.Int)
	for i := range 128 {
		if y.Bit(i) == 1 {
			prod.Xor(prod, new(big.Int).Lsh(x, uint(i)))
		}
	}
	for i := prod.BitLen() - 1; i >= 128; i-- {
		if prod.Bit(i) == 1 {
			prod.Xor(prod, new(big.Int).Lsh(p, uint(i-128)))
		}
	}
	for range 128 {
		if prod.Bit(0) == 1 {
			prod.Xor(prod, p)
		}
		prod.Rsh(prod, 1)
	}
	out := make([]byte, 16)
	be := prod.FillBytes(make([]byte, 16))
	for i := range be {
		out[15-i] = be[i]
	}
	return out
}

func TestDotAgainstDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	block := func() []byte {
		b := make([]byte, 16)
		for i := range b {
			switch r.IntN(4) {
			case 0:
				b[i] = 0xff // dense operands exercise the widest carries
			case 1:
				b[i] = 0
			default:
				b[i] = byte(r.Uint32())
			}
		}
		return b
	}
	for i := range 2000 {
		a, b := block(), block()
		got := make([]byte, 16)
		dot(loadElement(a), loadElement(b)).store(got)
		if want := refDot(a, b); !bytes.Equal(got, want) {
			t.Fatalf("#%d dot(%x, %x) = %x, want %x", i, a, b, got, want)
		}
	}
	ones := bytes.Repeat([]byte{0xff}, 16)
	got := make([]byte, 16)
	dot(loadElement(ones), loadElement(ones)).store(got)
	if want := refDot(ones, ones); !bytes.Equal(got, want) {
		t.Fatalf("all ones: %x, want %x", got, want)
	}
}

func TestClmulAgainstLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		x, y := r.Uint64(), r.Uint64()
		if r.IntN(8) == 0 {
			x = ^uint64(0)
		}
		var lo, hi uint64
		for i := range 64 {
			if y>>i&1 == 1 {
				lo ^= x << i
				if i > 0 {
					hi ^= x >> (64 - i)
				}
			}
		}
		if gl, gh := clmul(x, y); gl != lo || gh != hi {
			t.Fatalf("clmul(%#x, %#x) = %#x:%#x, want %#x:%#x", x, y, gh, gl, hi, lo)
		}
	}
}

// TestTamper flips every bit of random messages (ciphertext, tag, nonce and additional
// data): nothing opens, and a failed Open leaves no plaintext behind.
func TestTamper(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, keyLen := range []int{16, 32} {
		for size := range 40 {
			key := make([]byte, keyLen)
			nonce := make([]byte, NonceSize)
			for i := range key {
				key[i] = byte(r.Uint32())
			}
			for i := range nonce {
				nonce[i] = byte(r.Uint32())
			}
			pt := make([]byte, size)
			aad := make([]byte, size%7)
			for i := range pt {
				pt[i] = byte(r.Uint32())
			}
			c, _ := New(key)
			ct := c.Seal(nil, nonce, pt, aad)
			if len(ct) != size+TagSize {
				t.Fatalf("sealed %d bytes into %d", size, len(ct))
			}
			mustFail := func(what string, nonce, ct, aad []byte) {
				t.Helper()
				dst := make([]byte, 0, len(ct))
				if out, err := c.Open(dst, nonce, ct, aad); !errors.Is(err, ErrOpen) || out != nil {
					t.Fatalf("key %d, size %d, %s: opened (%v)", keyLen, size, what, err)
				}
				if !bytes.Equal(dst[:cap(dst)], make([]byte, cap(dst))) {
					t.Fatalf("%s: plaintext left in dst", what)
				}
			}
			for bit := range len(ct) * 8 {
				bad := bytes.Clone(ct)
				bad[bit/8] ^= 1 << (bit % 8)
				mustFail("flipped ciphertext bit", nonce, bad, aad)
			}
			for bit := range NonceSize * 8 {
				bad := bytes.Clone(nonce)
				bad[bit/8] ^= 1 << (bit % 8)
				mustFail("flipped nonce bit", bad, ct, aad)
			}
			mustFail("extra additional data", nonce, ct, append(bytes.Clone(aad), 0))
			if len(aad) > 0 {
				mustFail("truncated additional data", nonce, ct, aad[:len(aad)-1])
			}
			mustFail("truncated", nonce, ct[:len(ct)-1], aad)
			mustFail("extended", nonce, append(bytes.Clone(ct), 0), aad)
			mustFail("short", nonce, ct[:TagSize-1], aad)
			other := bytes.Clone(key)
			other[0] ^= 1
			oc, _ := New(other)
			if _, err := oc.Open(nil, nonce, ct, aad); !errors.Is(err, ErrOpen) {
				t.Fatal("opened under another key")
			}
			got, err := c.Open(nil, nonce, ct, aad)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("round trip: %v", err)
			}
		}
	}
}

func TestInPlaceAndAppend(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	nonce := make([]byte, NonceSize)
	c, _ := New(key)
	pt := []byte("in place, with a prefix kept")
	want := c.Seal(nil, nonce, pt, nil)

	buf := make([]byte, len(pt), len(pt)+TagSize)
	copy(buf, pt)
	ct := c.Seal(buf[:0], nonce, buf, nil)
	if !bytes.Equal(ct, want) {
		t.Fatal("in-place seal differs")
	}
	out, err := c.Open(ct[:0], nonce, ct, nil)
	if err != nil || !bytes.Equal(out, pt) {
		t.Fatalf("in-place open: %v", err)
	}
	prefixed := c.Seal([]byte("prefix:"), nonce, pt, nil)
	if !bytes.Equal(prefixed, append([]byte("prefix:"), want...)) {
		t.Fatal("append differs")
	}
	if _, err := New(make([]byte, 24)); !errors.Is(err, ErrKeySize) {
		t.Fatalf("24-byte key: %v", err)
	}
}

func BenchmarkSeal1K(b *testing.B) {
	c, _ := New(make([]byte, 32))
	nonce := make([]byte, NonceSize)
	pt := make([]byte, 1024)
	dst := make([]byte, 0, len(pt)+TagSize)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		c.Seal(dst, nonce, pt, nil)
	}
}
