package devicelist

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/doorless/doorless/protocol/keys"
)

// fuzzKey is a fixed identity, so that the fuzzer can reach the signature
// check of a seed it mutated only in its signature.
var fuzzKey = func() *keys.PrivateKey {
	k, err := keys.NewPrivateKey(bytes.Repeat([]byte{7}, keys.PrivateKeySize))
	if err != nil {
		panic(err)
	}
	return k
}()

func seeds(f *testing.F) {
	for _, l := range []*List{
		{Version: 1, Timestamp: 1_790_000_000_000, Devices: []uint32{1}},
		{Version: 300, Timestamp: 5, Devices: []uint32{1, 2, 64, 127}},
	} {
		b, err := Sign(fuzzKey, l, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
}

// FuzzVerify: Verify never panics; what it accepts is the canonical
// encoding of a valid list signed by the key, so signing the list again
// gives a blob of the same length that verifies to the same list.
func FuzzVerify(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Verify(fuzzKey.PublicKey(), b)
		if err != nil {
			if l != nil {
				t.Fatal("a list with an error")
			}
			return
		}
		if err := l.check(); err != nil {
			t.Fatalf("accepted an invalid list: %v", err)
		}
		again, err := Sign(fuzzKey, l, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) != len(b) {
			t.Fatalf("re-signed blob has %d bytes, the accepted one %d", len(again), len(b))
		}
	})
}

// FuzzDecode exercises the list decoder behind Verify directly (the
// fuzzer cannot forge the signature that guards it in Verify): whatever it
// accepts is valid and re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	seeds(f)
	f.Add((&List{Version: 2, Timestamp: 9, Devices: []uint32{1, 3}}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if list, _, err := decodeSigned(b); err == nil {
			b = list
		}
		l, err := decode(b)
		if err != nil {
			return
		}
		if err := l.check(); err != nil {
			t.Fatalf("accepted an invalid list: %v", err)
		}
		if !bytes.Equal(l.encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
	})
}
