// Package attachment encrypts and decrypts attachment blobs the way Signal
// does (AttachmentCipherOutputStream and AttachmentCipherInputStream in
// Signal's Android client, which libsignal leaves to the apps):
//
//	key    = 64 random bytes: a 32-byte AES-256 key ‖ a 32-byte HMAC-SHA256 key
//	blob   = IV (16 random bytes) ‖ AES-256-CBC-PKCS#7(padded plaintext) ‖ HMAC-SHA256(macKey, IV ‖ ciphertext)
//	digest = SHA-256(blob)
//
// The plaintext is zero-padded to a size bucket (api.AttachmentPaddedSize)
// before encryption, so that the blob's size tells the server only the
// bucket; the true size travels in the message. The key, the digest and the
// true size travel inside the end-to-end encrypted message that refers to
// the blob (a Pointer). The digest commits the message to one blob: unlike
// bare AES-GCM, no second key can make the same blob decrypt to something
// else, and the server cannot swap the blob.
//
// Decrypt verifies the digest and the MAC over the whole blob, and checks
// the padding, before it writes one byte of plaintext; it reads the blob
// twice, so it takes an io.ReaderAt (a downloaded file).
//
// The package does no I/O beyond the readers and writers it is given, and
// reads no clock. Its functions are safe for concurrent use; a Pointer is a
// value, not shared state.
package attachment

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
)

// Sizes of the scheme.
const (
	// KeySize is the size of an attachment key: AES-256 key ‖ HMAC-SHA256
	// key.
	KeySize = 64
	// DigestSize is the size of a blob's digest, SHA-256.
	DigestSize = sha256.Size
	aesKeySize = 32
	ivSize     = aes.BlockSize
	macSize    = sha256.Size
)

// The content format carries keys and digests of these sizes: a compile
// error here means the two packages disagree.
var (
	_ [KeySize - content.AttachmentKeySize]struct{}
	_ [content.AttachmentKeySize - KeySize]struct{}
	_ [DigestSize - content.AttachmentDigestSize]struct{}
	_ [content.AttachmentDigestSize - DigestSize]struct{}
)

// bufSize is the unit of streaming: memory use is a few of these,
// whatever the attachment's size. A multiple of the AES block size.
const bufSize = 64 << 10

// Errors Decrypt returns for a blob that must not be trusted. Nothing has
// been written to the destination when one of them is returned.
var (
	// ErrBadMAC: the blob's HMAC does not verify under the key.
	ErrBadMAC = errors.New("attachment: bad mac")
	// ErrDigestMismatch: the blob's SHA-256 is not the digest the message
	// named.
	ErrDigestMismatch = errors.New("attachment: digest mismatch")
	// ErrMalformed: the blob or the pointer is not well formed: a size that
	// does not match, padding that is not zeros, bad PKCS#7.
	ErrMalformed = errors.New("attachment: malformed")
)

// Pointer describes a stored attachment to the message layer: everything a
// recipient needs to download, verify and decrypt it. It holds the key and
// the download capability, so it prints as [redacted].
type Pointer struct {
	// ID is the server's attachment id: the capability to download it.
	ID string
	// Key is the attachment key: AES-256 key ‖ HMAC-SHA256 key.
	Key [KeySize]byte
	// Digest is the SHA-256 of the blob.
	Digest [DigestSize]byte
	// Size is the plaintext's true size, in bytes.
	Size int64
	// BlobSize is the blob's size, api.AttachmentBlobSize(Size).
	BlobSize int64
}

// String hides the key and the id.
func (p *Pointer) String() string {
	return fmt.Sprintf("attachment.Pointer{Size: %d, BlobSize: %d, [redacted]}", p.Size, p.BlobSize)
}

// GoString hides the key and the id from %#v.
func (p *Pointer) GoString() string { return p.String() }

// LogValue hides the key and the id from slog.
func (p *Pointer) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Validate checks what a received message claims: an id the server could
// have made, and a blob size that is the one for the plaintext size.
// ErrMalformed otherwise.
func (p *Pointer) Validate() error {
	if !api.ValidAttachmentID(p.ID) {
		return fmt.Errorf("%w: attachment id", ErrMalformed)
	}
	return p.checkSizes()
}

func (p *Pointer) checkSizes() error {
	if want := BlobSize(p.Size); want < 0 || p.BlobSize != want {
		return fmt.Errorf("%w: blob size %d does not fit plaintext size %d", ErrMalformed, p.BlobSize, p.Size)
	}
	return nil
}

// PaddedSize is the size a plaintext of size bytes is zero-padded to
// before encryption (see api.AttachmentPaddedSize); -1 for a negative size
// or one over 1 TiB.
func PaddedSize(size int64) int64 { return api.AttachmentPaddedSize(size) }

// BlobSize is the size of the blob Encrypt makes from size bytes of
// plaintext; -1 for a negative size or one over 1 TiB.
func BlobSize(size int64) int64 { return api.AttachmentBlobSize(size) }

// Encrypt reads exactly size bytes of plaintext from src and writes the blob
// to dst, in constant memory. It draws the key and the IV from rnd (nil:
// crypto/rand) and returns the Pointer with every field but ID set. It fails
// if src ends before size bytes or holds more than size bytes; dst then holds
// an incomplete blob, to be discarded.
func Encrypt(dst io.Writer, src io.Reader, size int64, rnd io.Reader) (*Pointer, error) {
	padded := PaddedSize(size)
	if padded < 0 {
		return nil, fmt.Errorf("attachment: size %d out of range", size)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	p := &Pointer{Size: size, BlobSize: BlobSize(size)}
	var iv [ivSize]byte
	if _, err := io.ReadFull(rnd, p.Key[:]); err != nil {
		return nil, fmt.Errorf("attachment: random key: %v", err)
	}
	if _, err := io.ReadFull(rnd, iv[:]); err != nil {
		return nil, fmt.Errorf("attachment: random iv: %v", err)
	}
	block, err := aes.NewCipher(p.Key[:aesKeySize])
	if err != nil {
		return nil, fmt.Errorf("attachment: %v", err)
	}
	enc := cipher.NewCBCEncrypter(block, iv[:])
	mac := hmac.New(sha256.New, p.Key[aesKeySize:])
	digest := sha256.New()
	out := io.MultiWriter(dst, mac, digest)

	if _, err := out.Write(iv[:]); err != nil {
		return nil, fmt.Errorf("attachment: writing blob: %w", err)
	}
	// The plaintext stream: the plaintext, zeros up to the padded size,
	// then PKCS#7 padding to a whole number of blocks (a full block when
	// the padded size is one already).
	pad := aes.BlockSize - int(padded%aes.BlockSize)
	in := io.MultiReader(
		&exactReader{r: src, n: size},
		io.LimitReader(zeros{}, padded-size),
		bytes.NewReader(bytes.Repeat([]byte{byte(pad)}, pad)),
	)
	buf := make([]byte, bufSize)
	for {
		n, err := io.ReadFull(in, buf)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, err
		}
		if n > 0 {
			// The stream is a whole number of blocks and buf is one too,
			// so every read but the last is full and the last is whole.
			enc.CryptBlocks(buf[:n], buf[:n])
			if _, werr := out.Write(buf[:n]); werr != nil {
				return nil, fmt.Errorf("attachment: writing blob: %w", werr)
			}
		}
		if err != nil {
			break
		}
	}
	tag := mac.Sum(nil)
	if _, err := dst.Write(tag); err != nil {
		return nil, fmt.Errorf("attachment: writing blob: %w", err)
	}
	digest.Write(tag)
	digest.Sum(p.Digest[:0])
	return p, nil
}

// exactReader reads exactly n bytes from r: an early end or a byte beyond n
// is an error.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(b []byte) (int, error) {
	if e.n == 0 {
		var one [1]byte
		for {
			n, err := e.r.Read(one[:])
			if n > 0 {
				return 0, errors.New("attachment: plaintext longer than its declared size")
			}
			if err == io.EOF {
				return 0, io.EOF
			}
			if err != nil {
				return 0, fmt.Errorf("attachment: reading plaintext: %w", err)
			}
		}
	}
	if int64(len(b)) > e.n {
		b = b[:e.n]
	}
	n, err := e.r.Read(b)
	e.n -= int64(n)
	if err == io.EOF {
		if e.n > 0 {
			return n, errors.New("attachment: plaintext shorter than its declared size")
		}
		err = nil
	} else if err != nil {
		err = fmt.Errorf("attachment: reading plaintext: %w", err)
	}
	return n, err
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// Decrypt verifies the blob in src (srcSize bytes long) against p and writes
// its plaintext, p.Size bytes, to dst.
//
// It reads src twice. The first pass computes the SHA-256 and the HMAC of
// the whole blob and compares them with p.Digest and the blob's tag
// (ErrDigestMismatch, ErrBadMAC), then decrypts the blocks from the end of
// the plaintext on and checks that the padding is zeros and the PKCS#7
// padding is right (ErrMalformed). Only then does the second pass decrypt
// the plaintext into dst. So when Decrypt returns one of the sentinel errors
// nothing has been written to dst; an I/O error of src or dst can still stop
// the second pass half way, and src must not change between the passes
// (a file the caller owns).
func Decrypt(dst io.Writer, src io.ReaderAt, srcSize int64, p *Pointer) error {
	if err := p.checkSizes(); err != nil {
		return err
	}
	if srcSize != p.BlobSize {
		return fmt.Errorf("%w: blob is %d bytes, want %d", ErrMalformed, srcSize, p.BlobSize)
	}
	if err := verify(src, srcSize, p); err != nil {
		return err
	}
	block, err := aes.NewCipher(p.Key[:aesKeySize])
	if err != nil {
		return fmt.Errorf("attachment: %v", err)
	}
	ctLen := srcSize - ivSize - macSize
	padded := PaddedSize(p.Size)

	// The tail: from the block holding plaintext byte Size to the end.
	first := p.Size / aes.BlockSize * aes.BlockSize
	bad := false
	err = decryptRange(block, src, first, ctLen, func(off int64, pt []byte) error {
		for i, b := range pt {
			pos := off + int64(i)
			switch {
			case pos < p.Size:
			case pos < padded:
				bad = bad || b != 0
			default:
				bad = bad || int64(b) != ctLen-padded
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if bad {
		return fmt.Errorf("%w: bad padding", ErrMalformed)
	}

	// The plaintext.
	end := (p.Size + aes.BlockSize - 1) / aes.BlockSize * aes.BlockSize
	return decryptRange(block, src, 0, end, func(off int64, pt []byte) error {
		if n := p.Size - off; int64(len(pt)) > n {
			pt = pt[:n]
		}
		if _, err := dst.Write(pt); err != nil {
			return fmt.Errorf("attachment: writing plaintext: %w", err)
		}
		return nil
	})
}

// verify is Decrypt's first pass over the whole blob.
func verify(src io.ReaderAt, srcSize int64, p *Pointer) error {
	mac := hmac.New(sha256.New, p.Key[aesKeySize:])
	digest := sha256.New()
	body := io.NewSectionReader(src, 0, srcSize-macSize)
	if _, err := io.CopyBuffer(io.MultiWriter(mac, digest), onlyReader{body}, make([]byte, bufSize)); err != nil {
		return fmt.Errorf("attachment: reading blob: %w", err)
	}
	var tag [macSize]byte
	if err := readFullAt(src, tag[:], srcSize-macSize); err != nil {
		return err
	}
	digest.Write(tag[:])
	if !hmac.Equal(mac.Sum(nil), tag[:]) {
		return ErrBadMAC
	}
	if subtle.ConstantTimeCompare(digest.Sum(nil), p.Digest[:]) != 1 {
		return ErrDigestMismatch
	}
	return nil
}

// onlyReader hides every method but Read, so that io.CopyBuffer uses the
// buffer it is given.
type onlyReader struct{ io.Reader }

// decryptRange decrypts the plaintext from offset from to offset to (both
// multiples of the block size, within the ciphertext) and hands it to fn in
// pieces, with each piece's offset.
func decryptRange(block cipher.Block, src io.ReaderAt, from, to int64, fn func(off int64, pt []byte) error) error {
	if from >= to {
		return nil
	}
	// The IV of block i is ciphertext block i-1, or the blob's IV for
	// block 0; ciphertext block i starts at ivSize + 16i in the blob, so
	// its IV is at 16i either way.
	var iv [aes.BlockSize]byte
	if err := readFullAt(src, iv[:], from); err != nil {
		return err
	}
	dec := cipher.NewCBCDecrypter(block, iv[:])
	buf := make([]byte, bufSize)
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if err := readFullAt(src, buf[:n], ivSize+off); err != nil {
			return err
		}
		dec.CryptBlocks(buf[:n], buf[:n])
		if err := fn(off, buf[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// readFullAt fills b from src at off.
func readFullAt(src io.ReaderAt, b []byte, off int64) error {
	n, err := src.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("attachment: reading blob: %w", err)
}
