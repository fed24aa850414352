package attachment

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// Padded sizes computed independently (Python's math over IEEE doubles,
// the formula of Signal's PaddingInputStream.getPaddedSize).
var paddedVectors = []struct{ size, padded, blob int64 }{
	{0, 541, 592},
	{1, 541, 592},
	{541, 541, 592},
	{542, 568, 624},
	{1000, 1020, 1072},
	{10000, 10110, 10160},
	{123456, 127826, 127888},
	{1 << 20, 1093831, 1093888},
	{50 << 20, 54211841, 54211904},
	{100 << 20, 107335738, 107335792},
}

func TestPaddedSize(t *testing.T) {
	for _, v := range paddedVectors {
		if got := PaddedSize(v.size); got != v.padded {
			t.Errorf("PaddedSize(%d) = %d, want %d", v.size, got, v.padded)
		}
		if got := BlobSize(v.size); got != v.blob {
			t.Errorf("BlobSize(%d) = %d, want %d", v.size, got, v.blob)
		}
	}
	prev := int64(0)
	for n := int64(0); n < 200_000; n += 1 + n/50 {
		p := PaddedSize(n)
		if p < n || p < prev || (n > 541 && float64(p) > float64(n)*1.05+1) {
			t.Fatalf("PaddedSize(%d) = %d (previous %d): not a bucket of 5%%", n, p, prev)
		}
		prev = p
	}
	for _, n := range []int64{-1, 1<<40 + 1} {
		if PaddedSize(n) != -1 || BlobSize(n) != -1 {
			t.Errorf("size %d accepted", n)
		}
	}
}

func plaintext(n int) []byte {
	b := make([]byte, n)
	r := mrand.New(mrand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func encrypt(t testing.TB, pt []byte) (*Pointer, []byte) {
	t.Helper()
	var blob bytes.Buffer
	p, err := Encrypt(&blob, bytes.NewReader(pt), int64(len(pt)), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.ID = strings.Repeat("A", 43)
	return p, blob.Bytes()
}

func decrypt(p *Pointer, blob []byte) ([]byte, error) {
	var out bytes.Buffer
	err := Decrypt(&out, bytes.NewReader(blob), int64(len(blob)), p)
	return out.Bytes(), err
}

// openCBC decrypts a blob with no help from the package: the format check.
func openCBC(t *testing.T, key [KeySize]byte, blob []byte) []byte {
	t.Helper()
	mac := hmac.New(sha256.New, key[32:])
	mac.Write(blob[:len(blob)-32])
	if !hmac.Equal(mac.Sum(nil), blob[len(blob)-32:]) {
		t.Fatal("the tag is not HMAC-SHA256(macKey, IV ‖ ciphertext)")
	}
	block, _ := aes.NewCipher(key[:32])
	ct := bytes.Clone(blob[16 : len(blob)-32])
	cipher.NewCBCDecrypter(block, blob[:16]).CryptBlocks(ct, ct)
	pad := int(ct[len(ct)-1])
	if pad < 1 || pad > 16 || !bytes.Equal(ct[len(ct)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		t.Fatalf("bad PKCS#7 padding %d", pad)
	}
	return ct[:len(ct)-pad]
}

// openCBCStream is the whole decrypted stream of a blob, padding included.
func openCBCStream(t *testing.T, key [KeySize]byte, blob []byte) []byte {
	block, _ := aes.NewCipher(key[:32])
	ct := bytes.Clone(blob[16 : len(blob)-32])
	cipher.NewCBCDecrypter(block, blob[:16]).CryptBlocks(ct, ct)
	return ct
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 540, 541, 542, 1000, 4096, bufSize - 1, bufSize, bufSize + 1, 3*bufSize + 7, 1<<20 + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pt := plaintext(n)
			p, blob := encrypt(t, pt)
			if int64(len(blob)) != BlobSize(int64(n)) || p.BlobSize != int64(len(blob)) || p.Size != int64(n) {
				t.Fatalf("blob %d bytes, pointer %d/%d, want %d", len(blob), p.Size, p.BlobSize, BlobSize(int64(n)))
			}
			if p.Digest != sha256.Sum256(blob) {
				t.Fatal("digest is not SHA-256 of the blob")
			}
			padded := openCBC(t, p.Key, blob)
			if int64(len(padded)) != PaddedSize(int64(n)) || !bytes.Equal(padded[:n], pt) || !bytes.Equal(padded[n:], make([]byte, len(padded)-n)) {
				t.Fatal("the padded plaintext is not the plaintext and zeros")
			}
			got, err := decrypt(p, blob)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("round trip changed the plaintext")
			}
		})
	}
}

// TestEncryptFreshKeys: every blob has its own key and IV.
func TestEncryptFreshKeys(t *testing.T) {
	pt := plaintext(100)
	p1, b1 := encrypt(t, pt)
	p2, b2 := encrypt(t, pt)
	if p1.Key == p2.Key || bytes.Equal(b1[:16], b2[:16]) {
		t.Fatal("key or IV repeated")
	}
}

// TestEncryptReaders: a source that dribbles or fails, or whose length is
// not the declared size.
func TestEncryptReaders(t *testing.T) {
	pt := plaintext(3*bufSize + 5)
	var blob bytes.Buffer
	p, err := Encrypt(&blob, iotest.OneByteReader(iotest.HalfReader(bytes.NewReader(pt))), int64(len(pt)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decrypt(p, blob.Bytes()); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("one-byte reader: %v", err)
	}
	if _, err := Encrypt(io.Discard, bytes.NewReader(pt), int64(len(pt))+1, nil); err == nil {
		t.Error("short source accepted")
	}
	if _, err := Encrypt(io.Discard, bytes.NewReader(pt), int64(len(pt))-1, nil); err == nil {
		t.Error("long source accepted")
	}
	boom := errors.New("boom")
	if _, err := Encrypt(io.Discard, iotest.ErrReader(boom), 10, nil); !errors.Is(err, boom) {
		t.Errorf("source error %v, want it wrapped", err)
	}
	if _, err := Encrypt(io.Discard, bytes.NewReader(nil), -1, nil); err == nil {
		t.Error("negative size accepted")
	}
	if _, err := Encrypt(io.Discard, bytes.NewReader(pt), int64(len(pt)), iotest.ErrReader(boom)); err == nil {
		t.Error("failing randomness accepted")
	}
}

// TestEncryptConstantMemory: 32 MiB go through in a few buffers.
func TestEncryptConstantMemory(t *testing.T) {
	const n = 32 << 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Encrypt(io.Discard, io.LimitReader(zeros{}, n), n, nil); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("encrypting %d bytes allocated %d bytes", n, d)
	}
}

// failWriter fails the test on any write: nothing may be released.
type failWriter struct{ t *testing.T }

func (w failWriter) Write(b []byte) (int, error) {
	w.t.Fatalf("%d bytes of plaintext released from a bad blob", len(b))
	return 0, nil
}

func mustFail(t *testing.T, p *Pointer, blob []byte, want error) {
	t.Helper()
	err := Decrypt(failWriter{t}, bytes.NewReader(blob), int64(len(blob)), p)
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

func TestDecryptRejects(t *testing.T) {
	pt := plaintext(5000)
	p, blob := encrypt(t, pt)

	for _, at := range []int{0, 15, 16, 2000, len(blob) - 33, len(blob) - 32, len(blob) - 1} {
		bad := bytes.Clone(blob)
		bad[at] ^= 1
		mustFail(t, p, bad, ErrBadMAC)
	}
	wrongKey := *p
	wrongKey.Key[40] ^= 1
	mustFail(t, &wrongKey, blob, ErrBadMAC)
	wrongDigest := *p
	wrongDigest.Digest[0] ^= 1
	mustFail(t, &wrongDigest, blob, ErrDigestMismatch)

	mustFail(t, p, blob[:len(blob)-16], ErrMalformed)
	mustFail(t, p, append(bytes.Clone(blob), make([]byte, 16)...), ErrMalformed)
	wrongSize := *p
	// 4999 pads to the same bucket; plaintext byte 4999 is not zero, so the
	// padding check catches it.
	wrongSize.Size--
	if BlobSize(wrongSize.Size) != p.BlobSize || pt[wrongSize.Size] == 0 {
		t.Fatal("test assumption broken")
	}
	mustFail(t, &wrongSize, blob, ErrMalformed)
	wrongSize.Size = 4000 // another bucket: the sizes do not fit
	mustFail(t, &wrongSize, blob, ErrMalformed)
	wrongSize.Size = -1
	mustFail(t, &wrongSize, blob, ErrMalformed)

	// Another valid blob under the same key: its own digest, not this one.
	other := seal(t, p.Key, openCBCStream(t, p.Key, blob))
	mustFail(t, p, other, ErrDigestMismatch)
}

// seal makes a blob of stream (the padded plaintext and its PKCS#7
// padding, or whatever the test wants instead) under key.
func seal(t *testing.T, key [KeySize]byte, stream []byte) []byte {
	t.Helper()
	if len(stream)%16 != 0 {
		t.Fatalf("%d bytes is not whole blocks", len(stream))
	}
	ct := bytes.Clone(stream)
	iv := make([]byte, 16)
	rand.Read(iv)
	block, _ := aes.NewCipher(key[:32])
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
	blob := append(iv, ct...)
	mac := hmac.New(sha256.New, key[32:])
	mac.Write(blob)
	return mac.Sum(blob)
}

// pointerFor is the pointer a malicious sender would send with blob.
func pointerFor(key [KeySize]byte, blob []byte, size int64) *Pointer {
	return &Pointer{ID: strings.Repeat("A", 43), Key: key, Digest: sha256.Sum256(blob), Size: size, BlobSize: int64(len(blob))}
}

// TestDecryptBadPadding: a sender (who holds the key) made a blob whose
// MAC and digest verify but whose padding is wrong.
func TestDecryptBadPadding(t *testing.T) {
	var key [KeySize]byte
	rand.Read(key[:])
	const size = 3000
	padded := int(PaddedSize(size))
	pad := 16 - padded%16
	good := append(plaintext(size), make([]byte, padded-size)...)
	good = append(good, bytes.Repeat([]byte{byte(pad)}, pad)...)

	blob := seal(t, key, good)
	if got, err := decrypt(pointerFor(key, blob, size), blob); err != nil || !bytes.Equal(got, good[:size]) {
		t.Fatalf("hand-made good blob: %v", err)
	}
	for name, mod := range map[string]func([]byte) []byte{
		"first zero":      func(b []byte) []byte { b[size] = 1; return b },
		"last zero":       func(b []byte) []byte { b[padded-1] = 0x80; return b },
		"pkcs7 last byte": func(b []byte) []byte { b[len(b)-1] ^= 0x3; return b },
		"pkcs7 first":     func(b []byte) []byte { b[padded] ^= 0x10; return b },
		"extra block":     func(b []byte) []byte { return append(b, bytes.Repeat([]byte{16}, 16)...) },
	} {
		t.Run(name, func(t *testing.T) {
			blob := seal(t, key, mod(bytes.Clone(good)))
			mustFail(t, pointerFor(key, blob, size), blob, ErrMalformed)
		})
	}
}

// TestDecryptSourceErrors: a source that cannot be read fails cleanly.
func TestDecryptSourceErrors(t *testing.T) {
	p, blob := encrypt(t, plaintext(2000))
	boom := errors.New("boom")
	err := Decrypt(failWriter{t}, errReaderAt{bytes.NewReader(blob), boom}, int64(len(blob)), p)
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
}

type errReaderAt struct {
	r   io.ReaderAt
	err error
}

func (e errReaderAt) ReadAt(b []byte, off int64) (int, error) {
	if off > 100 {
		return 0, e.err
	}
	return e.r.ReadAt(b, off)
}

func TestPointer(t *testing.T) {
	p, _ := encrypt(t, plaintext(10))
	p.ID = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY"
	for _, s := range []string{p.String(), fmt.Sprintf("%v %+v %#v %s", p, p, p, p), p.LogValue().String()} {
		if strings.Contains(s, p.ID) || strings.Contains(s, strings.TrimSuffix(fmt.Sprint(p.Key[:4]), "]")) || strings.Contains(s, fmt.Sprintf("%x", p.Key[:4])) {
			t.Errorf("pointer prints secrets: %s", s)
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Pointer){
		"id":        func(p *Pointer) { p.ID = "short" },
		"blob size": func(p *Pointer) { p.BlobSize += 16 },
		"size":      func(p *Pointer) { p.Size = 1 << 20 },
		"negative":  func(p *Pointer) { p.Size = -5 },
	} {
		q := *p
		mod(&q)
		if err := q.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
