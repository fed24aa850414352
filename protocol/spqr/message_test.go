package spqr

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/doorless/doorless/protocol/spqr/internal/erasure"
)

// The varint vectors are the crate's (src/v1/chunked/states/serialize.rs).
func TestVarint(t *testing.T) {
	if got := appendVarint(nil, 0x012C); !bytes.Equal(got, []byte{0xAC, 0x02}) {
		t.Fatalf("encode 0x012C: %x", got)
	}
	if v, next, ok := readVarint([]byte{0xFF, 0xAC, 0x02, 0xFF}, 1); !ok || v != 0x012C || next != 3 {
		t.Fatalf("decode: %#x, %d, %v", v, next, ok)
	}
	if v, next, ok := readVarint([]byte{0x00}, 0); !ok || v != 0 || next != 1 {
		t.Fatalf("decode zero: %#x, %d, %v", v, next, ok)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		u := r.Uint64() >> r.IntN(64)
		b := appendVarint(nil, u)
		if v, next, ok := readVarint(b, 0); !ok || v != u || next != len(b) {
			t.Fatalf("round trip of %#x", u)
		}
	}
	// Ten bytes at most; bits beyond 64 are dropped as the crate does.
	ten := bytes.Repeat([]byte{0xff}, 9)
	if v, _, ok := readVarint(append(ten, 0x7f), 0); !ok || v != ^uint64(0) {
		t.Fatalf("10-byte varint: %#x, %v", v, ok)
	}
	if _, _, ok := readVarint(append(ten, 0xff, 0x01), 0); ok {
		t.Fatal("11-byte varint accepted")
	}
}

func TestMessageEncoding(t *testing.T) {
	var chunk erasure.Chunk
	chunk.Index = 300
	for i := range chunk.Data {
		chunk.Data[i] = byte(i)
	}
	data := hex.EncodeToString(chunk.Data[:])
	for _, tc := range []struct {
		m     sckaMessage
		index uint32
		want  string
	}{
		{sckaMessage{epoch: 1, typ: payloadNone}, 1, "01010100"},
		{sckaMessage{epoch: 2, typ: payloadCt1Ack}, 0x012C, "0102ac0204"},
		{sckaMessage{epoch: 1, typ: payloadHdr, chunk: chunk}, 5, "01010501ac02" + data},
		{sckaMessage{epoch: 1 << 40, typ: payloadEk, chunk: chunk}, 1, "018080808080200102ac02" + data},
		{sckaMessage{epoch: 3, typ: payloadEkCt1Ack, chunk: chunk}, 1, "01030103ac02" + data},
		{sckaMessage{epoch: 3, typ: payloadCt1, chunk: chunk}, 1, "01030105ac02" + data},
		{sckaMessage{epoch: 3, typ: payloadCt2, chunk: chunk}, ^uint32(0), "0103ffffffff0f06ac02" + data},
	} {
		b := tc.m.marshal(tc.index)
		if got := hex.EncodeToString(b); got != tc.want {
			t.Errorf("marshal(%+v, %d) = %s, want %s", tc.m, tc.index, got, tc.want)
		}
		m, index, err := parseMessage(b)
		if err != nil || m != tc.m || index != tc.index {
			t.Errorf("parse(%x) = %+v, %d, %v", b, m, index, err)
		}
	}
}
