package spqr

import (
	"fmt"

	"github.com/doorless/doorless/protocol/spqr/internal/erasure"
)

// protocolVersionV1 is the first byte of every V1 message (spqr
// pq_ratchet.proto enum Version, V_1 = 1; src/lib.rs msg_version).
const protocolVersionV1 = 1

// payloadType is the message type byte (src/v1/chunked/states/serialize.rs
// enum MessageType).
type payloadType uint8

const (
	payloadNone     payloadType = 0 // no payload
	payloadHdr      payloadType = 1 // chunk of header ‖ header MAC
	payloadEk       payloadType = 2 // chunk of the encapsulation key
	payloadEkCt1Ack payloadType = 3 // chunk of the encapsulation key; ct1 fully received
	payloadCt1Ack   payloadType = 4 // ct1 fully received, no chunk
	payloadCt1      payloadType = 5 // chunk of ciphertext 1
	payloadCt2      payloadType = 6 // chunk of ciphertext 2 ‖ ciphertext MAC
)

func (t payloadType) hasChunk() bool {
	switch t {
	case payloadHdr, payloadEk, payloadEkCt1Ack, payloadCt1, payloadCt2:
		return true
	}
	return false
}

// maxVarintLen is MAX_VARINT_BYTES_LEN (src/v1/chunked/states/serialize.rs).
const maxVarintLen = 10

// sckaMessage is a decoded V1 message without its key index
// (src/v1/chunked/states.rs Message).
type sckaMessage struct {
	epoch uint64 // never 0
	typ   payloadType
	chunk erasure.Chunk // valid if typ.hasChunk()
}

// marshal encodes the message (Message::serialize):
//
//	version       1 byte, 0x01
//	epoch         varint
//	index         varint (the message key's index in its epoch's chain)
//	type          1 byte
//	chunk index   varint, for types with a chunk
//	chunk data    32 bytes, for types with a chunk
//
// Varints are little-endian base-128, as in protobuf.
func (m *sckaMessage) marshal(index uint32) []byte {
	b := make([]byte, 0, 1+maxVarintLen+5+1+3+erasure.ChunkSize)
	b = append(b, protocolVersionV1)
	b = appendVarint(b, m.epoch)
	b = appendVarint(b, uint64(index))
	b = append(b, byte(m.typ))
	if m.typ.hasChunk() {
		b = appendVarint(b, uint64(m.chunk.Index))
		b = append(b, m.chunk.Data[:]...)
	}
	return b
}

// parseMessage decodes a V1 message (Message::deserialize). Like the crate,
// it ignores bytes after the message, which are reserved for later
// protocol versions.
func parseMessage(b []byte) (sckaMessage, uint32, error) {
	var m sckaMessage
	if len(b) == 0 || b[0] != protocolVersionV1 {
		return m, 0, fmt.Errorf("%w: not a V1 message", ErrMalformedMessage)
	}
	at := 1
	epoch, at, ok := readVarint(b, at)
	if !ok || epoch == 0 {
		return m, 0, fmt.Errorf("%w: bad epoch", ErrMalformedMessage)
	}
	index, at, ok := readVarint(b, at)
	if !ok || index > uint64(^uint32(0)) {
		return m, 0, fmt.Errorf("%w: bad index", ErrMalformedMessage)
	}
	if at >= len(b) || b[at] > byte(payloadCt2) {
		return m, 0, fmt.Errorf("%w: bad type", ErrMalformedMessage)
	}
	m.epoch, m.typ = epoch, payloadType(b[at])
	at++
	if m.typ.hasChunk() {
		chunkIndex, at, ok := readVarint(b, at)
		if !ok || chunkIndex > 0xffff || len(b)-at < erasure.ChunkSize {
			return m, 0, fmt.Errorf("%w: bad chunk", ErrMalformedMessage)
		}
		m.chunk.Index = uint16(chunkIndex)
		copy(m.chunk.Data[:], b[at:])
	}
	return m, uint32(index), nil
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// readVarint decodes a varint at b[at:] exactly as the crate's
// decode_varint does: at most 10 bytes, non-minimal encodings accepted, and
// bits beyond 64 silently dropped.
func readVarint(b []byte, at int) (v uint64, next int, ok bool) {
	for i := 0; i < maxVarintLen && at+i < len(b); i++ {
		c := b[at+i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, at + i + 1, true
		}
	}
	return 0, at, false
}
