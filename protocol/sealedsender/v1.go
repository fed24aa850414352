package sealedsender

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/kdf"
	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// Version bytes: the version a reader needs in the high nibble and the writer's version
// in the low one (sealed_sender.rs).
const (
	// v1Version starts a version 1 message (SEALED_SENDER_V1_FULL_VERSION).
	v1Version = 0x11
	// v1Major is the version 1 high nibble (SEALED_SENDER_V1_MAJOR_VERSION); libsignal
	// also reads 0 as version 1.
	v1Major = 1
	// v2Major is the version 2 high nibble (SEALED_SENDER_V2_MAJOR_VERSION).
	v2Major = 2
)

// Version 1 key derivation and ciphers (sealed_sender.rs, mod sealed_sender_v1, and
// crypto.rs).
const (
	// v1SaltPrefix starts the salt of the ephemeral key derivation (SALT_PREFIX).
	v1SaltPrefix = "UnidentifiedDelivery"
	// v1MACSize is the truncated HMAC-SHA256 after each AES-256-CTR ciphertext
	// (aes256_ctr_hmacsha256_encrypt keeps 10 bytes).
	v1MACSize = 10
	// v1KeySize is each derived key: chain, cipher and MAC keys, 32 bytes each.
	v1KeySize = 32
)

// Protobuf field numbers of UnidentifiedSenderMessage (sealed_sender.proto).
const (
	v1EphemeralPublic  = 1
	v1EncryptedStatic  = 2
	v1EncryptedMessage = 3
)

// v1Keys are the three keys of one HKDF output; the static derivation discards chain.
type v1Keys struct {
	chain, cipher, mac [v1KeySize]byte
}

func (k *v1Keys) clear() {
	clear(k.chain[:])
	clear(k.cipher[:])
	clear(k.mac[:])
}

// deriveV1 is HKDF-SHA256(salt, ikm, info "") split into 32-byte keys.
func deriveV1(salt, ikm []byte) v1Keys {
	var out [3 * v1KeySize]byte
	kdf.HKDF(out[:], salt, ikm)
	var k v1Keys
	copy(k.chain[:], out[:32])
	copy(k.cipher[:], out[32:64])
	copy(k.mac[:], out[64:])
	clear(out[:])
	return k
}

// ephemeralSalt is "UnidentifiedDelivery" ‖ recipient identity ‖ ephemeral public key,
// both serialized (EphemeralKeys::calculate).
func ephemeralSalt(recipient, ephemeral keys.PublicKey) []byte {
	salt := make([]byte, 0, len(v1SaltPrefix)+2*keys.PublicKeySize)
	salt = append(salt, v1SaltPrefix...)
	salt = recipient.AppendBytes(salt)
	return ephemeral.AppendBytes(salt)
}

// staticSalt is the ephemeral chain key ‖ the encrypted static key with its MAC
// (StaticKeys::calculate).
func staticSalt(chain *[v1KeySize]byte, encryptedStatic []byte) []byte {
	salt := make([]byte, 0, len(chain)+len(encryptedStatic))
	return append(append(salt, chain[:]...), encryptedStatic...)
}

// ctrMAC appends AES-256-CTR(key, zero IV, msg) and its truncated HMAC-SHA256 to dst. The
// IV is all zero and messages are far below 2^32 blocks, so Go's 128-bit counter equals
// libsignal's 32-bit big-endian one (ctr::Ctr32BE).
func ctrMAC(dst []byte, cipherKey, macKey *[v1KeySize]byte, msg []byte) []byte {
	block, _ := aes.NewCipher(cipherKey[:]) // 32 bytes: cannot fail
	var iv [aes.BlockSize]byte
	start := len(dst)
	dst = append(dst, make([]byte, len(msg))...)
	cipher.NewCTR(block, iv[:]).XORKeyStream(dst[start:], msg)
	m := hmac.New(sha256.New, macKey[:])
	m.Write(dst[start:])
	var sum [sha256.Size]byte
	return append(dst, m.Sum(sum[:0])[:v1MACSize]...)
}

// openCTRMAC checks the MAC at the end of ct and decrypts the rest.
func openCTRMAC(cipherKey, macKey *[v1KeySize]byte, ct []byte) ([]byte, bool) {
	if len(ct) < v1MACSize {
		return nil, false
	}
	body, mac := ct[:len(ct)-v1MACSize], ct[len(ct)-v1MACSize:]
	m := hmac.New(sha256.New, macKey[:])
	m.Write(body)
	var sum [sha256.Size]byte
	if subtle.ConstantTimeCompare(m.Sum(sum[:0])[:v1MACSize], mac) != 1 {
		return nil, false
	}
	block, _ := aes.NewCipher(cipherKey[:])
	var iv [aes.BlockSize]byte
	out := make([]byte, len(body))
	cipher.NewCTR(block, iv[:]).XORKeyStream(out, body)
	return out, true
}

// Encrypt seals c to one recipient (sealed sender version 1, libsignal's
// sealed_sender_encrypt_from_usmc), given the recipient's identity key and the sender's
// identity private key, which must be the identity key of c's certificate. Randomness
// for the ephemeral key comes from r (crypto/rand when nil).
func Encrypt(r io.Reader, recipient keys.PublicKey, sender *keys.PrivateKey, c *Content) ([]byte, error) {
	if err := c.check(sender); err != nil {
		return nil, err
	}
	return encryptV1(r, recipient, sender, c.Bytes())
}

// encryptV1 seals serialized content; tests call it to seal what Encrypt refuses.
func encryptV1(r io.Reader, recipient keys.PublicKey, sender *keys.PrivateKey, content []byte) ([]byte, error) {
	eph, err := keys.GeneratePrivateKey(r)
	if err != nil {
		return nil, fmt.Errorf("sealedsender: %w", err)
	}
	ephPub := eph.PublicKey()
	dh, err := eph.Agree(recipient)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient key: %v", ErrInvalidArgument, err)
	}
	ek := deriveV1(ephemeralSalt(recipient, ephPub), dh[:])
	clear(dh[:])
	defer ek.clear()
	encStatic := ctrMAC(make([]byte, 0, keys.PublicKeySize+v1MACSize), &ek.cipher, &ek.mac, sender.PublicKey().Bytes())

	dh, err = sender.Agree(recipient)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient key: %v", ErrInvalidArgument, err)
	}
	sk := deriveV1(staticSalt(&ek.chain, encStatic), dh[:])
	clear(dh[:])
	defer sk.clear()
	encMessage := ctrMAC(make([]byte, 0, len(content)+v1MACSize), &sk.cipher, &sk.mac, content)

	out := make([]byte, 0, 1+2*(keys.PublicKeySize+2)+len(encStatic)+len(encMessage)+8)
	out = append(out, v1Version)
	out = wire.AppendBytesField(out, v1EphemeralPublic, ephPub.Bytes())
	out = wire.AppendBytesField(out, v1EncryptedStatic, encStatic)
	return wire.AppendBytesField(out, v1EncryptedMessage, encMessage), nil
}

// Decrypt opens a sealed message (version 1, or a version 2 ReceivedMessage as
// SentMessage.ForRecipient makes it) with the local identity private key and returns
// its content, as libsignal's sealed_sender_decrypt_to_usmc does.
//
// It checks that the message authenticates and that the sender identity key bound into
// it equals the identity key of the content's certificate. It does NOT validate the
// certificate: the caller must call Content.Sender.Validate with its trust roots and
// the current time before it believes the sender.
func Decrypt(msg []byte, local *keys.PrivateKey) (*Content, error) {
	if local == nil {
		return nil, fmt.Errorf("%w: no local key", ErrInvalidArgument)
	}
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	switch v := msg[0] >> 4; v {
	case 0, v1Major:
		return decryptV1(msg[1:], local)
	case v2Major:
		return decryptV2(msg[1:], local)
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownVersion, v)
	}
}

func decryptV1(b []byte, local *keys.PrivateKey) (*Content, error) {
	var ephBytes, encStatic, encMessage []byte
	err := wire.Walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, bs []byte) error {
		switch num {
		case v1EphemeralPublic:
			ephBytes = bs
			return wantType(typ, protowire.BytesType)
		case v1EncryptedStatic:
			encStatic = bs
			return wantType(typ, protowire.BytesType)
		case v1EncryptedMessage:
			encMessage = bs
			return wantType(typ, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if ephBytes == nil || encStatic == nil || encMessage == nil {
		return nil, fmt.Errorf("%w: missing field", ErrMalformed)
	}
	eph, err := keys.ParsePublicKey(ephBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %v", ErrMalformed, err)
	}

	localPub := local.PublicKey()
	dh, err := local.Agree(eph)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key agreement", ErrDecryption)
	}
	ek := deriveV1(ephemeralSalt(localPub, eph), dh[:])
	clear(dh[:])
	defer ek.clear()
	staticBytes, ok := openCTRMAC(&ek.cipher, &ek.mac, encStatic)
	if !ok {
		return nil, fmt.Errorf("%w: sender key does not authenticate", ErrDecryption)
	}
	static, err := keys.ParsePublicKey(staticBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: sender key: %v", ErrDecryption, err)
	}

	dh, err = local.Agree(static)
	if err != nil {
		return nil, fmt.Errorf("%w: sender key agreement", ErrDecryption)
	}
	sk := deriveV1(staticSalt(&ek.chain, encStatic), dh[:])
	clear(dh[:])
	defer sk.clear()
	content, ok := openCTRMAC(&sk.cipher, &sk.mac, encMessage)
	if !ok {
		return nil, fmt.Errorf("%w: content does not authenticate", ErrDecryption)
	}
	c, err := ParseContent(content)
	if err != nil {
		return nil, err
	}
	if !c.Sender.sender.IdentityKey.Equal(static) {
		return nil, fmt.Errorf("%w: sender certificate key does not match the sealing key", ErrDecryption)
	}
	return c, nil
}
