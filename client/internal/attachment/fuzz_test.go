package attachment

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// FuzzDecrypt decrypts arbitrary blobs. With sealed false the bytes are the
// blob, and its digest is given, so the structure and MAC checks are what
// stand; with sealed true they are the decrypted stream, sealed under the
// key with a valid MAC and digest, so the padding checks are what stand.
// Decrypt must never panic, and may succeed only with exactly size bytes
// that are the stream's first size bytes.
func FuzzDecrypt(f *testing.F) {
	var key [KeySize]byte
	copy(key[:], bytes.Repeat([]byte("fuzz key"), 8))
	for _, n := range []int{0, 1, 17, 541, 600, 3000} {
		var blob bytes.Buffer
		_, err := Encrypt(&blob, bytes.NewReader(plaintext(n)), int64(n), nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob.Bytes(), int64(n), false)
		pad := 16 - int(PaddedSize(int64(n))%16)
		stream := append(plaintext(n), make([]byte, PaddedSize(int64(n))-int64(n))...)
		f.Add(append(stream, bytes.Repeat([]byte{byte(pad)}, pad)...), int64(n), true)
	}
	f.Add([]byte{}, int64(-1), false)
	f.Add(make([]byte, 592), int64(1<<62), true)
	f.Fuzz(func(t *testing.T, data []byte, size int64, sealed bool) {
		blob := data
		if sealed {
			data = data[:len(data)/16*16]
			blob = seal(t, key, data)
		}
		p := &Pointer{Key: key, Digest: sha256.Sum256(blob), Size: size, BlobSize: int64(len(blob))}
		var out bytes.Buffer
		err := Decrypt(&out, bytes.NewReader(blob), int64(len(blob)), p)
		if err != nil {
			if out.Len() != 0 {
				t.Fatalf("%d bytes released with error %v", out.Len(), err)
			}
			return
		}
		if !sealed {
			t.Fatal("an unsealed blob verified under the fuzz key")
		}
		if int64(out.Len()) != size || !bytes.Equal(out.Bytes(), data[:size]) {
			t.Fatalf("decrypted %d bytes, want the stream's first %d", out.Len(), size)
		}
	})
}
