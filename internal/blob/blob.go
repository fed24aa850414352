// Package blob stores attachment blobs for the server: opaque ciphertext,
// uploaded in chunks at offsets (so that a cut upload resumes), then read
// back whole or by range. A blob is named by a random 256-bit id, which is
// the capability to download it; the store records nothing about who
// uploaded it, only the blob, its declared size, when the upload was
// created, and the SHA-256 of the upload token the server handed out.
//
// Store is the interface the server uses; FS implements it on a local
// directory. Implementations are safe for concurrent use, and serialize
// appends to one upload.
package blob

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"time"
)

// IDSize is the entropy of a blob id, in bytes. Ids travel as unpadded
// base64url (43 characters).
const IDSize = 32

// Errors callers branch on (errors.Is).
var (
	// ErrNotFound: no upload or blob has this id (or the id is malformed);
	// for Open, also an upload that is not finished.
	ErrNotFound = errors.New("blob: not found")
	// ErrOffsetMismatch: Append's offset is not the upload's current offset,
	// which Append returns along with the error.
	ErrOffsetMismatch = errors.New("blob: offset mismatch")
	// ErrTooLarge: Append's data would take the upload past its declared
	// size. Nothing is acknowledged.
	ErrTooLarge = errors.New("blob: past the declared size")
)

// Info describes an upload, finished or not.
type Info struct {
	// Size is the declared size of the blob.
	Size int64
	// Offset is how many bytes have been acknowledged; Size once finished.
	Offset int64
	// Created is when the upload was created.
	Created time.Time
	// TokenHash is the SHA-256 of the upload token.
	TokenHash [32]byte
	// Finished reports whether all Size bytes are stored and the blob can
	// be opened.
	Finished bool
}

// Reader reads a finished blob; its Seek lets net/http's ServeContent
// answer Range requests.
type Reader interface {
	io.ReadSeeker
	io.Closer
}

// Store holds uploads and finished blobs.
//
// An upload is created with its declared size and grows by Append at its
// current offset; when the offset reaches the size it is finished, and only
// then can it be opened. Every Append is durable before it returns: a chunk
// whose Append did not return (a crash, a cut connection, an error) is not
// acknowledged, and the retry at the same offset overwrites whatever part of
// it was written.
//
// An object store (S3 and the like) can implement Store: Create starts a
// multipart upload and writes a small metadata object (size, created time,
// token hash) under the id; Append uploads one part whose number follows
// from the offset (the server then fixes the chunk size, which must be at
// least the store's minimum part size, 5 MiB for S3, for every chunk but
// the last), records the new offset in the metadata object, and completes
// the multipart upload when the offset reaches the size; Open returns a
// ReadSeeker that issues ranged GETs; Expire is a lifecycle rule (expire
// objects after the retention, abort incomplete multipart uploads after
// the idle time) or a listing. Appends to one id must still be serialized,
// by a lock in the server or a conditional write of the metadata object.
type Store interface {
	// Create starts an upload of size bytes (size > 0) and returns its id,
	// IDSize random bytes in unpadded base64url.
	Create(ctx context.Context, size int64, tokenHash [32]byte) (id string, err error)
	// Append writes everything r yields at offset, which must be the
	// upload's current offset (else ErrOffsetMismatch), makes it durable,
	// and returns the new offset. Data past the declared size is
	// ErrTooLarge; an error reading r is returned wrapped (%w). On any
	// error the offset does not move, and the current one is returned.
	// Appending nothing is allowed and changes nothing. Appends to one
	// upload run one at a time; one that waits for another gives up when
	// ctx ends.
	Append(ctx context.Context, id string, offset int64, r io.Reader) (int64, error)
	// Stat describes an upload or a finished blob.
	Stat(ctx context.Context, id string) (*Info, error)
	// Open opens a finished blob and returns its size. ErrNotFound for an
	// unknown id or an unfinished upload.
	Open(ctx context.Context, id string) (Reader, int64, error)
	// Delete deletes an upload or blob. ErrNotFound if there is none.
	Delete(ctx context.Context, id string) error
	// Expire deletes the finished blobs finished before finishedBefore and
	// the unfinished uploads that made no progress since idleBefore, and
	// returns how many of each. Uploads with an Append under way are
	// skipped.
	Expire(ctx context.Context, finishedBefore, idleBefore time.Time) (blobs, partials int, err error)
}

var idEncoding = base64.RawURLEncoding.Strict()

// NewID returns a fresh blob id: IDSize bytes from crypto/rand, unpadded
// base64url.
func NewID() string {
	var b [IDSize]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return idEncoding.EncodeToString(b[:])
}

// ValidID reports whether id is the form NewID makes. Implementations check
// it before id reaches a path or a key.
func ValidID(id string) bool {
	if len(id) != idEncoding.EncodedLen(IDSize) {
		return false
	}
	b, err := idEncoding.DecodeString(id)
	return err == nil && len(b) == IDSize
}
