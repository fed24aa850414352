//go:build ignore

// gen_rust_vectors extracts test vectors from two states serialized by the
// Rust spqr crate v1.5.3 (src/issue1275_a_state.in and
// src/issue1275_b_state.in, used by the crate's test
// regression_test_libcrux_issue_1275_from_generated_states). They are the
// states of Alex (A2B) and Blake (B2A) after 30 lockstep rounds started
// from auth key [41; 32] with default chain parameters: Blake has
// encapsulated to Alex's epoch-1 header, and neither side has the other's
// payload in full yet.
//
// Only the values named below are kept, as hex, in rust_state_vectors.json;
// the tests recompute them with this package's code.
//
// Usage, with the crate's git repository at $SPQR:
//
//	git -C $SPQR show fd320484dcec89004021e6fdc7481825f5f261fa:src/issue1275_a_state.in > /tmp/a.in
//	git -C $SPQR show fd320484dcec89004021e6fdc7481825f5f261fa:src/issue1275_b_state.in > /tmp/b.in
//	go run gen_rust_vectors.go /tmp/a.in /tmp/b.in > rust_state_vectors.json
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"os"
)

// Field numbers of the crate's state messages (src/proto/pq_ratchet.proto).
const (
	stateChain = 2 // PqRatchetState.chain
	stateV1    = 3 // PqRatchetState.v1

	chainCurrentEpoch = 2 // Chain.current_epoch
	chainLinks        = 3 // Chain.links
	chainNextRoot     = 4 // Chain.next_root
	epochSend         = 1 // Chain.Epoch.send
	epochRecv         = 2 // Chain.Epoch.recv
	dirCtr            = 1 // EpochDirection.ctr
	dirNext           = 2 // EpochDirection.next

	v1HeaderSent = 3 // V1State.header_sent (Alex)
	v1Ct1Sampled = 8 // V1State.ct1_sampled (Blake)

	chunkedUC        = 1 // Chunked.*.uc
	chunkedSending   = 2 // Chunked.HeaderSent.sending_ek, Chunked.Ct1Sampled.sending_ct1
	chunkedReceiving = 3 // Chunked.HeaderSent.receiving_ct1, Chunked.Ct1Sampled.receiving_ek

	ucEpoch    = 1 // Unchunked.*.epoch
	ucAuth     = 2 // Unchunked.*.auth
	ekSentDK   = 3 // Unchunked.EkSent.dk
	ct1SentHdr = 3 // Unchunked.Ct1Sent.hdr
	ct1SentES  = 4 // Unchunked.Ct1Sent.es
	ct1SentCt1 = 5 // Unchunked.Ct1Sent.ct1

	authRoot = 1 // Authenticator.root_key
	authMac  = 2 // Authenticator.mac_key

	encoderIdx = 1 // PolynomialEncoder.idx
	encoderPts = 2 // PolynomialEncoder.pts
	decoderPts = 3 // PolynomialDecoder.pts
)

type field struct {
	num    int
	varint uint64
	bytes  []byte
}

func parse(b []byte) []field {
	var out []field
	for len(b) > 0 {
		key, n := uvarint(b)
		b = b[n:]
		f := field{num: int(key >> 3)}
		switch key & 7 {
		case 0:
			f.varint, n = uvarint(b)
			b = b[n:]
		case 2:
			l, n := uvarint(b)
			f.bytes, b = b[n:n+int(l)], b[n+int(l):]
		default:
			log.Fatalf("unexpected wire type %d", key&7)
		}
		out = append(out, f)
	}
	return out
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	log.Fatal("truncated varint")
	return 0, 0
}

func get(b []byte, num int) field {
	for _, f := range parse(b) {
		if f.num == num {
			return f
		}
	}
	return field{num: num} // proto3 default
}

func all(b []byte, num int) [][]byte {
	var out [][]byte
	for _, f := range parse(b) {
		if f.num == num {
			out = append(out, f.bytes)
		}
	}
	return out
}

func path(b []byte, nums ...int) field {
	f := field{bytes: b}
	for _, n := range nums {
		f = get(f.bytes, n)
	}
	return f
}

// encoderMessage reassembles the message held by a PolynomialEncoder in
// Points form: pts[p] holds big-endian values p, p+16, p+32, ….
func encoderMessage(enc []byte) []byte {
	pts := all(enc, encoderPts)
	if len(pts) != 16 {
		log.Fatal("encoder not in points form")
	}
	var msg []byte
	for j := 0; 2*j < len(pts[0]); j++ {
		for p := range pts {
			msg = append(msg, pts[p][2*j:2*j+2]...)
		}
	}
	return msg
}

// decoderPrefix reassembles the message prefix covered by a
// PolynomialDecoder's points with x = 0, 1, … (4 bytes each: x, y).
func decoderPrefix(dec []byte) []byte {
	pts := all(dec, decoderPts)
	var msg []byte
	for j := 0; 4*j < len(pts[0]); j++ {
		for p := range pts {
			pt := pts[p][4*j : 4*j+4]
			if int(pt[0])<<8|int(pt[1]) != j {
				log.Fatal("decoder points are not a prefix")
			}
			msg = append(msg, pt[2:]...)
		}
	}
	return msg
}

type direction struct {
	Ctr  uint64 `json:"ctr"`
	Next string `json:"next"`
}

type link struct {
	Send direction `json:"send"`
	Recv direction `json:"recv"`
}

type party struct {
	CurrentEpoch uint64 `json:"current_epoch"`
	Links        []link `json:"links"`
	NextRoot     string `json:"next_root"`
	AuthRoot     string `json:"auth_root_key"`
	AuthMac      string `json:"auth_mac_key"`
	SCKAEpoch    uint64 `json:"scka_epoch"`
	EncoderIdx   uint64 `json:"encoder_idx"`
}

type vectors struct {
	Comment string `json:"comment"`
	AuthKey string `json:"auth_key"`
	Alex    party  `json:"alex"`
	Blake   party  `json:"blake"`
	// Alex's decapsulation key in libcrux's compressed layout
	// dk_PKE ‖ ek ‖ H(ek) ‖ z (2400 bytes).
	AlexDK string `json:"alex_dk"`
	// The encapsulation key part Alex is sending, from his encoder.
	AlexSendingEK string `json:"alex_sending_ek"`
	// The prefix of Blake's ciphertext 1 that Alex has received.
	AlexReceivedCt1Prefix string `json:"alex_received_ct1_prefix"`
	// The prefix of Alex's encapsulation key that Blake has received.
	BlakeReceivedEKPrefix string `json:"blake_received_ek_prefix"`
	// Blake's copy of Alex's header (pk1), his encapsulation randomness m
	// (the last 32 bytes of libcrux's EncapsState) and his ciphertext 1.
	BlakeHeader string `json:"blake_header"`
	BlakeM      string `json:"blake_m"`
	BlakeCt1    string `json:"blake_ct1"`
}

func readParty(state []byte, inner, ucField int) (party, []byte) {
	chain := get(state, stateChain).bytes
	p := party{
		CurrentEpoch: get(chain, chainCurrentEpoch).varint,
		NextRoot:     hex.EncodeToString(get(chain, chainNextRoot).bytes),
	}
	for _, l := range all(chain, chainLinks) {
		d := func(num int) direction {
			b := get(l, num).bytes
			return direction{Ctr: get(b, dirCtr).varint, Next: hex.EncodeToString(get(b, dirNext).bytes)}
		}
		p.Links = append(p.Links, link{Send: d(epochSend), Recv: d(epochRecv)})
	}
	chunked := path(state, stateV1, inner).bytes
	uc := get(chunked, ucField).bytes
	p.SCKAEpoch = get(uc, ucEpoch).varint
	p.AuthRoot = hex.EncodeToString(path(uc, ucAuth, authRoot).bytes)
	p.AuthMac = hex.EncodeToString(path(uc, ucAuth, authMac).bytes)
	p.EncoderIdx = path(chunked, chunkedSending, encoderIdx).varint
	return p, chunked
}

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: gen_rust_vectors a_state b_state")
	}
	a, err := os.ReadFile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	authKey := make([]byte, 32)
	for i := range authKey {
		authKey[i] = 41
	}
	v := vectors{
		Comment: "Extracted by gen_rust_vectors.go from spqr v1.5.3 src/issue1275_{a,b}_state.in",
		AuthKey: hex.EncodeToString(authKey),
	}
	var aChunked, bChunked []byte
	v.Alex, aChunked = readParty(a, v1HeaderSent, chunkedUC)
	v.Blake, bChunked = readParty(b, v1Ct1Sampled, chunkedUC)

	v.AlexDK = hex.EncodeToString(path(aChunked, chunkedUC, ekSentDK).bytes)
	v.AlexSendingEK = hex.EncodeToString(encoderMessage(get(aChunked, chunkedSending).bytes))
	v.AlexReceivedCt1Prefix = hex.EncodeToString(decoderPrefix(get(aChunked, chunkedReceiving).bytes))
	v.BlakeReceivedEKPrefix = hex.EncodeToString(decoderPrefix(get(bChunked, chunkedReceiving).bytes))

	uc := get(bChunked, chunkedUC).bytes
	es := get(uc, ct1SentES).bytes
	v.BlakeHeader = hex.EncodeToString(get(uc, ct1SentHdr).bytes)
	v.BlakeM = hex.EncodeToString(es[len(es)-32:])
	v.BlakeCt1 = hex.EncodeToString(get(uc, ct1SentCt1).bytes)

	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
}
