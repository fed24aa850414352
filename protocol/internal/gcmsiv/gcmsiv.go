// Package gcmsiv is AES-GCM-SIV (RFC 8452), the nonce-misuse-resistant AEAD that
// libsignal's sealed sender version 2 encrypts with (AES-256-GCM-SIV, through the
// aes-gcm-siv crate). Go's standard library does not have it; this is written from the
// RFC on crypto/aes, with POLYVAL computed in constant time.
//
// New returns a cipher.AEAD for a 16- or 32-byte key (AEAD_AES_128_GCM_SIV and
// AEAD_AES_256_GCM_SIV): 12-byte nonces, a 16-byte tag appended to the ciphertext.
// The AEAD is safe for concurrent use.
package gcmsiv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

const (
	// NonceSize is the nonce length (RFC 8452, section 4: N_MIN = N_MAX = 12).
	NonceSize = 12
	// TagSize is the tag length.
	TagSize = 16
	// maxInput is P_MAX and A_MAX, 2^36 bytes (RFC 8452, section 6): the 32-bit block
	// counter must not wrap within one message.
	maxInput = 1 << 36
	// blockSize is the AES and POLYVAL block size.
	blockSize = 16
)

var (
	// ErrKeySize is returned by New for a key of neither 16 nor 32 bytes.
	ErrKeySize = errors.New("gcmsiv: key must be 16 or 32 bytes")
	// ErrOpen is returned by Open for a ciphertext that does not authenticate.
	ErrOpen = errors.New("gcmsiv: message authentication failed")
)

type aead struct {
	block  cipher.Block // the key-generating key
	keyLen int
}

// New returns AES-GCM-SIV under key.
func New(key []byte) (cipher.AEAD, error) {
	if len(key) != 16 && len(key) != 32 {
		return nil, ErrKeySize
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &aead{block: b, keyLen: len(key)}, nil
}

func (a *aead) NonceSize() int { return NonceSize }
func (a *aead) Overhead() int  { return TagSize }

// deriveKeys computes the record's authentication key (16 bytes) and encryption key
// (as long as the key-generating key, in enc[:a.keyLen]) from the nonce (RFC 8452,
// section 4): the first 8 bytes of AES(K, LE32(i) ‖ nonce) for i = 0, 1, ...,
// concatenated.
func (a *aead) deriveKeys(nonce []byte) (authKey [16]byte, enc [32]byte) {
	var in, out [blockSize]byte
	copy(in[4:], nonce)
	for i := range 2 + a.keyLen/8 {
		binary.LittleEndian.PutUint32(in[:4], uint32(i))
		a.block.Encrypt(out[:], in[:])
		if i < 2 {
			copy(authKey[i*8:], out[:8])
		} else {
			copy(enc[(i-2)*8:], out[:8])
		}
	}
	clear(out[:])
	return authKey, enc
}

// recordKeys derives the record keys and expands the encryption key.
func (a *aead) recordKeys(nonce []byte) (authKey [16]byte, encKey cipher.Block) {
	authKey, enc := a.deriveKeys(nonce)
	encKey, _ = aes.NewCipher(enc[:a.keyLen]) // 16 or 32 bytes: cannot fail
	clear(enc[:])
	return authKey, encKey
}

// tag computes the tag over the plaintext and additional data (RFC 8452, section 4).
func tag(authKey *[16]byte, encKey cipher.Block, nonce, plaintext, ad []byte) [TagSize]byte {
	p := polyval{h: loadElement(authKey[:])}
	p.updatePadded(ad)
	p.updatePadded(plaintext)
	var lengths [blockSize]byte
	binary.LittleEndian.PutUint64(lengths[:8], uint64(len(ad))*8)
	binary.LittleEndian.PutUint64(lengths[8:], uint64(len(plaintext))*8)
	p.update(lengths[:])

	var s [TagSize]byte
	p.s.store(s[:])
	subtle.XORBytes(s[:NonceSize], s[:NonceSize], nonce)
	s[15] &= 0x7f
	encKey.Encrypt(s[:], s[:])
	return s
}

// ctr XORs src with the keystream that starts at the counter block made from tag: the
// tag with its top bit set, whose first four bytes are a little-endian counter that
// wraps modulo 2^32 (RFC 8452, section 4).
func ctr(encKey cipher.Block, tag *[TagSize]byte, dst, src []byte) {
	var block, ks [blockSize]byte
	block = *tag
	block[15] |= 0x80
	counter := binary.LittleEndian.Uint32(block[:4])
	for len(src) > 0 {
		binary.LittleEndian.PutUint32(block[:4], counter)
		encKey.Encrypt(ks[:], block[:])
		n := subtle.XORBytes(dst, src, ks[:])
		dst, src = dst[n:], src[n:]
		counter++
	}
	clear(ks[:])
}

// Seal encrypts and authenticates plaintext and ad, appending the ciphertext and the
// tag to dst. dst and plaintext may overlap exactly or not at all.
func (a *aead) Seal(dst, nonce, plaintext, ad []byte) []byte {
	if len(nonce) != NonceSize {
		panic("gcmsiv: incorrect nonce length")
	}
	if uint64(len(plaintext)) > maxInput || uint64(len(ad)) > maxInput {
		panic("gcmsiv: message too large")
	}
	authKey, encKey := a.recordKeys(nonce)
	t := tag(&authKey, encKey, nonce, plaintext, ad)
	clear(authKey[:])
	ret, out := sliceForAppend(dst, len(plaintext)+TagSize)
	ctr(encKey, &t, out[:len(plaintext)], plaintext)
	copy(out[len(plaintext):], t[:])
	return ret
}

// Open authenticates and decrypts ciphertext and ad, appending the plaintext to dst.
// On failure it returns ErrOpen and leaves no plaintext in dst's spare capacity.
// dst and ciphertext may overlap exactly or not at all.
func (a *aead) Open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(nonce) != NonceSize {
		panic("gcmsiv: incorrect nonce length")
	}
	if len(ciphertext) < TagSize || uint64(len(ciphertext)) > maxInput+TagSize || uint64(len(ad)) > maxInput {
		return nil, ErrOpen
	}
	n := len(ciphertext) - TagSize
	var want [TagSize]byte
	copy(want[:], ciphertext[n:])
	authKey, encKey := a.recordKeys(nonce)
	ret, out := sliceForAppend(dst, n)
	ctr(encKey, &want, out, ciphertext[:n])
	got := tag(&authKey, encKey, nonce, out, ad)
	clear(authKey[:])
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		clear(out)
		return nil, ErrOpen
	}
	return ret, nil
}

// sliceForAppend extends in by n bytes, reusing its capacity when it can, and returns
// the whole slice and the n new bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
