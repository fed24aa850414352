// Package session implements Signal's one-to-one sessions, byte-compatible with libsignal
// (the npm package @signalapp/libsignal-client 0.103): PQXDH session setup (message
// version 4, a Kyber prekey required) and the triple ratchet, that is the Double Ratchet
// with SPQR, the sparse post-quantum ratchet, mixed into every message key.
//
// A Record holds everything one device knows about its sessions with one remote device:
// the current session and up to 40 archived ones, so that a message sent under an older
// session still decrypts. A Record is the unit of persistence (MarshalBinary and
// ParseRecord, in this package's own versioned format).
//
// The package does no I/O and reads no clock: time and randomness are parameters, and
// the prekeys a responder needs come through the PreKeyStore interface. Deciding whether
// to trust a remote identity key is the caller's job: Bundle.IdentityKey and
// PreKeySignalMessage.IdentityKey give it before anything is processed.
//
// A Record is not safe for concurrent use; the caller serialises operations on one
// record (one remote device). Every operation either succeeds or leaves the record as it
// was: a replayed, forged or undecryptable message changes nothing.
//
// The states of one session, and what moves it on:
//
//	(none) ──InitiateSession──► pending ──a reply decrypts──► established
//	(none) ──DecryptPreKey────────────────────────────────► established
//
// A pending session sends PreKeySignalMessages, which carry what the responder needs to
// run PQXDH; an established one sends SignalMessages. A pending session older than
// MaxUnacknowledgedSessionAge cannot send (ErrStaleSession): the caller fetches a new
// bundle. A new InitiateSession, or a PreKeySignalMessage for another session, archives
// the current session; a message that decrypts only under an archived session makes it
// current again.
package session
