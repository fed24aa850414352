// Package erasure implements the systematic polynomial erasure code that
// SPQR V1 uses to send a message (a public key or ciphertext) in 32-byte
// chunks, one per ratchet message, so that any sufficiently large set of
// distinct chunks reconstructs it (spqr src/encoding/polynomial.rs,
// PolyEncoder and PolyDecoder).
//
// A message of L bytes (L even) is read as L/2 big-endian 16-bit values
// v₀, v₁, …; value v_k belongs to polynomial p = k mod 16 at position
// j = ⌊k/16⌋. Polynomial f_p over GF(2¹⁶) is the unique polynomial of degree
// below n_p (the number of values of p) with f_p(j) = v_{16j+p}. Chunk number
// i carries f_0(i), …, f_15(i), each as two big-endian bytes, so chunks
// 0, 1, … first carry the message itself and then redundancy; any n_p chunks
// with distinct numbers determine f_p.
//
// Encoders and decoders are values that are never modified in place: Next
// and Add return the successor. They are safe for concurrent use.
package erasure

import (
	"encoding/binary"
	"errors"
	"sort"
	"sync"
)

// ChunkSize is the number of message bytes in a chunk (spqr
// src/encoding/polynomial.rs CHUNK_SIZE).
const ChunkSize = 32

// numPolys is the number of interleaved polynomials, one per 16-bit field
// element of a chunk (spqr src/encoding/polynomial.rs NUM_POLYS).
const numPolys = ChunkSize / 2

// MaxMessageSize is the largest message the code accepts: 2¹⁶ values per
// polynomial (spqr PolyEncoder::encode_bytes_base, MessageLengthTooLong).
const MaxMessageSize = 1 << 16 * numPolys

// A Chunk is one piece of an encoded message.
type Chunk struct {
	Index uint16
	Data  [ChunkSize]byte
}

var (
	errOddLength = errors.New("erasure: message length must be even")
	errTooLong   = errors.New("erasure: message too long")
	errMalformed = errors.New("erasure: malformed serialized coder")
)

// valuesOf returns n_p, the number of values of polynomial p in a message of
// numValues 16-bit values.
func valuesOf(numValues, p int) int {
	if numValues <= p {
		return 0
	}
	return (numValues - p + numPolys - 1) / numPolys
}

// An Encoder produces the chunks of one message in order. The zero Encoder
// is not usable; create one with NewEncoder.
type Encoder struct {
	data *encoderData
	next uint32 // number of the next chunk, modulo 2¹⁶ on the wire (spqr PolyEncoder.idx)
}

// encoderData is shared, unchanging, by all successors of an Encoder.
type encoderData struct {
	msg []byte
	// coeffs holds the coefficients of f_0 … f_15, computed the first time
	// a chunk beyond the message itself is needed: coeffs()[i][p] is the
	// coefficient of xⁱ in f_p (zero for i ≥ n_p).
	coeffs func() [][numPolys]uint16
}

// NewEncoder returns an encoder for a copy of msg, positioned at chunk 0.
func NewEncoder(msg []byte) (Encoder, error) {
	return restoreEncoder(msg, 0)
}

func restoreEncoder(msg []byte, next uint32) (Encoder, error) {
	if len(msg)%2 != 0 {
		return Encoder{}, errOddLength
	}
	if len(msg) > MaxMessageSize {
		return Encoder{}, errTooLong
	}
	d := &encoderData{msg: append([]byte(nil), msg...)}
	d.coeffs = sync.OnceValue(d.interpolate)
	return Encoder{data: d, next: next}, nil
}

// Next returns the next chunk and the encoder positioned after it. Like the
// crate, the chunk counter wraps around after 2³² chunks and the chunk
// number after 2¹⁶.
func (e Encoder) Next() (Chunk, Encoder) {
	c := e.chunk(uint16(e.next))
	e.next++
	return c, e
}

// Len returns the length of the encoded message in bytes.
func (e Encoder) Len() int { return len(e.data.msg) }

func (e Encoder) chunk(idx uint16) Chunk {
	c := Chunk{Index: idx}
	if 16*int(idx) < len(e.data.msg)/2 {
		// Chunk idx carries value 16·idx + p for every p with n_p > idx,
		// which holds for p = 0; copy those values, evaluate the rest.
		n := copy(c.Data[:], e.data.msg[ChunkSize*int(idx):])
		if n == ChunkSize {
			return c
		}
	}
	// Evaluate all polynomials at once (Horner's rule); interleaving the
	// 16 independent dependency chains keeps the CPU busy.
	x := newMulBy(idx)
	var acc [numPolys]uint16
	coeffs := e.data.coeffs()
	for i := len(coeffs) - 1; i >= 0; i-- {
		for p := range acc {
			acc[p] = x.mul(acc[p]) ^ coeffs[i][p]
		}
	}
	numValues := len(e.data.msg) / 2
	for p := range numPolys {
		if int(idx) >= valuesOf(numValues, p) {
			binary.BigEndian.PutUint16(c.Data[2*p:], acc[p])
		}
	}
	return c
}

func (d *encoderData) interpolate() [][numPolys]uint16 {
	t := tables()
	numValues := len(d.msg) / 2
	coeffs := make([][numPolys]uint16, valuesOf(numValues, 0))
	for p := range numPolys {
		pts := make([]point, valuesOf(numValues, p))
		for j := range pts {
			pts[j] = point{x: uint16(j), y: binary.BigEndian.Uint16(d.msg[2*(j*numPolys+p):])}
		}
		for i, c := range t.interpolate(pts) {
			coeffs[i][p] = c
		}
	}
	return coeffs
}

// point is an evaluation f(x) = y.
type point struct{ x, y uint16 }

// interpolate returns the coefficients, lowest degree first, of the unique
// polynomial of degree below len(pts) through pts, whose x values must be
// distinct (Lagrange interpolation).
func (t *gfTables) interpolate(pts []point) []uint16 {
	m := len(pts)
	coeffs := make([]uint16, m)
	if m == 0 {
		return coeffs
	}
	// master(x) = ∏ (x − x_j), degree m. In characteristic 2, − is +.
	master := make([]uint16, m+1)
	master[0] = 1
	for j, pt := range pts {
		// master *= (x + x_j), over the j+1 coefficients set so far.
		for i := j + 1; i > 0; i-- {
			master[i] = master[i-1] ^ t.mul(master[i], pt.x)
		}
		master[0] = t.mul(master[0], pt.x)
	}
	quot := make([]uint16, m)
	for i, pi := range pts {
		// quot = master / (x − x_i) by synthetic division.
		quot[m-1] = master[m]
		for d := m - 1; d > 0; d-- {
			quot[d-1] = master[d] ^ t.mul(pi.x, quot[d])
		}
		denom := uint16(1)
		for j, pj := range pts {
			if j != i {
				denom = t.mul(denom, pi.x^pj.x)
			}
		}
		scale := t.div(pi.y, denom)
		for d := range coeffs {
			coeffs[d] ^= t.mul(scale, quot[d])
		}
	}
	return coeffs
}

// eval evaluates the polynomial with the given coefficients, lowest degree
// first, at the multiplier's element (Horner's rule).
func (x *mulBy) eval(coeffs []uint16) uint16 {
	var acc uint16
	for i := len(coeffs) - 1; i >= 0; i-- {
		acc = x.mul(acc) ^ coeffs[i]
	}
	return acc
}

// A Decoder collects chunks of one message of known length until it can be
// reconstructed. The zero Decoder is not usable; create one with NewDecoder.
type Decoder struct {
	s *decoderState // never modified once the Decoder is returned
}

type decoderState struct {
	numValues int // spqr PolyDecoder.pts_needed
	// pts[p] holds received points of f_p, sorted by x, without repeated x.
	pts [numPolys][]point
}

// NewDecoder returns a decoder for a message of lenBytes bytes.
func NewDecoder(lenBytes int) (Decoder, error) {
	if lenBytes%2 != 0 {
		return Decoder{}, errOddLength
	}
	if lenBytes > MaxMessageSize {
		return Decoder{}, errTooLong
	}
	return Decoder{&decoderState{numValues: lenBytes / 2}}, nil
}

// Len returns the length of the message being decoded in bytes.
func (d Decoder) Len() int { return 2 * d.s.numValues }

// needed is the number of points of f_p required to reconstruct it
// (spqr PolyDecoder::necessary_points).
func (d *decoderState) needed(p int) int { return valuesOf(d.numValues, p) }

// Add returns the decoder with chunk c added. As the crate does, a point is
// kept only if it is part of the message itself (x < needed) or if too few
// points are known yet, which bounds the decoder to 2·needed points per
// polynomial; a point with an x already known replaces the old one.
func (d Decoder) Add(c Chunk) Decoder {
	old := d.s
	next := &decoderState{numValues: old.numValues}
	total := 0
	for p := range old.pts {
		total += len(old.pts[p]) + 1
	}
	backing := make([]point, total)
	used := 0
	for p, pts := range old.pts {
		cur := backing[used : used+len(pts)+1]
		n := copy(cur, pts)
		if need := old.needed(p); int(c.Index) < need || len(pts) < need {
			n = insertPoint(cur, n, point{x: c.Index, y: binary.BigEndian.Uint16(c.Data[2*p:])})
		}
		next.pts[p] = cur[:n:n]
		used += n
	}
	return Decoder{next}
}

// insertPoint puts pt into the sorted pts[:n], which has room for one more
// point, replacing a point with the same x, and returns the new length.
func insertPoint(pts []point, n int, pt point) int {
	i := n
	for i > 0 && pts[i-1].x > pt.x { // chunks usually arrive in order: scan from the end
		i--
	}
	if i > 0 && pts[i-1].x == pt.x {
		pts[i-1] = pt
		return n
	}
	copy(pts[i+1:n+1], pts[i:n])
	pts[i] = pt
	return n + 1
}

// Decoded returns the message if enough chunks have been added.
func (d Decoder) Decoded() ([]byte, bool) {
	s := d.s
	for p := range s.pts {
		if len(s.pts[p]) < s.needed(p) {
			return nil, false
		}
	}
	var polys [numPolys][]uint16
	out := make([]byte, 2*s.numValues)
	for k := range s.numValues {
		p, x := k%numPolys, uint16(k/numPolys)
		pts := s.pts[p]
		i := sort.Search(len(pts), func(i int) bool { return pts[i].x >= x })
		var y uint16
		if i < len(pts) && pts[i].x == x {
			y = pts[i].y
		} else {
			if polys[p] == nil {
				// Like the crate, interpolate through the points with the
				// smallest x.
				polys[p] = tables().interpolate(pts[:s.needed(p)])
			}
			y = newMulBy(x).eval(polys[p])
		}
		binary.BigEndian.PutUint16(out[2*k:], y)
	}
	return out, true
}

// AppendBinary appends the encoder's state to b: the 4-byte big-endian chunk
// counter, then the message.
func (e Encoder) AppendBinary(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, e.next)
	return append(b, e.data.msg...)
}

// ParseEncoder reads, from the front of b, an encoder written by
// AppendBinary for a message of msgLen bytes, and returns the rest of b.
func ParseEncoder(b []byte, msgLen int) (Encoder, []byte, error) {
	if msgLen < 0 || len(b) < 4+msgLen {
		return Encoder{}, nil, errMalformed
	}
	e, err := restoreEncoder(b[4:4+msgLen], binary.BigEndian.Uint32(b))
	if err != nil {
		return Encoder{}, nil, err
	}
	return e, b[4+msgLen:], nil
}

// AppendBinary appends the decoder's points to b: for each polynomial a
// 2-byte big-endian count, then that many (x, y) pairs of 2-byte big-endian
// values.
func (d Decoder) AppendBinary(b []byte) []byte {
	for _, pts := range d.s.pts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(pts)))
		for _, pt := range pts {
			b = binary.BigEndian.AppendUint16(b, pt.x)
			b = binary.BigEndian.AppendUint16(b, pt.y)
		}
	}
	return b
}

// ParseDecoder reads, from the front of b, a decoder written by AppendBinary
// for a message of msgLen bytes, and returns the rest of b. It rejects point
// sets that Add cannot produce: unsorted or repeated x values, or more than
// 2·needed points for a polynomial.
func ParseDecoder(b []byte, msgLen int) (Decoder, []byte, error) {
	d, err := NewDecoder(msgLen)
	if err != nil || msgLen < 0 {
		return Decoder{}, nil, errMalformed
	}
	s := d.s
	for p := range s.pts {
		if len(b) < 2 {
			return Decoder{}, nil, errMalformed
		}
		count := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if count > 2*s.needed(p) || len(b) < 4*count {
			return Decoder{}, nil, errMalformed
		}
		pts := make([]point, count)
		for i := range pts {
			pts[i] = point{x: binary.BigEndian.Uint16(b[4*i:]), y: binary.BigEndian.Uint16(b[4*i+2:])}
			if i > 0 && pts[i].x <= pts[i-1].x {
				return Decoder{}, nil, errMalformed
			}
		}
		s.pts[p] = pts
		b = b[4*count:]
	}
	return d, b, nil
}
