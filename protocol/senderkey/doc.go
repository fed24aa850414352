// Package senderkey implements Signal's sender keys, the group-messaging scheme in which
// a sender encrypts a message once for every member of a group, byte-compatible with
// libsignal (the npm package @signalapp/libsignal-client 0.103: group_cipher.rs and
// sender_keys.rs).
//
// A sender owns a chain: a 31-bit chain id, a 32-byte chain key that is stepped with
// HMAC-SHA256 after every message, and a Curve25519 signing key pair. It hands the chain
// (id, current iteration, chain key, public signing key) to each member in a
// DistributionMessage, sent over the members' one-to-one sessions. Every group message is
// then a Message: AES-256-CBC under a key derived from the chain at one iteration,
// signed with XEdDSA by the signing key. Members can follow the chain forward from the
// iteration they were given, never backward.
//
// A Record holds what one device knows of one sender's chains in one distribution (a
// DistributionID, a UUID that names a group's sender key): up to MaxStates chains,
// newest first. The sender's own record holds its private signing key and encrypts; a
// member's record of that sender decrypts. Records are the unit of persistence
// (MarshalBinary and ParseRecord, in this package's own versioned format).
//
// The package does no I/O and reads no clock; randomness is a parameter (nil means
// crypto/rand). A Record is not safe for concurrent use: the caller serialises the
// operations on one record. Every operation either succeeds or leaves the record as it
// was: a replayed, forged, undecryptable or too-far-ahead message changes nothing.
//
// The life of a record, and what moves it on:
//
//	sender:    empty ──DistributionMessage──► own chain ──Encrypt──► own chain (iteration+1)
//	           own chain ──Rotate──► new own chain (the old one is forgotten)
//	receiver:  empty ──Process──► 1 chain ──Process (new chain id)──► 2 chains ... ≤ MaxStates
//	           a chain ──Decrypt──► the same chain, advanced or with a skipped key used up
//
// Rotation (after a member leaves) is the sender's Rotate, then a new DistributionMessage
// to the remaining members only: the departed member's record knows the old chain id
// alone, so messages on the new chain fail for it with ErrNoSenderKeyState.
package senderkey
