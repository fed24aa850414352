package spqr

import (
	"fmt"
	"io"

	"github.com/doorless/doorless/protocol/spqr/internal/erasure"
	"github.com/doorless/doorless/protocol/spqr/internal/incmlkem"
)

// initialEpoch is the epoch both parties start in (src/v1/unchunked/send_ek.rs
// KeysUnsampled::new, send_ct.rs NoHeaderReceived::new).
const initialEpoch = 1

// Sizes of the erasure-coded payloads (src/v1/chunked/send_ek.rs, send_ct.rs).
const (
	headerPayloadSize = incmlkem.HeaderSize + macSize      // header ‖ MAC(header)
	ekPayloadSize     = incmlkem.EncapsulationKeySize      // encapsulation key
	ct1PayloadSize    = incmlkem.Ciphertext1Size           // ciphertext 1
	ct2PayloadSize    = incmlkem.Ciphertext2Size + macSize // ciphertext 2 ‖ MAC(ct1 ‖ ct2)
)

// sckaKind names the states of the sparse continuous key agreement, the
// chunked V1 state machine of src/v1/chunked/states.rs. The values are
// stable: they appear in MarshalBinary's output.
type sckaKind uint8

const (
	// send_ek side: this party generates the ML-KEM key pair of the epoch.
	kindKeysUnsampled     sckaKind = 1 // no key pair yet
	kindKeysSampled       sckaKind = 2 // sending header chunks
	kindHeaderSent        sckaKind = 3 // sending ek chunks, receiving ct1 chunks
	kindCt1Received       sckaKind = 4 // sending ek chunks (with ct1 ack)
	kindEkSentCt1Received sckaKind = 5 // sending ct1 acks, receiving ct2 chunks
	// send_ct side: this party encapsulates to the peer's key.
	kindNoHeaderReceived     sckaKind = 6  // receiving header chunks
	kindHeaderReceived       sckaKind = 7  // header received, encapsulates on next send
	kindCt1Sampled           sckaKind = 8  // sending ct1 chunks, receiving ek chunks
	kindEkReceivedCt1Sampled sckaKind = 9  // sending ct1 chunks until acknowledged
	kindCt1Acknowledged      sckaKind = 10 // receiving ek chunks
	kindCt2Sampled           sckaKind = 11 // sending ct2 chunks until the peer's next epoch
)

var kindNames = [...]string{
	kindKeysUnsampled:        "KeysUnsampled",
	kindKeysSampled:          "KeysSampled",
	kindHeaderSent:           "HeaderSent",
	kindCt1Received:          "Ct1Received",
	kindEkSentCt1Received:    "EkSentCt1Received",
	kindNoHeaderReceived:     "NoHeaderReceived",
	kindHeaderReceived:       "HeaderReceived",
	kindCt1Sampled:           "Ct1Sampled",
	kindEkReceivedCt1Sampled: "EkReceivedCt1Sampled",
	kindCt1Acknowledged:      "Ct1Acknowledged",
	kindCt2Sampled:           "Ct2Sampled",
}

func (k sckaKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("sckaKind(%d)", uint8(k))
}

// sendsKey reports whether the kind belongs to the party that generates
// the epoch's key pair.
func (k sckaKind) sendsKey() bool { return k >= kindKeysUnsampled && k <= kindEkSentCt1Received }

// scka is the state of the sparse continuous key agreement. Which of the
// data fields are set depends on kind, as listed in kindFields; the rest
// are zero. Byte slices are never modified after being stored, so copies
// of an scka share them.
type scka struct {
	kind  sckaKind
	epoch uint64
	auth  authenticator

	seed   []byte          // ML-KEM key generation seed d ‖ z (send_ek side)
	header []byte          // the peer's authenticated ML-KEM header (send_ct side)
	m      []byte          // encapsulation randomness; with header, the encapsulation state
	ek     []byte          // the peer's validated encapsulation key
	ct1    []byte          // ciphertext 1, sent or received
	enc    erasure.Encoder // the payload being sent
	dec    erasure.Decoder // the payload being received
}

// field is a bit set of scka data fields.
type field uint8

const (
	fSeed field = 1 << iota
	fHeader
	fM
	fEk
	fCt1
	fEnc
	fDec
)

// kindFields lists the data fields of each kind, with the sizes of the
// payloads its encoder sends and its decoder receives.
var kindFields = [...]struct {
	fields         field
	encLen, decLen int
}{
	kindKeysUnsampled:        {},
	kindKeysSampled:          {fSeed | fEnc, headerPayloadSize, 0},
	kindHeaderSent:           {fSeed | fEnc | fDec, ekPayloadSize, ct1PayloadSize},
	kindCt1Received:          {fSeed | fCt1 | fEnc, ekPayloadSize, 0},
	kindEkSentCt1Received:    {fSeed | fCt1 | fDec, 0, ct2PayloadSize},
	kindNoHeaderReceived:     {fDec, 0, headerPayloadSize},
	kindHeaderReceived:       {fHeader | fDec, 0, ekPayloadSize},
	kindCt1Sampled:           {fHeader | fM | fCt1 | fEnc | fDec, ct1PayloadSize, ekPayloadSize},
	kindEkReceivedCt1Sampled: {fHeader | fM | fEk | fCt1 | fEnc, ct1PayloadSize, 0},
	kindCt1Acknowledged:      {fHeader | fM | fCt1 | fDec, 0, ekPayloadSize},
	kindCt2Sampled:           {fEnc, ct2PayloadSize, 0},
}

// newSCKA is States::init_a (A2B) or States::init_b (B2A).
func newSCKA(dir Direction, authKey []byte) scka {
	s := scka{epoch: initialEpoch, auth: newAuthenticator(authKey)}
	if dir == A2B {
		s.kind = kindKeysUnsampled
	} else {
		s = s.startReceivingHeader()
	}
	return s
}

func (s scka) startReceivingHeader() scka {
	s.kind = kindNoHeaderReceived
	s.dec = mustDecoder(headerPayloadSize)
	return s
}

func mustDecoder(size int) erasure.Decoder {
	d, err := erasure.NewDecoder(size)
	if err != nil {
		panic("spqr: " + err.Error()) // sizes are constants
	}
	return d
}

func mustEncoder(payload []byte) erasure.Encoder {
	e, err := erasure.NewEncoder(payload)
	if err != nil {
		panic("spqr: " + err.Error()) // sizes are constants
	}
	return e
}

// send is States::send: the state after sending one message and the
// message's SCKA part. For the first send after receiving a header it also
// returns the new epoch's secret.
func (s scka) send(rand io.Reader) (scka, sckaMessage, *epochSecret, error) {
	msg := sckaMessage{epoch: s.epoch}
	var secret *epochSecret
	switch s.kind {
	case kindKeysUnsampled:
		// KeysUnsampled::send_hdr_chunk: sample a key pair, send its header.
		seed := make([]byte, incmlkem.SeedSize)
		if _, err := io.ReadFull(rand, seed); err != nil {
			return scka{}, msg, nil, fmt.Errorf("spqr: reading randomness: %w", err)
		}
		header, _, err := incmlkem.GenerateKey(seed)
		if err != nil {
			return scka{}, msg, nil, fmt.Errorf("spqr: generating key: %w", err)
		}
		payload := append(header, s.auth.macHeader(s.epoch, header)...)
		s = scka{kind: kindKeysSampled, epoch: s.epoch, auth: s.auth, seed: seed, enc: mustEncoder(payload)}
		msg.typ = payloadHdr
	case kindKeysSampled:
		msg.typ = payloadHdr
	case kindHeaderSent:
		msg.typ = payloadEk
	case kindCt1Received:
		msg.typ = payloadEkCt1Ack
	case kindEkSentCt1Received:
		msg.typ = payloadCt1Ack
	case kindNoHeaderReceived, kindCt1Acknowledged:
		msg.typ = payloadNone
	case kindHeaderReceived:
		// HeaderReceived::send_ct1_chunk: encapsulate; the epoch secret is
		// known now and authenticates the ciphertext sent later.
		m := make([]byte, incmlkem.RandomnessSize)
		if _, err := io.ReadFull(rand, m); err != nil {
			return scka{}, msg, nil, fmt.Errorf("spqr: reading randomness: %w", err)
		}
		ct1, ss, err := incmlkem.Encapsulate1(s.header, m)
		if err != nil {
			return scka{}, msg, nil, fmt.Errorf("%w: %v", ErrMalformedState, err)
		}
		es := deriveEpochSecret(ss, s.epoch)
		secret = &epochSecret{epoch: s.epoch, secret: es}
		s = scka{
			kind: kindCt1Sampled, epoch: s.epoch, auth: s.auth.update(s.epoch, es),
			header: s.header, m: m, ct1: ct1, enc: mustEncoder(ct1), dec: s.dec,
		}
		msg.typ = payloadCt1
	case kindCt1Sampled, kindEkReceivedCt1Sampled:
		msg.typ = payloadCt1
	case kindCt2Sampled:
		msg.typ = payloadCt2
	default:
		return scka{}, msg, nil, fmt.Errorf("%w: unknown state", ErrMalformedState)
	}
	if msg.typ.hasChunk() {
		msg.chunk, s.enc = s.enc.Next()
	}
	return s, msg, secret, nil
}

// recv is States::recv: the state after receiving a message's SCKA part
// and, when the peer's ciphertext completes, the new epoch's secret.
// Messages of earlier epochs, and payloads the state does not expect, leave
// the state unchanged.
func (s scka) recv(msg *sckaMessage) (scka, *epochSecret, error) {
	switch {
	case msg.epoch > s.epoch:
		if s.kind == kindCt2Sampled && msg.epoch == s.epoch+1 {
			// Ct2Sampled::recv_next_epoch: the peer has our ciphertext and
			// started the next epoch; now we send the key.
			return scka{kind: kindKeysUnsampled, epoch: msg.epoch, auth: s.auth}, nil, nil
		}
		return scka{}, nil, fmt.Errorf("%w: epoch %d", ErrEpochOutOfRange, msg.epoch)
	case msg.epoch < s.epoch:
		return s, nil, nil
	}

	switch s.kind {
	case kindKeysSampled:
		// KeysSampled::recv_ct1_chunk: the peer has our header; start
		// sending the encapsulation key.
		if msg.typ == payloadCt1 {
			_, ek, err := incmlkem.GenerateKey(s.seed)
			if err != nil {
				return scka{}, nil, fmt.Errorf("%w: %v", ErrMalformedState, err)
			}
			return scka{
				kind: kindHeaderSent, epoch: s.epoch, auth: s.auth, seed: s.seed,
				enc: mustEncoder(ek), dec: mustDecoder(ct1PayloadSize).Add(msg.chunk),
			}, nil, nil
		}
	case kindHeaderSent:
		if msg.typ == payloadCt1 {
			s.dec = s.dec.Add(msg.chunk)
			if ct1, ok := s.dec.Decoded(); ok {
				return scka{kind: kindCt1Received, epoch: s.epoch, auth: s.auth, seed: s.seed, ct1: ct1, enc: s.enc}, nil, nil
			}
			return s, nil, nil
		}
	case kindCt1Received:
		if msg.typ == payloadCt2 {
			return scka{
				kind: kindEkSentCt1Received, epoch: s.epoch, auth: s.auth, seed: s.seed, ct1: s.ct1,
				dec: mustDecoder(ct2PayloadSize).Add(msg.chunk),
			}, nil, nil
		}
	case kindEkSentCt1Received:
		if msg.typ == payloadCt2 {
			s.dec = s.dec.Add(msg.chunk)
			payload, ok := s.dec.Decoded()
			if !ok {
				return s, nil, nil
			}
			return s.finishEpoch(payload[:incmlkem.Ciphertext2Size], payload[incmlkem.Ciphertext2Size:])
		}
	case kindNoHeaderReceived:
		if msg.typ == payloadHdr {
			s.dec = s.dec.Add(msg.chunk)
			payload, ok := s.dec.Decoded()
			if !ok {
				return s, nil, nil
			}
			header, mac := payload[:incmlkem.HeaderSize], payload[incmlkem.HeaderSize:]
			if err := s.auth.verifyHeader(s.epoch, header, mac); err != nil {
				return scka{}, nil, fmt.Errorf("%w: header MAC, epoch %d", err, s.epoch)
			}
			return scka{
				kind: kindHeaderReceived, epoch: s.epoch, auth: s.auth, header: header,
				dec: mustDecoder(ekPayloadSize),
			}, nil, nil
		}
	case kindCt1Sampled:
		if msg.typ == payloadEk || msg.typ == payloadEkCt1Ack {
			acked := msg.typ == payloadEkCt1Ack
			s.dec = s.dec.Add(msg.chunk)
			ek, ok := s.dec.Decoded()
			switch {
			case ok:
				return s.withEk(ek, acked)
			case acked:
				return scka{
					kind: kindCt1Acknowledged, epoch: s.epoch, auth: s.auth,
					header: s.header, m: s.m, ct1: s.ct1, dec: s.dec,
				}, nil, nil
			}
			return s, nil, nil
		}
	case kindEkReceivedCt1Sampled:
		if msg.typ == payloadCt1Ack || msg.typ == payloadEkCt1Ack {
			return s.sendCt2()
		}
	case kindCt1Acknowledged:
		// Out-of-order delivery can bring plain ek chunks after an ack.
		if msg.typ == payloadEk || msg.typ == payloadEkCt1Ack {
			s.dec = s.dec.Add(msg.chunk)
			if ek, ok := s.dec.Decoded(); ok {
				return s.withEk(ek, true)
			}
			return s, nil, nil
		}
	}
	return s, nil, nil
}

// withEk handles a fully received encapsulation key in state Ct1Sampled or
// Ct1Acknowledged (Ct1Sent::recv_ek). If the peer has acknowledged
// ciphertext 1, ciphertext 2 is sent next; otherwise ciphertext 1 is sent
// until it is acknowledged, in state EkReceivedCt1Sampled.
func (s scka) withEk(ek []byte, acked bool) (scka, *epochSecret, error) {
	if err := incmlkem.ValidateEncapsulationKey(s.header, ek); err != nil {
		return scka{}, nil, fmt.Errorf("%w: epoch %d: %v", ErrBadEncapsulationKey, s.epoch, err)
	}
	s = scka{
		kind: kindEkReceivedCt1Sampled, epoch: s.epoch, auth: s.auth,
		header: s.header, m: s.m, ek: ek, ct1: s.ct1, enc: s.enc,
	}
	if acked {
		return s.sendCt2()
	}
	return s, nil, nil
}

// sendCt2 completes the encapsulation (Ct1SentEkReceived::send_ct2) and
// starts sending ciphertext 2 with its MAC.
func (s scka) sendCt2() (scka, *epochSecret, error) {
	ct2, err := incmlkem.Encapsulate2(s.header, s.m, s.ek)
	if err != nil {
		return scka{}, nil, fmt.Errorf("%w: %v", ErrMalformedState, err)
	}
	payload := append(ct2, s.auth.macCiphertext(s.epoch, s.ct1, ct2)...)
	return scka{kind: kindCt2Sampled, epoch: s.epoch, auth: s.auth, enc: mustEncoder(payload)}, nil, nil
}

// finishEpoch decapsulates the peer's ciphertext and checks its MAC
// (EkSentCt1Received::recv_ct2), ending the epoch on the send_ek side.
func (s scka) finishEpoch(ct2, mac []byte) (scka, *epochSecret, error) {
	ss, err := incmlkem.Decapsulate(s.seed, s.ct1, ct2)
	if err != nil {
		return scka{}, nil, fmt.Errorf("%w: %v", ErrMalformedState, err)
	}
	es := deriveEpochSecret(ss, s.epoch)
	auth := s.auth.update(s.epoch, es)
	if err := auth.verifyCiphertext(s.epoch, s.ct1, ct2, mac); err != nil {
		return scka{}, nil, fmt.Errorf("%w: ciphertext MAC, epoch %d", err, s.epoch)
	}
	next := scka{epoch: s.epoch + 1, auth: auth}.startReceivingHeader()
	return next, &epochSecret{epoch: s.epoch, secret: es}, nil
}
