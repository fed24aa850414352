package spqr

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
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

// zeroSalt is the HKDF salt the crate uses everywhere except in
// Chain::add_epoch: 32 zero bytes ("32 is the hash output length").
var zeroSalt = make([]byte, sha256.Size)

// hkdfSHA256 is HKDF-SHA256 (RFC 5869), src/kdf.rs hkdf_to_slice.
func hkdfSHA256(salt, ikm []byte, info string, length int) []byte {
	out, err := hkdf.Key(sha256.New, ikm, salt, info, length)
	if err != nil {
		// Only possible for lengths above 255·32 bytes, which no caller uses.
		panic("spqr: " + err.Error())
	}
	return out
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) with a 32-byte key over a message of
// at most hmacMaxMessage bytes, computed without allocating.
func hmacSHA256(key *[sha256.Size]byte, msg []byte) [sha256.Size]byte {
	var inner [sha256.BlockSize + hmacMaxMessage]byte
	var outer [sha256.BlockSize + sha256.Size]byte
	for i := range sha256.BlockSize {
		inner[i], outer[i] = 0x36, 0x5c // ipad, opad
	}
	for i, k := range key {
		inner[i] ^= k
		outer[i] ^= k
	}
	n := copy(inner[sha256.BlockSize:], msg)
	h := sha256.Sum256(inner[:sha256.BlockSize+n])
	copy(outer[sha256.BlockSize:], h[:])
	return sha256.Sum256(outer[:])
}

const hmacMaxMessage = 128

// hkdf64 is hkdfSHA256(zeroSalt, ikm, info, 64) for info of at most
// hmacMaxMessage-33 bytes, computed without allocating. It serves the chain
// step, which runs for every message.
func hkdf64(ikm *[keySize]byte, info []byte) [2 * sha256.Size]byte {
	// Extract: the zero salt is the HMAC key.
	prk := hmacSHA256(&[sha256.Size]byte{}, ikm[:])
	// Expand: T(1) = HMAC(PRK, info ‖ 1), T(2) = HMAC(PRK, T(1) ‖ info ‖ 2).
	var buf [hmacMaxMessage]byte
	n := copy(buf[:], info)
	buf[n] = 1
	t1 := hmacSHA256(&prk, buf[:n+1])
	copy(buf[sha256.Size:], info)
	copy(buf[:], t1[:])
	buf[sha256.Size+n] = 2
	t2 := hmacSHA256(&prk, buf[:sha256.Size+n+1])
	var out [2 * sha256.Size]byte
	copy(out[:], t1[:])
	copy(out[sha256.Size:], t2[:])
	return out
}

// epochInfo returns label ‖ epoch as 8 big-endian bytes.
func epochInfo(label string, epoch uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte(label), epoch))
}

// deriveEpochSecret turns an ML-KEM shared secret into the epoch secret
// (src/v1/unchunked/send_ct.rs send_ct1, send_ek.rs recv_ct2).
func deriveEpochSecret(sharedSecret []byte, epoch uint64) []byte {
	return hkdfSHA256(zeroSalt, sharedSecret, epochInfo(sckaKeyLabel, epoch), keySize)
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
	out := hkdfSHA256(zeroSalt, ikm, epochInfo(authUpdateLabel, ep), 2*keySize)
	var next authenticator
	copy(next.rootKey[:], out[:keySize])
	copy(next.macKey[:], out[keySize:])
	return next
}

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
