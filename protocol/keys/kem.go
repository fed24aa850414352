package keys

import (
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cloudflare/circl/kem/kyber/kyber1024"
)

// KEMType is the type byte before a serialized KEM key or ciphertext (libsignal's
// kem::KeyType).
type KEMType byte

const (
	// KEMKyber1024 is CRYSTALS-Kyber-1024 (round 3), libsignal's default for PQXDH.
	KEMKyber1024 KEMType = 0x08
	// KEMMLKEM1024 is ML-KEM-1024 (FIPS 203), which libsignal also accepts.
	KEMMLKEM1024 KEMType = 0x0A
)

// Sizes of the raw KEM values (without the type byte). Kyber-1024 and ML-KEM-1024 share them.
const (
	kem1024PublicKeySize  = 1568
	kem1024CiphertextSize = 1568
	// kemSeedSize is the size of the seed a KEM private key is kept as (d || z).
	kemSeedSize = 64
	// KEMSharedSecretSize is the size of a KEM shared secret.
	KEMSharedSecretSize = 32
	// KEMPublicKeySize is the size of a serialized 1024-level KEM public key.
	KEMPublicKeySize = 1 + kem1024PublicKeySize
	// KEMCiphertextSize is the size of a serialized 1024-level KEM ciphertext.
	KEMCiphertextSize = 1 + kem1024CiphertextSize
)

// ErrWrongKEMType is returned when a ciphertext is for another KEM than the key.
var ErrWrongKEMType = errors.New("keys: ciphertext is for another KEM")

func (t KEMType) String() string {
	switch t {
	case KEMKyber1024:
		return "Kyber1024"
	case KEMMLKEM1024:
		return "ML-KEM-1024"
	}
	return fmt.Sprintf("KEMType(%#x)", byte(t))
}

func (t KEMType) known() bool { return t == KEMKyber1024 || t == KEMMLKEM1024 }

// KEMPublicKey is a KEM public key in libsignal's encoding.
type KEMPublicKey struct {
	serialized []byte // type byte || raw key
}

// ParseKEMPublicKey decodes a serialized KEM public key (type byte and raw key).
func ParseKEMPublicKey(b []byte) (*KEMPublicKey, error) {
	if len(b) == 0 {
		return nil, ErrBadKeyLength
	}
	if !KEMType(b[0]).known() {
		return nil, ErrBadKeyType
	}
	if len(b) != KEMPublicKeySize {
		return nil, ErrBadKeyLength
	}
	k := &KEMPublicKey{serialized: append([]byte(nil), b...)}
	// Reject keys the KEM itself would refuse, so that a bad key fails at parse time.
	if KEMType(b[0]) == KEMMLKEM1024 {
		if _, err := mlkem.NewEncapsulationKey1024(b[1:]); err != nil {
			return nil, ErrBadKeyLength
		}
	}
	return k, nil
}

// Type returns the KEM the key belongs to.
func (k *KEMPublicKey) Type() KEMType { return KEMType(k.serialized[0]) }

// Bytes returns the serialized key. The caller must not modify it.
func (k *KEMPublicKey) Bytes() []byte { return k.serialized }

// Equal reports whether two keys are the same.
func (k *KEMPublicKey) Equal(o *KEMPublicKey) bool {
	return subtle.ConstantTimeCompare(k.serialized, o.serialized) == 1
}

// Encapsulate makes a shared secret and the serialized ciphertext (type byte and raw
// ciphertext) that carries it to the holder of the private key. Randomness comes from r
// (crypto/rand when nil).
func (k *KEMPublicKey) Encapsulate(r io.Reader) (shared, ciphertext []byte, err error) {
	if r == nil {
		r = rand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, nil, fmt.Errorf("keys: reading randomness: %w", err)
	}
	ciphertext = make([]byte, KEMCiphertextSize)
	ciphertext[0] = k.serialized[0]
	switch k.Type() {
	case KEMKyber1024:
		var pk kyber1024.PublicKey
		pk.Unpack(k.serialized[1:])
		shared = make([]byte, KEMSharedSecretSize)
		pk.EncapsulateTo(ciphertext[1:], shared, seed[:])
	case KEMMLKEM1024:
		ek, err := mlkem.NewEncapsulationKey1024(k.serialized[1:])
		if err != nil {
			return nil, nil, ErrBadKeyLength
		}
		// mlkemtest gives the deterministic FIPS 203 encapsulation, so that the
		// randomness comes from r like everything else in this package.
		ss, ct, err := mlkemtest.Encapsulate1024(ek, seed[:])
		if err != nil {
			return nil, nil, err
		}
		shared = ss
		copy(ciphertext[1:], ct)
	}
	return shared, ciphertext, nil
}

// KEMPrivateKey is a KEM private key. It is kept as the 64-byte key-generation seed.
type KEMPrivateKey struct {
	typ    KEMType
	seed   [kemSeedSize]byte
	kyber  *kyber1024.PrivateKey
	mlkem  *mlkem.DecapsulationKey1024
	public *KEMPublicKey
}

// KEMKeyPair is a KEM private key with its public key.
type KEMKeyPair struct {
	Public  *KEMPublicKey
	Private *KEMPrivateKey
}

// GenerateKEMKeyPair makes a new KEM key pair of the given type with randomness from r
// (crypto/rand when nil).
func GenerateKEMKeyPair(typ KEMType, r io.Reader) (KEMKeyPair, error) {
	if r == nil {
		r = rand.Reader
	}
	var seed [kemSeedSize]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return KEMKeyPair{}, fmt.Errorf("keys: reading randomness: %w", err)
	}
	priv, err := newKEMPrivateKey(typ, seed[:])
	if err != nil {
		return KEMKeyPair{}, err
	}
	return KEMKeyPair{Public: priv.public, Private: priv}, nil
}

// ParseKEMPrivateKey decodes a private key made by KEMPrivateKey.Bytes: the type byte
// and the 64-byte seed. (libsignal stores the expanded key instead; private keys never
// leave the device, so this encoding is ours.)
func ParseKEMPrivateKey(b []byte) (*KEMPrivateKey, error) {
	if len(b) == 0 {
		return nil, ErrBadKeyLength
	}
	if !KEMType(b[0]).known() {
		return nil, ErrBadKeyType
	}
	if len(b) != 1+kemSeedSize {
		return nil, ErrBadKeyLength
	}
	return newKEMPrivateKey(KEMType(b[0]), b[1:])
}

func newKEMPrivateKey(typ KEMType, seed []byte) (*KEMPrivateKey, error) {
	k := &KEMPrivateKey{typ: typ}
	copy(k.seed[:], seed)
	pub := make([]byte, KEMPublicKeySize)
	pub[0] = byte(typ)
	switch typ {
	case KEMKyber1024:
		pk, sk := kyber1024.NewKeyFromSeed(seed)
		k.kyber = sk
		pk.Pack(pub[1:])
	case KEMMLKEM1024:
		dk, err := mlkem.NewDecapsulationKey1024(seed)
		if err != nil {
			return nil, ErrBadKeyLength
		}
		k.mlkem = dk
		copy(pub[1:], dk.EncapsulationKey().Bytes())
	default:
		return nil, ErrBadKeyType
	}
	k.public = &KEMPublicKey{serialized: pub}
	return k, nil
}

// Type returns the KEM the key belongs to.
func (k *KEMPrivateKey) Type() KEMType { return k.typ }

// PublicKey returns the matching public key.
func (k *KEMPrivateKey) PublicKey() *KEMPublicKey { return k.public }

// Bytes returns the type byte and the seed. The caller must protect them.
func (k *KEMPrivateKey) Bytes() []byte {
	return append([]byte{byte(k.typ)}, k.seed[:]...)
}

// Decapsulate recovers the shared secret from a serialized ciphertext.
func (k *KEMPrivateKey) Decapsulate(ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 {
		return nil, ErrBadKeyLength
	}
	if KEMType(ciphertext[0]) != k.typ {
		return nil, ErrWrongKEMType
	}
	if len(ciphertext) != KEMCiphertextSize {
		return nil, ErrBadKeyLength
	}
	switch k.typ {
	case KEMKyber1024:
		ss := make([]byte, KEMSharedSecretSize)
		k.kyber.DecapsulateTo(ss, ciphertext[1:])
		return ss, nil
	default:
		return k.mlkem.Decapsulate(ciphertext[1:])
	}
}

// String hides the key.
func (k *KEMPrivateKey) String() string { return "[redacted]" }

// LogValue hides the key from slog.
func (k *KEMPrivateKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// GoString hides the key from %#v.
func (k *KEMPrivateKey) GoString() string { return "[redacted]" }
