package erasure

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// clmulReduce is a slow, independent GF(2¹⁶) multiplication: carry-less
// long multiplication followed by reduction modulo poly.
func clmulReduce(a, b uint16) uint16 {
	var acc uint32
	for i := range 16 {
		if b>>i&1 == 1 {
			acc ^= uint32(a) << i
		}
	}
	for i := 31; i >= 16; i-- {
		if acc>>i&1 == 1 {
			acc ^= poly << (i - 16)
		}
	}
	return uint16(acc)
}

func TestGFMulMatchesReference(t *testing.T) {
	tb := tables()
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		a, b := uint16(r.Uint32()), uint16(r.Uint32())
		want := clmulReduce(a, b)
		if got := tb.mul(a, b); got != want {
			t.Fatalf("%#04x * %#04x = %#04x, want %#04x", a, b, got, want)
		}
		if got := newMulBy(a).mul(b); got != want {
			t.Fatalf("mulBy(%#04x) * %#04x = %#04x, want %#04x", a, b, got, want)
		}
		if b != 0 {
			if got := tb.mul(tb.div(a, b), b); got != a {
				t.Fatalf("(%#04x / %#04x) * %#04x = %#04x", a, b, b, got)
			}
		}
	}
	// The crate's benchmark operands, and the constants' own properties.
	if got, want := tb.mul(0x1234, 0x4567), clmulReduce(0x1234, 0x4567); got != want {
		t.Fatalf("0x1234 * 0x4567 = %#04x, want %#04x", got, want)
	}
	if tb.mul(1, 0xbeef) != 0xbeef || tb.mul(0, 0xbeef) != 0 {
		t.Fatal("identity or zero broken")
	}
}

// TestPolyIsPrimitive checks that x has order 2¹⁶−1, which the log tables
// rely on: every nonzero element must appear exactly once in exp.
func TestPolyIsPrimitive(t *testing.T) {
	tb := tables()
	seen := make([]bool, 1<<16)
	for i := range groupOrder {
		v := tb.exp[i]
		if v == 0 || seen[v] {
			t.Fatalf("x^%d = %#04x repeats: poly is not primitive", i, v)
		}
		seen[v] = true
	}
}

// TestBarrettConstant checks the crate's x86_barrett_reduction constant
// 0x1111a = ⌊x³² / poly⌋ (carry-less), tying our poly to the crate's.
func TestBarrettConstant(t *testing.T) {
	num := uint64(1) << 32
	var quot uint64
	for i := 32; i >= 16; i-- {
		if num>>i&1 == 1 {
			num ^= uint64(poly) << (i - 16)
			quot |= 1 << (i - 16)
		}
	}
	if quot != 0x1111a {
		t.Fatalf("x³² / poly = %#x, want 0x1111a", quot)
	}
}

func TestInterpolate(t *testing.T) {
	tb := tables()
	r := rand.New(rand.NewPCG(3, 4))
	// Mirrors the crate's poly_lagrange_interpolate test: interpolate 30
	// random points, re-interpolate from 30 other points of the result, and
	// check that both pass through the originals.
	pts := make([]point, 30)
	for i := range pts {
		pts[i] = point{x: uint16(i), y: uint16(r.Uint32())}
	}
	p := tb.interpolate(pts)
	for _, pt := range pts {
		if newMulBy(pt.x).eval(p) != pt.y {
			t.Fatal("interpolated polynomial misses a point")
		}
	}
	pts2 := make([]point, 30)
	for i := range pts2 {
		x := uint16(i + 30)
		pts2[i] = point{x: x, y: newMulBy(x).eval(p)}
	}
	p2 := tb.interpolate(pts2)
	for _, pt := range pts {
		if newMulBy(pt.x).eval(p2) != pt.y {
			t.Fatal("re-interpolated polynomial misses an original point")
		}
	}
}

func chunkAt(t *testing.T, e Encoder, idx uint16) Chunk {
	t.Helper()
	var c Chunk
	for e.next <= uint32(idx) {
		c, e = e.Next()
	}
	return c
}

// TestEncodeDecodeSmall mirrors the crate's encode_and_decode_small.
func TestEncodeDecodeSmall(t *testing.T) {
	msg := []byte("abcdefghij")
	e, err := NewEncoder(msg)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := NewDecoder(len(msg))
	d = d.Add(chunkAt(t, e, 1))
	d = d.Add(chunkAt(t, e, 2))
	got, ok := d.Decoded()
	if !ok || !bytes.Equal(got, msg) {
		t.Fatalf("decoded %q, %v", got, ok)
	}
}

// TestEncodeDecodeLarge mirrors the crate's encode_and_decode_large: none
// of the chunks given to the decoder contain message data.
func TestEncodeDecodeLarge(t *testing.T) {
	msg := bytes.Repeat([]byte{3}, 1088)
	e, _ := NewEncoder(msg)
	needed := 1088/32 + 1
	d, _ := NewDecoder(1088)
	for i := needed; i < 2*needed+1; i++ {
		d = d.Add(chunkAt(t, e, uint16(i)))
		if got, ok := d.Decoded(); ok {
			if !bytes.Equal(got, msg) {
				t.Fatal("wrong message")
			}
			return
		}
	}
	t.Fatal("should have decoded")
}

// TestSystematic checks that the first chunks are the message itself.
func TestSystematic(t *testing.T) {
	msg := make([]byte, 1152)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	e, _ := NewEncoder(msg)
	var got []byte
	for range len(msg) / ChunkSize {
		var c Chunk
		c, e = e.Next()
		got = append(got, c.Data[:]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("chunks 0..n-1 must be the message")
	}
}

// TestAnySubsetDecodes checks the erasure property for the message sizes
// SPQR V1 uses: any needed distinct chunks, in any order, with repeats,
// reconstruct the message.
func TestAnySubsetDecodes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{96, 160, 960, 1152, 10, 2, 34} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		e, _ := NewEncoder(msg)
		var chunks []Chunk
		for range 200 {
			var c Chunk
			c, e = e.Next()
			chunks = append(chunks, c)
		}
		for range 20 {
			r.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
			d, _ := NewDecoder(size)
			done := false
			for i, c := range chunks {
				d = d.Add(c)
				if i%3 == 0 {
					d = d.Add(c) // repeats are harmless
				}
				if got, ok := d.Decoded(); ok {
					if !bytes.Equal(got, msg) {
						t.Fatalf("size %d: wrong message", size)
					}
					if i+1 < (size+ChunkSize-1)/ChunkSize {
						t.Fatalf("size %d: decoded from %d chunks", size, i+1)
					}
					done = true
					break
				}
			}
			if !done {
				t.Fatalf("size %d: never decoded", size)
			}
		}
	}
}

func TestChunkNumberWraps(t *testing.T) {
	msg := []byte("0123456789abcdef0123456789abcdef0123456789abcdef")
	e, _ := restoreEncoder(msg, 1<<16+1)
	c, e := e.Next()
	if c.Index != 1 || e.next != 1<<16+2 {
		t.Fatalf("index %d, next %d", c.Index, e.next)
	}
	if want := chunkAt(t, mustEncoder(t, msg), 1); c != want {
		t.Fatal("chunk 2¹⁶+1 must equal chunk 1")
	}
}

func mustEncoder(t *testing.T, msg []byte) Encoder {
	t.Helper()
	e, err := NewEncoder(msg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRejects(t *testing.T) {
	if _, err := NewEncoder([]byte{1, 2, 3}); err == nil {
		t.Error("odd-length message accepted")
	}
	if _, err := NewDecoder(3); err == nil {
		t.Error("odd-length decoder accepted")
	}
	if _, err := NewEncoder(make([]byte, MaxMessageSize+2)); err == nil {
		t.Error("oversized message accepted")
	}
}

func TestSerializationRoundTrip(t *testing.T) {
	// Mirrors the crate's to_and_from_pb test.
	msg := bytes.Repeat([]byte{3}, 1088)
	e := mustEncoder(t, msg)
	d, _ := NewDecoder(1088)
	needed := 1088 / 32
	for i := 2; i < needed; i++ {
		d = d.Add(chunkAt(t, e, uint16(i)))
	}
	e = Encoder{data: e.data, next: uint32(needed)}

	e2, rest, err := ParseEncoder(e.AppendBinary(nil), len(msg))
	if err != nil || len(rest) != 0 {
		t.Fatal(err, len(rest))
	}
	d2, rest, err := ParseDecoder(d.AppendBinary(nil), 1088)
	if err != nil || len(rest) != 0 {
		t.Fatal(err, len(rest))
	}
	for range 2 {
		var c Chunk
		c, e2 = e2.Next()
		d2 = d2.Add(c)
	}
	got, ok := d2.Decoded()
	if !ok || !bytes.Equal(got, msg) {
		t.Fatal("round-tripped coder failed to decode")
	}

	// Unsorted points and excess points are rejected.
	bad := d.AppendBinary(nil)
	bad[2], bad[6] = bad[6], bad[2]
	bad[3], bad[7] = bad[7], bad[3]
	if _, _, err := ParseDecoder(bad, 1088); err == nil {
		t.Error("unsorted points accepted")
	}
	if _, _, err := ParseDecoder([]byte{0xff, 0xff}, 1088); err == nil {
		t.Error("excess points accepted")
	}
}

func BenchmarkEncodeRedundantChunk(b *testing.B) {
	msg := make([]byte, 1152)
	for i := range msg {
		msg[i] = byte(i*131 + 7)
	}
	e, _ := NewEncoder(msg)
	e = Encoder{data: e.data, next: 100}
	e.Next() // computes the polynomials
	for b.Loop() {
		e.Next()
	}
}

func BenchmarkDecodeWithInterpolation(b *testing.B) {
	msg := make([]byte, 1152)
	e, _ := NewEncoder(msg)
	e = Encoder{data: e.data, next: 40}
	d, _ := NewDecoder(1152)
	for range 36 {
		var c Chunk
		c, e = e.Next()
		d = d.Add(c)
	}
	for b.Loop() {
		d.Decoded()
	}
}

func BenchmarkDecoderAdd(b *testing.B) {
	e, _ := NewEncoder(make([]byte, 1152))
	d, _ := NewDecoder(1152)
	for range 30 {
		var c Chunk
		c, e = e.Next()
		d = d.Add(c)
	}
	c, _ := e.Next()
	for b.Loop() {
		d.Add(c)
	}
}
