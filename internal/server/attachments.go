package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/blob"
	"github.com/doorless/doorless/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Attachment defaults and fixed limits.
const (
	// DefaultAttachmentTTL is how long a finished attachment is kept: as
	// long as an envelope that refers to it can wait in a queue.
	DefaultAttachmentTTL = DefaultMessageTTL
	// DefaultMaxAttachmentChunk bounds one PATCH body.
	DefaultMaxAttachmentChunk = 8 << 20
	// AttachmentIdleTimeout is how long an unfinished upload is kept
	// without progress.
	AttachmentIdleTimeout = 24 * time.Hour
	// chunkReadTimeout replaces the server's read timeout for a PATCH
	// body, so that a chunk of 8 MiB can come over a slow link (14 KB/s).
	chunkReadTimeout = 10 * time.Minute
	// maxCreateBody bounds the body of POST /v1/attachments.
	maxCreateBody = 1 << 10
)

// attachments is the server's attachment state; blobs is nil when
// attachments are disabled.
type attachments struct {
	blobs    blob.Store
	maxBlob  int64 // api.AttachmentBlobSize(Config.MaxAttachment)
	maxChunk int64

	uploaded prometheus.Counter
	stored   prometheus.Counter
	expired  *prometheus.CounterVec // kind: blob, upload
}

// newAttachments checks and defaults the attachment part of cfg and
// registers its metrics.
func newAttachments(cfg *Config) (*attachments, error) {
	switch {
	case cfg.MaxAttachment == 0:
		cfg.MaxAttachment = api.MaxAttachmentSize
	case cfg.MaxAttachment < 0 || api.AttachmentBlobSize(cfg.MaxAttachment) < 0:
		return nil, fmt.Errorf("server: max attachment %d out of range", cfg.MaxAttachment)
	}
	if err := orDefault(&cfg.MaxAttachmentChunk, DefaultMaxAttachmentChunk, "max attachment chunk"); err != nil {
		return nil, err
	}
	if err := orDefault(&cfg.AttachmentTTL, DefaultAttachmentTTL, "attachment ttl"); err != nil {
		return nil, err
	}
	a := &attachments{
		blobs:    cfg.Blobs,
		maxBlob:  api.AttachmentBlobSize(cfg.MaxAttachment),
		maxChunk: cfg.MaxAttachmentChunk,
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_attachment_bytes_uploaded_total",
			Help: "Attachment blob bytes acknowledged to uploaders.",
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_attachments_stored_total",
			Help: "Attachment uploads completed.",
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doorless_attachments_expired_total",
			Help: "Attachments deleted by the sweeper: finished blobs past the TTL, uploads idle for a day.",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{a.uploaded, a.stored, a.expired} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %v", err)
		}
	}
	return a, nil
}

// attachmentRoutes registers the attachment endpoints, when attachments
// are enabled. Uploads past the creation and downloads are charged to the
// IP: they carry no device credentials, so that the server does not learn
// which account continues an upload or fetches a blob.
func (s *Server) attachmentRoutes(handle func(string, handlerFunc)) {
	if s.att.blobs == nil {
		return
	}
	handle("POST "+api.PathAttachments, s.limitIP(s.authed(s.handleCreateAttachment)))
	handle("PATCH "+api.PathAttachment, s.limitIP(s.handleUploadChunk))
	handle("HEAD "+api.PathAttachment, s.limitIP(s.handleUploadStatus))
	handle("GET "+api.PathAttachment, s.limitIP(s.handleDownload))
}

// sweepAttachments deletes expired blobs and idle uploads.
func (s *Server) sweepAttachments(ctx context.Context, now time.Time) {
	if s.att.blobs == nil {
		return
	}
	b, p, err := s.att.blobs.Expire(ctx, now.Add(-s.cfg.AttachmentTTL), now.Add(-AttachmentIdleTimeout))
	if err != nil && ctx.Err() == nil {
		s.log.Error("attachment expiry failed", "err", err)
	}
	if b > 0 || p > 0 {
		s.att.expired.WithLabelValues("blob").Add(float64(b))
		s.att.expired.WithLabelValues("upload").Add(float64(p))
		s.log.Info("expired attachments", "blobs", b, "uploads", p)
	}
}

func (s *Server) handleCreateAttachment(w http.ResponseWriter, r *http.Request, _ *store.Device) error {
	var req api.AttachmentCreateRequest
	if err := decode(w, r, maxCreateBody, &req); err != nil {
		return err
	}
	if req.Size <= 0 {
		return badRequest("size must be positive")
	}
	if req.Size > s.att.maxBlob {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "attachment blob over %d bytes", s.att.maxBlob)
	}
	token, hash := newPassword()
	id, err := s.att.blobs.Create(r.Context(), req.Size, [sha256.Size]byte(hash))
	if err != nil {
		return err
	}
	w.Header().Set("Location", strings.Replace(api.PathAttachment, "{id}", id, 1))
	writeJSON(w, http.StatusCreated, api.AttachmentCreateResponse{ID: id, UploadToken: token, MaxChunk: s.att.maxChunk})
	return nil
}

var (
	errNoAttachment = errorf(http.StatusNotFound, api.CodeNotFound, "no such attachment")
	errUploadToken  = errorf(http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong upload token")
)

// upload checks the path's id and the request's upload token and returns
// the upload. An unknown id is 404, a missing or wrong token 401.
func (s *Server) upload(r *http.Request) (string, *blob.Info, error) {
	id := r.PathValue("id")
	if !api.ValidAttachmentID(id) {
		return "", nil, errNoAttachment
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return "", nil, errUploadToken
	}
	info, err := s.att.blobs.Stat(r.Context(), id)
	if errors.Is(err, blob.ErrNotFound) {
		return "", nil, errNoAttachment
	}
	if err != nil {
		return "", nil, err
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], info.TokenHash[:]) != 1 {
		return "", nil, errUploadToken
	}
	return id, info, nil
}

func offsetConflict(w http.ResponseWriter, cur int64) error {
	w.Header().Set(api.HeaderUploadOffset, strconv.FormatInt(cur, 10))
	return errorf(http.StatusConflict, api.CodeOffsetMismatch, "the upload is at offset %d", cur)
}

func (s *Server) handleUploadChunk(w http.ResponseWriter, r *http.Request) error {
	id, info, err := s.upload(r)
	if err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != api.ContentTypeOffsetOctetStream {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "content type must be %s", api.ContentTypeOffsetOctetStream)
	}
	offset, err := strconv.ParseInt(r.Header.Get(api.HeaderUploadOffset), 10, 64)
	if err != nil || offset < 0 {
		return badRequest("missing or malformed %s header", api.HeaderUploadOffset)
	}
	if offset != info.Offset {
		return offsetConflict(w, info.Offset)
	}
	if r.ContentLength > s.att.maxChunk {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "chunk over %d bytes", s.att.maxChunk)
	}
	if r.ContentLength > info.Size-offset {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "chunk past the declared size %d", info.Size)
	}
	// A chunk may take longer than the server's read timeout.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(chunkReadTimeout))
	body := &readErrReader{r: http.MaxBytesReader(w, r.Body, s.att.maxChunk)}
	next, err := s.att.blobs.Append(r.Context(), id, offset, body)
	if next > offset {
		s.att.uploaded.Add(float64(next - offset))
		if next == info.Size {
			s.att.stored.Inc()
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
	case errors.Is(err, blob.ErrOffsetMismatch):
		return offsetConflict(w, next)
	case errors.Is(err, blob.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "chunk past the declared size %d", info.Size)
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "chunk over %d bytes", s.att.maxChunk)
	case body.err != nil:
		// The body broke off (a cut connection): nothing was
		// acknowledged, and the client resumes from HEAD.
		return badRequest("chunk body incomplete")
	default:
		return err
	}
	w.Header().Set(api.HeaderUploadOffset, strconv.FormatInt(next, 10))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// readErrReader remembers a read error other than EOF, to tell a body that
// broke off from a failing store.
type readErrReader struct {
	r   io.Reader
	err error
}

func (b *readErrReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (s *Server) handleUploadStatus(w http.ResponseWriter, r *http.Request) error {
	_, info, err := s.upload(r)
	if err != nil {
		return err
	}
	w.Header().Set(api.HeaderUploadOffset, strconv.FormatInt(info.Offset, 10))
	w.Header().Set(api.HeaderUploadLength, strconv.FormatInt(info.Size, 10))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// handleDownload serves a finished blob, with Range requests, to anyone who
// knows its id.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !api.ValidAttachmentID(id) {
		return errNoAttachment
	}
	rd, _, err := s.att.blobs.Open(r.Context(), id)
	if errors.Is(err, blob.ErrNotFound) {
		return errNoAttachment
	}
	if err != nil {
		return err
	}
	defer rd.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// No name (no type sniffing) and no modification time (no
	// Last-Modified: when it was uploaded is not the downloader's business).
	http.ServeContent(w, r, "", time.Time{}, rd)
	return nil
}
