package spqr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"

	"github.com/doorless/doorless/protocol/internal/kdf"
)

// Domain separation labels, byte for byte as in the spqr crate v1.5.3.
const (
	// authUpdateLabel: src/authenticator.rs, Authenticator::update
	// (HKDF info, followed by the epoch as 8 big-endian bytes).
	authUpdateLabel = "Signal_PQCKA_V1_MLKEM768:Authenticator Update"
	// macCiphertextLabel: src/authenticator.rs, Authenticator::mac_ct
	// (HMAC input prefix, followed by the epoch and ct1 ‖ ct2).
	macCiphertextLabel = "Signal_PQCKA_V1_MLKEM768:ciphertext"
	// macHeaderLabel: src/authenticator.rs, Authenticator::mac_hdr (HMAC
	// input prefix, followed by the epoch and the header).
	macHeaderLabel = "Signal_PQCKA_V1_MLKEM768:ekheader"
	// sckaKeyLabel: src/v1/unchunked/send_ct.rs HeaderReceived::send_ct1 and
	// src/v1/unchunked/send_ek.rs EkSentCt1Received::recv_ct2 (HKDF info for
	// the epoch secret, followed by the epoch).
	sckaKeyLabel = "Signal_PQCKA_V1_MLKEM768:SCKA Key"
	// chainStartLabel: src/chain.rs, Chain::new. Note the two spaces.
	chainStartLabel = "Signal PQ Ratchet V1 Chain  Start"
	// chainAddEpochLabel: src/chain.rs, Chain::add_epoch.
	chainAddEpochLabel = "Signal PQ Ratchet V1 Chain Add Epoch"
	// chainNextLabel: src/chain.rs, ChainEpochDirection::next_key_internal
	// (HKDF info, preceded by the counter as 4 big-endian bytes).
	chainNextLabel = "Signal PQ Ratchet V1 Chain Next"
)

const (
	// macSize is the HMAC-SHA256 output length, src/authenticator.rs
	// Authenticator::MACSIZE.
	macSize = 32
	// keySize is the size of root, MAC, chain and message keys and epoch
	// secrets.
	keySize = 32
)

// hkdfSHA256 is HKDF-SHA256 (src/kdf.rs hkdf_to_slice) to length bytes. The crate's
// salt is 32 zero bytes ("32 is the hash output length") everywhere but in
// Chain::add_epoch; HKDF treats an empty salt the same, so callers pass nil for it.
func hkdfSHA256(salt, ikm []byte, info string, length int) []byte {
	out := make([]byte, length)
	kdf.HKDF(out, salt, ikm, []byte(info))
	return out
}

// epochInfo returns label ‖ epoch as 8 big-endian bytes.
func epochInfo(label string, epoch uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte(label), epoch))
}

// deriveEpochSecret turns an ML-KEM shared secret into the epoch secret
// (src/v1/unchunked/send_ct.rs send_ct1, send_ek.rs recv_ct2).
func deriveEpochSecret(sharedSecret []byte, epoch uint64) []byte {
	return hkdfSHA256(nil, sharedSecret, epochInfo(sckaKeyLabel, epoch), keySize)
}

// authenticator authenticates the ML-KEM header and ciphertext of each
// epoch (src/authenticator.rs). It is a value; update returns a new one.
type authenticator struct {
	rootKey [keySize]byte
	macKey  [keySize]byte
}

// newAuthenticator is Authenticator::new(auth_key, epoch 1): an
// authenticator with all-zero keys, updated with the auth key.
func newAuthenticator(authKey []byte) authenticator {
	return authenticator{}.update(initialEpoch, authKey)
}

// update mixes key k into the authenticator for epoch ep.
func (a authenticator) update(ep uint64, k []byte) authenticator {
	ikm := make([]byte, 0, keySize+len(k))
	ikm = append(append(ikm, a.rootKey[:]...), k...)
	out := hkdfSHA256(nil, ikm, epochInfo(authUpdateLabel, ep), 2*keySize)
	var next authenticator
	copy(next.rootKey[:], out[:keySize])
	copy(next.macKey[:], out[keySize:])
	return next
}

// mac is HMAC-SHA256 under the MAC key over label ‖ epoch ‖ data. The ciphertext it
// covers is longer than kdf.MaxInput, so it goes through crypto/hmac; it runs once per
// epoch.
func (a authenticator) mac(label string, ep uint64, data ...[]byte) []byte {
	h := hmac.New(sha256.New, a.macKey[:])
	h.Write([]byte(label))
	h.Write(binary.BigEndian.AppendUint64(nil, ep))
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// macHeader is Authenticator::mac_hdr.
func (a authenticator) macHeader(ep uint64, header []byte) []byte {
	return a.mac(macHeaderLabel, ep, header)
}

// macCiphertext is Authenticator::mac_ct over ct1 ‖ ct2.
func (a authenticator) macCiphertext(ep uint64, ct1, ct2 []byte) []byte {
	return a.mac(macCiphertextLabel, ep, ct1, ct2)
}

func (a authenticator) verifyHeader(ep uint64, header, mac []byte) error {
	if !hmac.Equal(a.macHeader(ep, header), mac) {
		return ErrAuthentication
	}
	return nil
}

func (a authenticator) verifyCiphertext(ep uint64, ct1, ct2, mac []byte) error {
	if !hmac.Equal(a.macCiphertext(ep, ct1, ct2), mac) {
		return ErrAuthentication
	}
	return nil
}
