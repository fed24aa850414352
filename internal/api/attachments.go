package api

import (
	"encoding/base64"
	"math"
)

// Paths of the attachment API. {id} is an attachment id (ValidAttachmentID).
const (
	PathAttachments = "/v1/attachments"      // POST: create an upload (device-authenticated)
	PathAttachment  = "/v1/attachments/{id}" // PATCH, HEAD: upload (upload token); GET: download (no authentication)
)

// Headers and media type of the chunked upload, after the tus resumable
// upload protocol (tus.io, core protocol 1.0), of which Doorless speaks a
// subset: creation is a JSON POST, and there is no Tus-Resumable header.
const (
	HeaderUploadOffset = "Upload-Offset" // PATCH request and answer, HEAD answer, 409 answer
	HeaderUploadLength = "Upload-Length" // HEAD answer: the declared blob size
	// ContentTypeOffsetOctetStream is the Content-Type of a PATCH body.
	ContentTypeOffsetOctetStream = "application/offset+octet-stream"
)

// CodeOffsetMismatch (409) answers a PATCH whose Upload-Offset is not the
// upload's current offset; the answer's Upload-Offset header has the
// current one.
const CodeOffsetMismatch = "offset_mismatch"

// Attachment limits.
const (
	// MaxAttachmentSize is the largest attachment plaintext a server
	// accepts by default (doorlessd --max-attachment), 100 MiB. The
	// largest blob is AttachmentBlobSize of it.
	MaxAttachmentSize = 100 << 20
	// AttachmentIDSize is the entropy of an attachment id, in bytes: the id
	// is the capability to download, so it must not be guessable.
	AttachmentIDSize = 32
	// attachmentIDLen is the length of an id in unpadded base64url.
	attachmentIDLen = 43
	// attachmentMinPadded is the smallest padded plaintext, from Signal's
	// PaddingInputStream.getPaddedSize.
	attachmentMinPadded = 541
	// attachmentPadBase is the ratio between successive size buckets, from
	// the same function.
	attachmentPadBase = 1.05
	// attachmentOverhead is the IV (16 bytes) and the HMAC-SHA256 tag (32
	// bytes) around the ciphertext.
	attachmentOverhead = 16 + 32
	// maxAttachmentPlain bounds what AttachmentPaddedSize accepts (1 TiB):
	// far above any configured limit, and small enough that the float
	// arithmetic below is exact to the byte.
	maxAttachmentPlain = 1 << 40
)

// AttachmentCreateRequest is the body of POST /v1/attachments: the size of
// the blob (the ciphertext) to be uploaded.
type AttachmentCreateRequest struct {
	Size int64 `json:"size"`
}

// AttachmentCreateResponse answers POST /v1/attachments (201). UploadToken
// authorizes PATCH and HEAD on this upload as "Authorization: Bearer
// <token>"; the server keeps only its SHA-256. MaxChunk bounds one PATCH
// body.
type AttachmentCreateResponse struct {
	ID          string `json:"id"`
	UploadToken string `json:"upload_token"`
	MaxChunk    int64  `json:"max_chunk"`
}

// ValidAttachmentID reports whether s is an attachment id: 32 bytes in
// canonical unpadded base64url (43 characters).
func ValidAttachmentID(s string) bool {
	if len(s) != attachmentIDLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == AttachmentIDSize
}

// AttachmentPaddedSize is the size plaintext of n bytes is zero-padded to
// before encryption, so that the blob's size reveals only a bucket:
// max(541, floor(1.05^ceil(log_1.05(n)))), as Signal's
// PaddingInputStream.getPaddedSize computes it, and never less than n. It
// returns -1 for n < 0 or n > 1 TiB.
func AttachmentPaddedSize(n int64) int64 {
	if n < 0 || n > maxAttachmentPlain {
		return -1
	}
	p := int64(attachmentMinPadded)
	if n > 1 {
		f := math.Floor(math.Pow(attachmentPadBase, math.Ceil(math.Log(float64(n))/math.Log(attachmentPadBase))))
		p = max(p, int64(f))
	}
	// Float rounding must never cut into the plaintext.
	return max(p, n)
}

// AttachmentBlobSize is the size of the blob that carries n bytes of
// plaintext: IV (16) ‖ AES-256-CBC with PKCS#7 of the padded plaintext ‖
// HMAC-SHA256 (32). It returns -1 for n < 0 or n > 1 TiB.
func AttachmentBlobSize(n int64) int64 {
	p := AttachmentPaddedSize(n)
	if p < 0 {
		return -1
	}
	return attachmentOverhead + (p/16+1)*16
}
