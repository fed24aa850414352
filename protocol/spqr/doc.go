// Package spqr implements SPQR, the Sparse Post-Quantum Ratchet, protocol
// version V1, byte-compatible on the wire and in derived keys with Signal's
// Rust spqr crate v1.5.3 as used by libsignal 0.101–0.103.
//
// # What SPQR does
//
// SPQR runs beside the Double Ratchet. Every message carries a few dozen
// bytes of SPQR data (the SignalMessage pq_ratchet field) and gets a 32-byte
// SPQR message key, which the Double Ratchet mixes into the message's keys.
// In the background the two parties run an ML-KEM-768 key agreement, one
// epoch at a time: the party in the "send_ek" role generates a key pair and
// sends its public key, the party in the "send_ct" role encapsulates to it,
// and both derive the epoch's secret. Public key and ciphertext are too big
// for one message, so they travel in 32-byte chunks of a polynomial erasure
// code over GF(2¹⁶) (package internal/erasure): any sufficiently large set of
// chunks reconstructs them, whatever was lost. Libcrux's incremental
// ML-KEM-768 (package internal/incmlkem) lets encapsulation start once a
// 64-byte header has arrived, before the rest of the key. Each epoch secret
// feeds a chain (chain.go) that derives per-message keys for both
// directions, with out-of-order keys kept for a while. An authenticator
// (kdf.go), keyed from the PQXDH secret and every epoch secret, MACs the
// header and the ciphertext.
//
// # What is implemented
//
// This package implements exactly what libsignal uses: spqr::initial_state
// with version = min_version = V1, spqr::send and spqr::recv. The version
// negotiation paths of the crate (falling back to V0, which has no SPQR
// data) are not implemented: Recv rejects an empty message or one of
// version 0 with ErrUnsupportedVersion, as the crate does in this
// configuration (Error::MinimumVersion or VersionMismatch). A message of a
// version above 1 is also rejected with ErrUnsupportedVersion, where the
// crate would ignore its SPQR data and return no key; no libsignal release
// sends such messages. MarshalBinary uses this package's own format, not
// the crate's protobuf state.
//
// # Wire format
//
// The pq_ratchet bytes of a message are (src/v1/chunked/states/serialize.rs):
//
//	0x01                 version V1
//	epoch                varint (protobuf-style, little-endian base 128), ≥ 1
//	index                varint, the message key's index in its chain
//	type                 1 byte: 0 none, 1 header chunk, 2 ek chunk,
//	                     3 ek chunk + ct1 ack, 4 ct1 ack, 5 ct1 chunk, 6 ct2 chunk
//	chunk number         varint < 2¹⁶, for types 1, 2, 3, 5, 6
//	chunk data           32 bytes, for types 1, 2, 3, 5, 6
//
// Bytes after that are ignored, as the crate reserves them for later
// versions. A message of epoch e uses the chain keys of epoch e-1.
//
// The erasure-coded payloads are the header ρ ‖ H(ek) followed by its MAC
// (96 bytes), the encapsulation key ByteEncode₁₂(t̂) (1152 bytes), ciphertext
// 1 (960 bytes), and ciphertext 2 followed by the MAC of ct1 ‖ ct2 (160
// bytes).
//
// # Key derivation
//
// All KDFs are HKDF-SHA256; "salt 0" is 32 zero bytes; epochs are 8 and
// counters 4 big-endian bytes (labels in kdf.go):
//
//	authenticator(0) = root 0, MAC key 0; update(ep, k):
//	    root ‖ mac = HKDF(salt 0, root ‖ k, authUpdateLabel ‖ ep, 64)
//	initially update(1, auth key)
//	header MAC     = HMAC(mac, macHeaderLabel ‖ ep ‖ header)
//	ciphertext MAC = HMAC(mac, macCiphertextLabel ‖ ep ‖ ct1 ‖ ct2),
//	                 computed after update(ep, epoch secret)
//	epoch secret   = HKDF(salt 0, ML-KEM shared secret, sckaKeyLabel ‖ ep, 32)
//	chain start    = HKDF(salt 0, auth key, chainStartLabel, 96)
//	add epoch      = HKDF(salt next root, epoch secret, chainAddEpochLabel, 96)
//	                 = next root ‖ A2B chain key ‖ B2A chain key
//	chain step     = HKDF(salt 0, chain key, counter ‖ chainNextLabel, 64)
//	                 = next chain key ‖ message key
//
// # State machine
//
// The roles alternate: A2B (the initiator) has the send_ek role in odd
// epochs, B2A in even ones. Both start in epoch 1. "send:" and "recv:" name
// what moves a state on; every state also sends and accepts messages that
// do not move it. A message of an earlier epoch only yields its key; one of
// a later epoch is rejected, except as noted.
//
//	send_ek role                          send_ct role
//
//	KeysUnsampled                         NoHeaderReceived
//	 │ send: new key pair,                 │ recv: header complete, MAC valid
//	 │ first header chunk                  ▼
//	 ▼                                    HeaderReceived
//	KeysSampled                            │ send: encapsulate (part 1); epoch
//	 │ sends header chunks                 │ secret → chain; first ct1 chunk
//	 │ recv: a ct1 chunk                   ▼
//	 ▼                                    Ct1Sampled ────────────────┐
//	HeaderSent                             │ sends ct1 chunks        │ recv: ct1 ack,
//	 │ sends ek chunks                     │ recv: ek complete,      │ ek incomplete
//	 │ recv: ct1 complete                  │ no ct1 ack              ▼
//	 ▼                                     ▼                        Ct1Acknowledged
//	Ct1Received                           EkReceivedCt1Sampled       │ sends no payload
//	 │ sends ek chunks with ct1 ack        │ sends ct1 chunks        │ recv: ek complete
//	 │ recv: a ct2 chunk                   │ recv: ct1 ack           │
//	 ▼                                     ▼                         │
//	EkSentCt1Received                     Ct2Sampled ◀───────────────┘
//	 │ sends ct1 acks                      │ (also from Ct1Sampled when the ek
//	 │ recv: ct2 complete, MAC valid;      │ completes with a ct1 ack)
//	 │ epoch secret → chain                │ sends ct2 chunks
//	 │                                     │ recv: a message of epoch+1
//	 ▼                                     ▼
//	NoHeaderReceived, epoch+1             KeysUnsampled, epoch+1
//	(send_ct role)                        (send_ek role)
//
// Entering Ct2Sampled completes the encapsulation (part 2) after checking
// the key against the authenticated header.
//
// # Concurrency and memory
//
// A State is immutable: Send and Recv return a new State and never modify
// the receiver, so a State is safe for concurrent use, and a caller can
// keep an old state after a later check fails. New states share unchanged
// data (payloads, coders, skipped keys) with the old ones. Because memory
// is shared, key material in discarded states is left to the garbage
// collector instead of being zeroed.
package spqr
