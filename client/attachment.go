package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/doorless/doorless/client/internal/attachment"
	"github.com/doorless/doorless/internal/api"
)

// Attachment errors a caller branches on (errors.Is).
var (
	// ErrAttachmentInvalid: a downloaded attachment failed verification (its
	// digest or MAC does not match the message, or it is malformed), or the
	// message's description of it is malformed. Nothing was written to the
	// destination.
	ErrAttachmentInvalid = errors.New("client: attachment failed verification")
	// ErrAttachmentNotFound: the server has no such attachment (it expired,
	// or its upload never finished).
	ErrAttachmentNotFound = errors.New("client: attachment not found")
	// ErrAttachmentTooLarge: the attachment is over the server's limit
	// (api.MaxAttachmentSize at most).
	ErrAttachmentTooLarge = errors.New("client: attachment too large")
)

// Attachment transfers; variables for the tests.
var (
	// transferIdleTimeout ends a request of an attachment transfer that
	// moved no byte for this long; the transfer then resumes.
	transferIdleTimeout = 30 * time.Second
	// maxTransferRetries bounds the consecutive attempts that make no
	// progress before a transfer gives up.
	maxTransferRetries = 8
)

// errStalled is the cause of a request ended by transferIdleTimeout.
var errStalled = errors.New("client: transfer stalled")

// uploadAttachment encrypts size bytes of src (see package attachment) to a
// temporary file in the profile directory, uploads the blob in chunks and
// returns its Pointer, for the message that carries it. progress, when not
// nil, is called from this goroutine with the blob bytes the server has
// acknowledged and the blob size.
//
// A chunk whose request fails in transit (a cut connection, a stall, a 5xx
// or 429 answer) is not lost: the server is asked (HEAD) how much it has,
// and the upload continues from there, after a backoff (backoffMin doubling
// to backoffMax), giving up after maxTransferRetries attempts in a row
// without progress. The temporary file, which holds ciphertext only, is
// removed in every case.
func (c *Client) uploadAttachment(ctx context.Context, src io.Reader, size int64, progress func(done, total int64)) (*attachment.Pointer, error) {
	if size < 0 {
		return nil, errors.New("client: negative attachment size")
	}
	if size > api.MaxAttachmentSize {
		return nil, ErrAttachmentTooLarge
	}
	tmp, err := os.CreateTemp(c.dir, "attachment-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("client: attachment temporary file: %v", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	p, err := attachment.Encrypt(tmp, src, size, randReader)
	if err != nil {
		return nil, fmt.Errorf("client: encrypting attachment: %w", err)
	}

	var cr api.AttachmentCreateResponse
	if err := c.do(ctx, http.MethodPost, api.PathAttachments, api.AttachmentCreateRequest{Size: p.BlobSize}, &cr); err != nil {
		if _, ok := isCode(err, api.CodeTooLarge); ok {
			return nil, ErrAttachmentTooLarge
		}
		return nil, fmt.Errorf("client: creating attachment upload: %w", err)
	}
	if !api.ValidAttachmentID(cr.ID) || cr.UploadToken == "" || cr.MaxChunk <= 0 {
		return nil, errors.New("client: creating attachment upload: the server's answer is malformed")
	}
	p.ID = cr.ID
	u := &upload{c: c, hc: c.transferClient(), url: c.serverURL + pathFor(api.PathAttachment, "{id}", cr.ID), token: cr.UploadToken, f: tmp, size: p.BlobSize}

	var off int64
	r := retrier{}
	for off < p.BlobSize {
		next, err := u.patch(ctx, off, min(cr.MaxChunk, p.BlobSize-off))
		if err == nil && (next <= off || next > p.BlobSize) {
			return nil, fmt.Errorf("client: attachment upload: the server answered offset %d to a chunk at %d", next, off)
		}
		var oe *offsetError
		switch {
		case err == nil:
		case errors.As(err, &oe):
			// The server stored more or less than we thought (an answer
			// lost after it stored a chunk): continue from its offset.
			if oe.offset > p.BlobSize {
				return nil, fmt.Errorf("client: attachment upload: the server answered offset %d past the blob's end", oe.offset)
			}
			next = oe.offset
			if next <= off {
				if err := r.wait(ctx, err); err != nil {
					return nil, err
				}
			}
		case retryable(err):
			if err := r.wait(ctx, err); err != nil {
				return nil, err
			}
			if next, err = u.head(ctx); err != nil {
				if !retryable(err) {
					return nil, err
				}
				continue
			}
		default:
			return nil, err
		}
		if next > off {
			r.reset()
			if progress != nil {
				progress(next, p.BlobSize)
			}
		}
		off = next
	}
	return p, nil
}

// downloadAttachment downloads the blob p describes to a temporary file
// next to dst, verifies it (digest and MAC, padding), and only then writes
// the plaintext to another temporary file there, which it renames to dst
// (mode 0600). So dst never holds unverified or partial plaintext: it is
// either untouched or complete. progress, when not nil, is called from this
// goroutine with the blob bytes downloaded and the blob size.
//
// A download cut or stalled part way resumes where it stopped (a Range
// request), with the backoff and bound of uploadAttachment. A blob that
// fails verification is ErrAttachmentInvalid; one the server does not have,
// ErrAttachmentNotFound. The temporary files are removed in every case.
func (c *Client) downloadAttachment(ctx context.Context, p *attachment.Pointer, dst string, progress func(done, total int64)) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrAttachmentInvalid, err)
	}
	dir := filepath.Dir(dst)
	blobFile, err := os.CreateTemp(dir, ".doorless-attachment-*.blob")
	if err != nil {
		return fmt.Errorf("client: attachment temporary file: %v", err)
	}
	defer func() {
		blobFile.Close()
		os.Remove(blobFile.Name())
	}()

	if err := c.getBlob(ctx, p, blobFile, progress); err != nil {
		return err
	}

	out, err := os.CreateTemp(dir, ".doorless-attachment-*.part")
	if err != nil {
		return fmt.Errorf("client: attachment temporary file: %v", err)
	}
	done := false
	defer func() {
		if !done {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	if err := attachment.Decrypt(out, blobFile, p.BlobSize, p); err != nil {
		if errors.Is(err, attachment.ErrBadMAC) || errors.Is(err, attachment.ErrDigestMismatch) || errors.Is(err, attachment.ErrMalformed) {
			return fmt.Errorf("%w: %v", ErrAttachmentInvalid, err)
		}
		return fmt.Errorf("client: decrypting attachment: %v", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("client: writing attachment: %v", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("client: writing attachment: %v", err)
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		return fmt.Errorf("client: writing attachment: %v", err)
	}
	done = true
	return nil
}

// getBlob downloads an attachment's blob into f, resuming with Range
// requests after a cut.
func (c *Client) getBlob(ctx context.Context, p *attachment.Pointer, f *os.File, progress func(done, total int64)) error {
	d := &download{hc: c.transferClient(), url: c.serverURL + pathFor(api.PathAttachment, "{id}", p.ID), f: f, size: p.BlobSize}
	var have int64
	r := retrier{}
	for have < p.BlobSize {
		next, err := d.get(ctx, have)
		if next > have {
			r.reset()
			if progress != nil {
				progress(next, p.BlobSize)
			}
		}
		have = next
		if err == nil {
			continue
		}
		if !retryable(err) {
			return err
		}
		if err := r.wait(ctx, err); err != nil {
			return err
		}
	}
	return nil
}

// downloadBlob downloads an attachment's blob to dst, still encrypted,
// after checking its digest and MAC: a view-once attachment is kept so
// until it is opened.
func (c *Client) downloadBlob(ctx context.Context, p *attachment.Pointer, dst string, progress func(done, total int64)) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrAttachmentInvalid, err)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".doorless-attachment-*.blob")
	if err != nil {
		return fmt.Errorf("client: attachment temporary file: %v", err)
	}
	done := false
	defer func() {
		f.Close()
		if !done {
			os.Remove(f.Name())
		}
	}()
	if err := c.getBlob(ctx, p, f, progress); err != nil {
		return err
	}
	if err := attachment.Decrypt(io.Discard, f, p.BlobSize, p); err != nil {
		return fmt.Errorf("%w: %v", ErrAttachmentInvalid, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("client: writing attachment: %v", err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("client: writing attachment: %v", err)
	}
	done = true
	return nil
}

// transferClient is the device's HTTP client without its overall timeout,
// which would cut a large transfer: stalls are caught by
// transferIdleTimeout instead.
func (c *Client) transferClient() *http.Client {
	hc := *c.hc
	hc.Timeout = 0
	return &hc
}

// retrier counts attempts without progress and sleeps between them.
type retrier struct {
	failures int
	delay    time.Duration
}

func (r *retrier) reset() { r.failures, r.delay = 0, 0 }

// wait sleeps before the next attempt after err, or returns an error when
// the attempts are used up or ctx ends.
func (r *retrier) wait(ctx context.Context, err error) error {
	r.failures++
	if r.failures > maxTransferRetries {
		return fmt.Errorf("client: attachment transfer failed after %d attempts: %w", maxTransferRetries, err)
	}
	if r.delay == 0 {
		r.delay = backoffMin
	}
	// Jitter: somewhere in [delay/2, delay].
	wait := r.delay/2 + rand.N(r.delay/2+1)
	r.delay = min(r.delay*2, backoffMax)
	var ra *retryAfterError
	if errors.As(err, &ra) {
		wait = max(wait, ra.after)
	}
	if err := sleepCtx(ctx, wait); err != nil {
		return fmt.Errorf("client: attachment transfer: %w", err)
	}
	return nil
}

// retryable reports whether a transfer attempt that failed with err is
// worth another: the answer was lost in transit, or the server is briefly
// unable.
func retryable(err error) bool {
	var te *transportError
	var ra *retryAfterError
	var se *serverError
	return errors.As(err, &te) || errors.As(err, &ra) || errors.As(err, &se)
}

// offsetError is the server's 409: the upload is at another offset.
type offsetError struct{ offset int64 }

func (e *offsetError) Error() string {
	return fmt.Sprintf("client: attachment upload is at offset %d", e.offset)
}

// retryAfterError is a 429 or 503 answer with the time to wait.
type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// serverError is a 5xx answer: worth another try.
type serverError struct{ err error }

func (e *serverError) Error() string { return e.err.Error() }
func (e *serverError) Unwrap() error { return e.err }

// answerError turns a failed answer into an error: *api.Error for an error
// body, wrapped in retryAfterError for 429 and 503.
func answerError(resp *http.Response) error {
	err := fmt.Errorf("client: %s attachment: server answered %s", resp.Request.Method, resp.Status)
	if resp.StatusCode == http.StatusNotFound {
		return ErrAttachmentNotFound
	}
	var eb api.ErrorBody
	if b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); rerr == nil && json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		err = eb.Error
		if eb.Error.Code == api.CodeTooLarge {
			return fmt.Errorf("%w: %v", ErrAttachmentTooLarge, err)
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &retryAfterError{after: time.Duration(max(secs, 0)) * time.Second, err: err}
	}
	if resp.StatusCode >= 500 {
		return &serverError{err: err}
	}
	return err
}

// watchdog cancels a request's context when its body has not moved for
// transferIdleTimeout; kick records movement.
type watchdog struct {
	t *time.Timer
}

func newWatchdog(ctx context.Context) (context.Context, *watchdog, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{t: time.AfterFunc(transferIdleTimeout, func() { cancel(errStalled) })}
	return ctx, w, func() { w.t.Stop(); cancel(nil) }
}

func (w *watchdog) kick() { w.t.Reset(transferIdleTimeout) }

// kickReader kicks the watchdog on every read.
type kickReader struct {
	r io.Reader
	w *watchdog
}

func (k *kickReader) Read(b []byte) (int, error) {
	n, err := k.r.Read(b)
	if n > 0 {
		k.w.kick()
	}
	return n, err
}

// sendErr is the error of a request that got no answer: ctx's own error
// when the caller gave up, a retryable transportError otherwise (a cut
// connection, or the watchdog).
func sendErr(ctx context.Context, method string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("client: %s attachment: %w", method, ctx.Err())
	}
	return &transportError{err: err}
}

// upload is one attachment upload under way.
type upload struct {
	c     *Client
	hc    *http.Client
	url   string
	token string
	f     *os.File
	size  int64
}

// patch sends the n bytes of the blob at off and returns the new offset.
func (u *upload) patch(ctx context.Context, off, n int64) (int64, error) {
	rctx, wd, stop := newWatchdog(ctx)
	defer stop()
	body := func() io.ReadCloser {
		return io.NopCloser(&kickReader{r: io.NewSectionReader(u.f, off, n), w: wd})
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPatch, u.url, body())
	if err != nil {
		return 0, fmt.Errorf("client: %v", err)
	}
	req.ContentLength = n
	req.GetBody = func() (io.ReadCloser, error) { return body(), nil }
	req.Header.Set("Authorization", "Bearer "+u.token)
	req.Header.Set("Content-Type", api.ContentTypeOffsetOctetStream)
	req.Header.Set(api.HeaderUploadOffset, strconv.FormatInt(off, 10))
	resp, err := u.hc.Do(req)
	if err != nil {
		return 0, sendErr(ctx, http.MethodPatch, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return parseOffset(resp)
	case http.StatusConflict:
		cur, err := parseOffset(resp)
		if err != nil {
			return 0, err
		}
		return 0, &offsetError{offset: cur}
	}
	return 0, answerError(resp)
}

// head asks the server for the upload's offset.
func (u *upload) head(ctx context.Context) (int64, error) {
	rctx, _, stop := newWatchdog(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(rctx, http.MethodHead, u.url, nil)
	if err != nil {
		return 0, fmt.Errorf("client: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := u.hc.Do(req)
	if err != nil {
		return 0, sendErr(ctx, http.MethodHead, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, answerError(resp)
	}
	if l := resp.Header.Get(api.HeaderUploadLength); l != strconv.FormatInt(u.size, 10) {
		return 0, errors.New("client: attachment upload: the server's length differs from the blob's")
	}
	return parseOffset(resp)
}

func parseOffset(resp *http.Response) (int64, error) {
	off, err := strconv.ParseInt(resp.Header.Get(api.HeaderUploadOffset), 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("client: %s attachment: the server's answer has no valid %s", resp.Request.Method, api.HeaderUploadOffset)
	}
	return off, nil
}

// download is one attachment download under way.
type download struct {
	hc   *http.Client
	url  string
	f    *os.File
	size int64
}

// get downloads the blob from offset have on into the file, and returns how
// much of the blob the file now holds, also when it fails part way.
func (d *download) get(ctx context.Context, have int64) (int64, error) {
	rctx, wd, stop := newWatchdog(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, d.url, nil)
	if err != nil {
		return have, fmt.Errorf("client: %v", err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return have, sendErr(ctx, http.MethodGet, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		have = 0 // the whole blob, range or not
		if resp.ContentLength >= 0 && resp.ContentLength != d.size {
			return 0, fmt.Errorf("%w: the server's blob is %d bytes, want %d", ErrAttachmentInvalid, resp.ContentLength, d.size)
		}
	case resp.StatusCode == http.StatusPartialContent:
		if want := fmt.Sprintf("bytes %d-%d/%d", have, d.size-1, d.size); resp.Header.Get("Content-Range") != want {
			return have, fmt.Errorf("%w: the server answered range %q, want %q", ErrAttachmentInvalid, resp.Header.Get("Content-Range"), want)
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return have, fmt.Errorf("%w: the server's blob is shorter than the message says", ErrAttachmentInvalid)
	default:
		return have, answerError(resp)
	}
	// One byte more than the blob can hold tells a blob that is too long.
	n, err := io.Copy(io.NewOffsetWriter(d.f, have), io.LimitReader(&kickReader{r: resp.Body, w: wd}, d.size-have+1))
	have += n
	if have > d.size {
		return d.size, fmt.Errorf("%w: the server's blob is longer than the message says", ErrAttachmentInvalid)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return have, fmt.Errorf("client: writing attachment: %v", pe.Err)
		}
		return have, sendErr(ctx, http.MethodGet, err)
	}
	if have < d.size {
		return have, &transportError{err: errors.New("answer ended early")}
	}
	return have, nil
}
