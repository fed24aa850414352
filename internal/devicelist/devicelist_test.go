package devicelist

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/keys"
)

var t0 = time.UnixMilli(1_790_000_000_000)

func identity(t testing.TB) *keys.PrivateKey {
	t.Helper()
	k, err := keys.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSign(t testing.TB, k *keys.PrivateKey, l *List) []byte {
	t.Helper()
	b, err := Sign(k, l, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignVerify(t *testing.T) {
	k := identity(t)
	for _, l := range []*List{
		{Version: 1, Timestamp: t0.UnixMilli(), Devices: []uint32{1}},
		{Version: 7, Timestamp: 0, Devices: []uint32{2, 5, 127}},
		{Version: math.MaxUint64, Timestamp: math.MaxInt64, Devices: allDevices()},
	} {
		blob := mustSign(t, k, l)
		got, err := Verify(k.PublicKey(), blob)
		if err != nil {
			t.Fatalf("Verify(%+v): %v", l, err)
		}
		if !got.Equal(l) {
			t.Fatalf("Verify = %+v, want %+v", got, l)
		}
		if len(blob) > maxBlob {
			t.Fatalf("blob of %d bytes over maxBlob", len(blob))
		}
	}
}

func allDevices() []uint32 {
	var ids []uint32
	for i := uint32(1); i <= MaxDeviceID; i++ {
		ids = append(ids, i)
	}
	return ids
}

func TestVerifyRefusesOtherKey(t *testing.T) {
	k, other := identity(t), identity(t)
	blob := mustSign(t, k, &List{Version: 1, Devices: []uint32{1}})
	if l, err := Verify(other.PublicKey(), blob); !errors.Is(err, ErrBadSignature) || l != nil {
		t.Fatalf("Verify with another key = %v, %v; want ErrBadSignature", l, err)
	}
}

// TestVerifyRefusesTampering flips every bit of a signed list: each result
// is refused, as malformed or with a bad signature.
func TestVerifyRefusesTampering(t *testing.T) {
	k := identity(t)
	blob := mustSign(t, k, &List{Version: 3, Timestamp: t0.UnixMilli(), Devices: []uint32{1, 4}})
	for i := range len(blob) * 8 {
		b := slices.Clone(blob)
		b[i/8] ^= 1 << (i % 8)
		l, err := Verify(k.PublicKey(), b)
		if err == nil || l != nil {
			t.Fatalf("bit %d flipped: Verify = %+v, %v", i, l, err)
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("bit %d flipped: error %v is neither sentinel", i, err)
		}
	}
}

// TestSignatureCoversLabel: a signature by the same key over the bare
// encoding (without the label), such as a prekey signature is, does not
// make a valid list.
func TestSignatureCoversLabel(t *testing.T) {
	k := identity(t)
	l := &List{Version: 1, Devices: []uint32{1}}
	sig, err := k.Sign(rand.Reader, l.encode())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(k.PublicKey(), encodeSigned(l.encode(), sig)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unlabelled signature: %v, want ErrBadSignature", err)
	}
}

func TestSignRefusesInvalid(t *testing.T) {
	k := identity(t)
	for name, l := range map[string]*List{
		"nil":          nil,
		"version 0":    {Version: 0, Devices: []uint32{1}},
		"negative ts":  {Version: 1, Timestamp: -1, Devices: []uint32{1}},
		"no devices":   {Version: 1},
		"device 0":     {Version: 1, Devices: []uint32{0, 1}},
		"device 128":   {Version: 1, Devices: []uint32{1, 128}},
		"unsorted":     {Version: 1, Devices: []uint32{2, 1}},
		"repeated":     {Version: 1, Devices: []uint32{1, 1}},
		"too many ids": {Version: 1, Devices: append(allDevices(), 128)},
	} {
		if b, err := Sign(k, l, rand.Reader); !errors.Is(err, ErrMalformed) || b != nil {
			t.Errorf("%s: Sign = %x, %v; want ErrMalformed", name, b, err)
		}
	}
}

// signedRaw signs an arbitrary encoding, for testing what Verify refuses
// even with a valid signature.
func signedRaw(t *testing.T, k *keys.PrivateKey, enc []byte) []byte {
	t.Helper()
	sig, err := k.Sign(rand.Reader, []byte(SignatureLabel), enc)
	if err != nil {
		t.Fatal(err)
	}
	return encodeSigned(enc, sig)
}

func field(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func devices(b []byte, ids ...uint64) []byte {
	var p []byte
	for _, id := range ids {
		p = protowire.AppendVarint(p, id)
	}
	b = protowire.AppendTag(b, fieldDevices, protowire.BytesType)
	return protowire.AppendBytes(b, p)
}

// TestVerifyRefusesNonCanonical: well-signed encodings that are not the
// canonical encoding of a valid list are refused as malformed.
func TestVerifyRefusesNonCanonical(t *testing.T) {
	k := identity(t)
	good := devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), 1, 3)
	if _, err := Verify(k.PublicKey(), signedRaw(t, k, good)); err != nil {
		t.Fatalf("the reference encoding is refused: %v", err)
	}
	overlong := append(protowire.AppendTag(nil, fieldVersion, protowire.VarintType), 0x82, 0x00) // 2, in two bytes
	cases := map[string][]byte{
		"empty":            {},
		"overlong varint":  devices(field(overlong, fieldTimestamp, 5), 1, 3),
		"fields reordered": devices(field(field(nil, fieldTimestamp, 5), fieldVersion, 2), 1, 3),
		"field missing":    devices(field(nil, fieldVersion, 2), 1, 3),
		"field repeated":   devices(field(field(field(nil, fieldVersion, 2), fieldVersion, 2), fieldTimestamp, 5), 1, 3),
		"unknown field":    field(good, 4, 1),
		"trailing byte":    append(slices.Clone(good), 0),
		"unsorted":         devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), 3, 1),
		"duplicate":        devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), 1, 1),
		"device 0":         devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), 0, 1),
		"device 128":       devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), 1, 128),
		"device 2^32+1":    devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), 1<<32+1),
		"no devices":       devices(field(field(nil, fieldVersion, 2), fieldTimestamp, 5)),
		"version 0":        devices(field(field(nil, fieldVersion, 0), fieldTimestamp, 5), 1),
		"timestamp 2^63":   devices(field(field(nil, fieldVersion, 1), fieldTimestamp, 1<<63), 1),
		"devices unpacked": field(field(field(nil, fieldVersion, 2), fieldTimestamp, 5), fieldDevices, 1),
	}
	for name, enc := range cases {
		l, err := Verify(k.PublicKey(), signedRaw(t, k, enc))
		if !errors.Is(err, ErrMalformed) || l != nil {
			t.Errorf("%s: Verify = %+v, %v; want ErrMalformed", name, l, err)
		}
	}

	// The signed wrapper is strict too.
	blob := signedRaw(t, k, good)
	_, sig, err := decodeSigned(blob)
	if err != nil {
		t.Fatal(err)
	}
	wrappers := map[string][]byte{
		"trailing byte":     append(slices.Clone(blob), 0),
		"short signature":   encodeSigned(good, sig[:63]),
		"swapped fields":    swapped(good, sig),
		"signature missing": protowire.AppendBytes(protowire.AppendTag(nil, fieldList, protowire.BytesType), good),
		"oversized":         append(slices.Clone(blob), make([]byte, maxBlob)...),
	}
	for name, b := range wrappers {
		l, err := Verify(k.PublicKey(), b)
		if !errors.Is(err, ErrMalformed) || l != nil {
			t.Errorf("wrapper %s: Verify = %+v, %v; want ErrMalformed", name, l, err)
		}
	}
}

func swapped(list, sig []byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, fieldSignature, protowire.BytesType)
	b = protowire.AppendBytes(b, sig)
	b = protowire.AppendTag(b, fieldList, protowire.BytesType)
	return protowire.AppendBytes(b, list)
}

func TestWithWithout(t *testing.T) {
	l := &List{Version: 4, Timestamp: 1, Devices: []uint32{1, 5}}
	w, err := l.With(3, t0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&List{Version: 5, Timestamp: t0.UnixMilli(), Devices: []uint32{1, 3, 5}}); !w.Equal(want) {
		t.Fatalf("With(3) = %+v, want %+v", w, want)
	}
	if !slices.Equal(l.Devices, []uint32{1, 5}) || l.Version != 4 {
		t.Fatalf("With changed its receiver: %+v", l)
	}
	if !w.Contains(3) || w.Contains(2) || !w.Contains(5) {
		t.Fatalf("Contains is wrong on %v", w.Devices)
	}
	wo, err := w.Without(1, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := (&List{Version: 6, Timestamp: t0.Add(time.Second).UnixMilli(), Devices: []uint32{3, 5}}); !wo.Equal(want) {
		t.Fatalf("Without(1) = %+v, want %+v", wo, want)
	}
	if !slices.Equal(w.Devices, []uint32{1, 3, 5}) {
		t.Fatalf("Without changed its receiver: %+v", w)
	}

	for name, f := range map[string]func() (*List, error){
		"With listed":      func() (*List, error) { return l.With(5, t0) },
		"With 0":           func() (*List, error) { return l.With(0, t0) },
		"With 128":         func() (*List, error) { return l.With(128, t0) },
		"Without absent":   func() (*List, error) { return l.Without(2, t0) },
		"Without last":     func() (*List, error) { return (&List{Version: 1, Devices: []uint32{1}}).Without(1, t0) },
		"version at max":   func() (*List, error) { return (&List{Version: math.MaxUint64, Devices: []uint32{1}}).With(2, t0) },
		"With before 1970": func() (*List, error) { return l.With(2, time.UnixMilli(-5)) },
	} {
		if n, err := f(); err == nil || n != nil {
			t.Errorf("%s = %+v, %v; want an error", name, n, err)
		} else if name != "With before 1970" && !errors.Is(err, ErrInvalidChange) {
			t.Errorf("%s: %v, want ErrInvalidChange", name, err)
		}
	}
	if _, err := (&List{Version: 1, Devices: []uint32{2, 1}}).With(3, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("With on an invalid list: %v, want ErrMalformed", err)
	}
}

func TestSignUsesRand(t *testing.T) {
	k := identity(t)
	l := &List{Version: 1, Devices: []uint32{1}}
	a := mustSign(t, k, l)
	b := mustSign(t, k, l)
	if bytes.Equal(a, b) {
		t.Fatal("two signatures with fresh randomness are equal")
	}
	if _, err := Sign(k, l, bytes.NewReader(nil)); err == nil {
		t.Fatal("Sign with an empty random source succeeded")
	}
}
