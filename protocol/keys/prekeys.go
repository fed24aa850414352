package keys

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// MaxRegistrationID is the largest registration id libsignal's KeyHelper makes; ids are
// 14-bit values from 1 to MaxRegistrationID.
const MaxRegistrationID = 16380

// GenerateRegistrationID returns a random registration id in [1, MaxRegistrationID],
// the range libsignal's generateRegistrationId uses. Randomness comes from r
// (crypto/rand when nil).
func GenerateRegistrationID(r io.Reader) (uint32, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [4]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("keys: reading randomness: %w", err)
		}
		// Rejection sampling over 14 bits keeps the distribution uniform.
		if id := binary.LittleEndian.Uint32(b[:]) & 0x3fff; id >= 1 && id <= MaxRegistrationID {
			return id, nil
		}
	}
}

// PreKey is a one-time Curve25519 prekey.
type PreKey struct {
	ID      uint32
	KeyPair KeyPair
}

// GeneratePreKey makes a one-time prekey with the given id.
func GeneratePreKey(id uint32, r io.Reader) (*PreKey, error) {
	kp, err := GenerateKeyPair(r)
	if err != nil {
		return nil, err
	}
	return &PreKey{ID: id, KeyPair: kp}, nil
}

// SignedPreKey is a medium-term Curve25519 prekey signed by the identity key. The
// signature covers the serialized public key (type byte included), as in libsignal.
type SignedPreKey struct {
	ID        uint32
	Timestamp time.Time
	KeyPair   KeyPair
	Signature []byte
}

// GenerateSignedPreKey makes a signed prekey with the given id, signed by identity.
func GenerateSignedPreKey(identity *PrivateKey, id uint32, now time.Time, r io.Reader) (*SignedPreKey, error) {
	kp, err := GenerateKeyPair(r)
	if err != nil {
		return nil, err
	}
	sig, err := identity.Sign(r, kp.Public.Bytes())
	if err != nil {
		return nil, err
	}
	return &SignedPreKey{ID: id, Timestamp: now, KeyPair: kp, Signature: sig}, nil
}

// KyberPreKey is a signed KEM prekey. One-time keys are deleted after use; a last-resort
// key stays and may be used by many sessions. The signature covers the serialized KEM
// public key (type byte included), as in libsignal.
type KyberPreKey struct {
	ID         uint32
	Timestamp  time.Time
	KeyPair    KEMKeyPair
	Signature  []byte
	LastResort bool
}

// GenerateKyberPreKey makes a signed KEM prekey of type typ (KEMKyber1024 is libsignal's
// default) signed by identity.
func GenerateKyberPreKey(identity *PrivateKey, id uint32, typ KEMType, lastResort bool, now time.Time, r io.Reader) (*KyberPreKey, error) {
	kp, err := GenerateKEMKeyPair(typ, r)
	if err != nil {
		return nil, err
	}
	sig, err := identity.Sign(r, kp.Public.Bytes())
	if err != nil {
		return nil, err
	}
	return &KyberPreKey{ID: id, Timestamp: now, KeyPair: kp, Signature: sig, LastResort: lastResort}, nil
}
