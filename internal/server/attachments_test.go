package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/blob"
)

// testClock is a settable clock shared by the server and its blob store.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// attEnv is a server with attachments in a fresh directory, chunks of at
// most 1000 bytes, and a settable clock.
type attEnv struct {
	*env
	clock *testClock
	dir   string
}

func newAttEnv(t *testing.T, mod func(*Config)) *attEnv {
	t.Helper()
	clk := &testClock{t: time.Now()}
	dir := filepath.Join(t.TempDir(), "attachments")
	blobs, err := blob.NewFS(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.Blobs = blobs
		c.MaxAttachmentChunk = 1000
		c.Now = clk.now
		if mod != nil {
			mod(c)
		}
	})
	return &attEnv{env: e, clock: clk, dir: dir}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 3))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// create makes an upload of size bytes as u.
func (e *attEnv) create(u *user, size int64) api.AttachmentCreateResponse {
	e.t.Helper()
	resp := e.do(u, "POST", api.PathAttachments, api.AttachmentCreateRequest{Size: size})
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("create: status %d", resp.StatusCode)
	}
	var cr api.AttachmentCreateResponse
	e.ok(resp, &cr)
	if !api.ValidAttachmentID(cr.ID) || len(cr.UploadToken) != 43 || cr.MaxChunk != 1000 {
		e.t.Fatalf("create answered %+v", cr)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/attachments/"+cr.ID {
		e.t.Errorf("Location %q", loc)
	}
	return cr
}

// raw makes a request with exactly the given headers (each "Name: value").
func (e *attEnv) raw(method, path string, body io.Reader, headers ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.hs.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *attEnv) patch(cr api.AttachmentCreateResponse, offset int64, chunk []byte) *http.Response {
	e.t.Helper()
	return e.raw("PATCH", "/v1/attachments/"+cr.ID, bytes.NewReader(chunk),
		"Authorization: Bearer "+cr.UploadToken,
		"Content-Type: "+api.ContentTypeOffsetOctetStream,
		"Upload-Offset: "+strconv.FormatInt(offset, 10))
}

// patchOK uploads one chunk and checks the new offset.
func (e *attEnv) patchOK(cr api.AttachmentCreateResponse, offset int64, chunk []byte) int64 {
	e.t.Helper()
	resp := e.patch(cr, offset, chunk)
	resp.Body.Close()
	next := offset + int64(len(chunk))
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.FormatInt(next, 10) {
		e.t.Fatalf("PATCH at %d: %d, Upload-Offset %q; want 204, %d", offset, resp.StatusCode, resp.Header.Get("Upload-Offset"), next)
	}
	return next
}

// head returns the upload's offset and length.
func (e *attEnv) head(cr api.AttachmentCreateResponse) (offset, length int64) {
	e.t.Helper()
	resp := e.raw("HEAD", "/v1/attachments/"+cr.ID, nil, "Authorization: Bearer "+cr.UploadToken)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	offset, err1 := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	length, err2 := strconv.ParseInt(resp.Header.Get("Upload-Length"), 10, 64)
	if err1 != nil || err2 != nil {
		e.t.Fatalf("HEAD headers %v", resp.Header)
	}
	return offset, length
}

// download GETs the blob with the given extra headers.
func (e *attEnv) download(id string, headers ...string) (*http.Response, []byte) {
	e.t.Helper()
	resp := e.raw("GET", "/v1/attachments/"+id, nil, headers...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// uploadAll uploads want in chunks of 1000.
func (e *attEnv) uploadAll(u *user, want []byte) api.AttachmentCreateResponse {
	e.t.Helper()
	cr := e.create(u, int64(len(want)))
	var off int64
	for off < int64(len(want)) {
		off = e.patchOK(cr, off, want[off:min(off+1000, int64(len(want)))])
	}
	return cr
}

func TestAttachmentUploadDownload(t *testing.T) {
	var logs syncBuffer
	e := newAttEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	alice := e.register("alice", 0, 0)
	want := randomBytes(3500)
	cr := e.create(alice, int64(len(want)))

	if off, length := e.head(cr); off != 0 || length != 3500 {
		t.Fatalf("HEAD of a fresh upload: %d/%d", off, length)
	}
	e.fails(e.raw("GET", "/v1/attachments/"+cr.ID, nil), 404, api.CodeNotFound) // not finished
	var off int64
	for off < 3000 {
		off = e.patchOK(cr, off, want[off:off+1000])
	}
	if o, length := e.head(cr); o != 3000 || length != 3500 {
		t.Fatalf("HEAD mid-way: %d/%d", o, length)
	}
	e.patchOK(cr, off, want[off:])
	if o, _ := e.head(cr); o != 3500 {
		t.Fatalf("HEAD when finished: %d", o)
	}

	// Anyone with the id downloads it, without credentials.
	resp, got := e.download(cr.ID)
	if resp.StatusCode != 200 || !bytes.Equal(got, want) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(got))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" || resp.Header.Get("Last-Modified") != "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("download headers %v", resp.Header)
	}
	// Range requests, so that downloads resume.
	resp, got = e.download(cr.ID, "Range: bytes=1000-1999")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, want[1000:2000]) || resp.Header.Get("Content-Range") != "bytes 1000-1999/3500" {
		t.Fatalf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(got))
	}
	resp, got = e.download(cr.ID, "Range: bytes=3000-")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, want[3000:]) {
		t.Fatalf("open range: %d, %d bytes", resp.StatusCode, len(got))
	}
	if resp, _ = e.download(cr.ID, "Range: bytes=4000-"); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", resp.StatusCode)
	}

	m := e.metrics()
	for _, w := range []string{
		"doorless_attachment_bytes_uploaded_total 3500",
		"doorless_attachments_stored_total 1",
		`doorless_http_requests_total{route="GET /v1/attachments/{id}",status="206"} 2`,
	} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %q", w)
		}
	}
	// Neither the id (the download capability) nor the token is logged or
	// counted.
	for _, secret := range []string{cr.ID, cr.UploadToken} {
		if strings.Contains(logs.String(), secret) || strings.Contains(m, secret) {
			t.Errorf("%q logged or counted", secret)
		}
	}
	if !strings.Contains(logs.String(), `"route":"GET /v1/attachments/{id}"`) {
		t.Error("downloads not logged by route")
	}
}

// TestAttachmentResume: a chunk whose connection is cut is not
// acknowledged; HEAD tells where to continue.
func TestAttachmentResume(t *testing.T) {
	e := newAttEnv(t, nil)
	alice := e.register("alice", 0, 0)
	want := randomBytes(2500)
	cr := e.create(alice, int64(len(want)))
	off := e.patchOK(cr, 0, want[:1000])

	// The body breaks off after 600 of the 1000 bytes it announced.
	req, _ := http.NewRequest("PATCH", e.hs.URL+"/v1/attachments/"+cr.ID,
		io.MultiReader(bytes.NewReader(want[1000:1600]), errReader{}))
	req.ContentLength = 1000
	req.Header.Set("Authorization", "Bearer "+cr.UploadToken)
	req.Header.Set("Content-Type", api.ContentTypeOffsetOctetStream)
	req.Header.Set("Upload-Offset", "1000")
	if resp, err := e.hs.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("cut request answered %d", resp.StatusCode)
	}

	// HEAD says where to continue. (If the server has not yet seen the
	// cut, the next PATCH waits for the cut one to fail.)
	if got, _ := e.head(cr); got != off {
		t.Fatalf("HEAD after a cut: %d, want %d", got, off)
	}
	for off < int64(len(want)) {
		off = e.patchOK(cr, off, want[off:min(off+1000, int64(len(want)))])
	}
	if resp, b := e.download(cr.ID); resp.StatusCode != 200 || !bytes.Equal(b, want) {
		t.Fatalf("download after resume: %d", resp.StatusCode)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("cut") }

func TestAttachmentRefusals(t *testing.T) {
	e := newAttEnv(t, func(c *Config) { c.MaxAttachment = 10_000 })
	alice := e.register("alice", 0, 0)
	maxBlob := api.AttachmentBlobSize(10_000)
	cr := e.create(alice, 1500)
	e.patchOK(cr, 0, randomBytes(1000))
	path := "/v1/attachments/" + cr.ID
	bearer := "Authorization: Bearer " + cr.UploadToken
	ct := "Content-Type: " + api.ContentTypeOffsetOctetStream
	chunk := func(n int) *bytes.Reader { return bytes.NewReader(randomBytes(n)) }

	// Creation.
	e.fails(e.do(nil, "POST", api.PathAttachments, api.AttachmentCreateRequest{Size: 10}), 401, api.CodeUnauthorized)
	e.fails(e.do(alice, "POST", api.PathAttachments, api.AttachmentCreateRequest{Size: maxBlob + 1}), 413, api.CodeTooLarge)
	e.fails(e.do(alice, "POST", api.PathAttachments, api.AttachmentCreateRequest{Size: 0}), 400, api.CodeBadRequest)
	e.fails(e.do(alice, "POST", api.PathAttachments, `{"size":10,"owner":"alice"}`), 400, api.CodeBadRequest)
	e.create(alice, maxBlob) // the ceiling itself is fine

	// Credentials: the upload token, nothing else.
	e.fails(e.raw("PATCH", path, chunk(10), ct, "Upload-Offset: 1000"), 401, api.CodeUnauthorized)
	e.fails(e.raw("PATCH", path, chunk(10), ct, "Upload-Offset: 1000", "Authorization: Bearer wrong"), 401, api.CodeUnauthorized)
	e.fails(e.raw("PATCH", path, chunk(10), ct, "Upload-Offset: 1000", "Authorization: "+alice.auth()), 401, api.CodeUnauthorized)
	other := e.create(alice, 100)
	e.fails(e.raw("PATCH", path, chunk(10), ct, "Upload-Offset: 1000", "Authorization: Bearer "+other.UploadToken), 401, api.CodeUnauthorized)
	if resp := e.raw("HEAD", path, nil, "Authorization: Bearer wrong"); resp.StatusCode != 401 {
		t.Errorf("HEAD with a wrong token: %d", resp.StatusCode)
	}
	// Unknown and malformed ids.
	e.fails(e.raw("PATCH", "/v1/attachments/"+blob.NewID(), chunk(10), ct, "Upload-Offset: 0", bearer), 404, api.CodeNotFound)
	e.fails(e.raw("PATCH", "/v1/attachments/..%2F..%2Fx", chunk(10), ct, "Upload-Offset: 0", bearer), 404, api.CodeNotFound)
	e.fails(e.raw("GET", "/v1/attachments/"+blob.NewID(), nil), 404, api.CodeNotFound)
	e.fails(e.raw("GET", "/v1/attachments/short", nil), 404, api.CodeNotFound)

	// The request itself.
	e.fails(e.raw("PATCH", path, chunk(10), "Upload-Offset: 1000", bearer, "Content-Type: application/octet-stream"), 415, api.CodeUnsupportedMedia)
	e.fails(e.raw("PATCH", path, chunk(10), ct, bearer), 400, api.CodeBadRequest)
	e.fails(e.raw("PATCH", path, chunk(10), ct, bearer, "Upload-Offset: -1"), 400, api.CodeBadRequest)
	e.fails(e.raw("PATCH", path, chunk(10), ct, bearer, "Upload-Offset: ten"), 400, api.CodeBadRequest)
	for _, o := range []string{"0", "999", "1001", "1500"} {
		resp := e.raw("PATCH", path, chunk(10), ct, bearer, "Upload-Offset: "+o)
		if h := resp.Header.Get("Upload-Offset"); h != "1000" {
			t.Errorf("409 for offset %s has Upload-Offset %q", o, h)
		}
		e.fails(resp, 409, api.CodeOffsetMismatch)
	}
	e.fails(e.raw("PATCH", path, chunk(501), ct, bearer, "Upload-Offset: 1000"), 413, api.CodeTooLarge) // past the declared size
	big := e.create(alice, 5000)
	e.fails(e.raw("PATCH", "/v1/attachments/"+big.ID, chunk(1001), ct, "Upload-Offset: 0", "Authorization: Bearer "+big.UploadToken), 413, api.CodeTooLarge) // over max_chunk
	// The same without Content-Length (chunked transfer): the body is
	// bounded as it is read.
	e.fails(e.raw("PATCH", "/v1/attachments/"+big.ID, io.MultiReader(chunk(1001)), ct, "Upload-Offset: 0", "Authorization: Bearer "+big.UploadToken), 413, api.CodeTooLarge)
	e.fails(e.raw("PATCH", path, io.MultiReader(chunk(501)), ct, bearer, "Upload-Offset: 1000"), 413, api.CodeTooLarge)

	// None of it changed anything.
	if off, _ := e.head(cr); off != 1000 {
		t.Fatalf("offset %d after refusals", off)
	}
	if off, _ := e.head(big); off != 0 {
		t.Fatalf("offset %d after refusals", off)
	}
	e.patchOK(cr, 1000, randomBytes(500))
	// A finished upload takes nothing more.
	e.fails(e.raw("PATCH", path, chunk(1), ct, bearer, "Upload-Offset: 1500"), 413, api.CodeTooLarge)
}

func TestAttachmentExpiry(t *testing.T) {
	e := newAttEnv(t, func(c *Config) { c.AttachmentTTL = 48 * time.Hour })
	alice := e.register("alice", 0, 0)
	old := e.uploadAll(alice, randomBytes(1200))
	stalled := e.create(alice, 3000)
	e.patchOK(stalled, 0, randomBytes(1000))
	slow := e.create(alice, 3000)

	e.clock.add(23 * time.Hour)
	e.patchOK(slow, 0, randomBytes(1000))
	e.clock.add(2 * time.Hour)
	e.srv.sweep(context.Background())
	if resp := e.raw("HEAD", "/v1/attachments/"+stalled.ID, nil, "Authorization: Bearer "+stalled.UploadToken); resp.StatusCode != 404 {
		t.Fatalf("stalled upload: HEAD %d, want 404", resp.StatusCode)
	}
	if off, _ := e.head(slow); off != 1000 {
		t.Fatalf("slow upload at %d", off)
	}
	if resp, _ := e.download(old.ID); resp.StatusCode != 200 {
		t.Fatalf("blob gone before its TTL: %d", resp.StatusCode)
	}
	fresh := e.uploadAll(alice, randomBytes(800))

	e.clock.add(24 * time.Hour)
	e.srv.sweep(context.Background())
	e.fails(e.raw("GET", "/v1/attachments/"+old.ID, nil), 404, api.CodeNotFound)
	if resp, _ := e.download(fresh.ID); resp.StatusCode != 200 {
		t.Fatalf("fresh blob: %d", resp.StatusCode)
	}
	m := e.metrics()
	for _, w := range []string{`doorless_attachments_expired_total{kind="blob"} 1`, `doorless_attachments_expired_total{kind="upload"} 2`} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %q", w)
		}
	}
}

func TestAttachmentRateLimits(t *testing.T) {
	e := newAttEnv(t, func(c *Config) { c.AccountRate = RateLimit{Rate: 0.001, Burst: 2} })
	alice := e.register("alice", 0, 0)
	e.create(alice, 10)
	e.create(alice, 10)
	e.fails(e.do(alice, "POST", api.PathAttachments, api.AttachmentCreateRequest{Size: 10}), 429, api.CodeRateLimited)

	e = newAttEnv(t, func(c *Config) { c.IPRate = RateLimit{Rate: 0.001, Burst: 3} })
	id := blob.NewID()
	for range 3 {
		e.fails(e.raw("GET", "/v1/attachments/"+id, nil), 404, api.CodeNotFound)
	}
	e.fails(e.raw("GET", "/v1/attachments/"+id, nil), 429, api.CodeRateLimited)
}

func TestAttachmentsDisabled(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	e.fails(e.do(alice, "POST", api.PathAttachments, api.AttachmentCreateRequest{Size: 10}), 404, api.CodeNotFound)
	e.fails(e.do(nil, "GET", "/v1/attachments/"+blob.NewID(), nil), 404, api.CodeNotFound)
}

func TestAttachmentConfig(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.MaxAttachment = -1 },
		func(c *Config) { c.MaxAttachment = 1 << 41 },
		func(c *Config) { c.MaxAttachmentChunk = -1 },
		func(c *Config) { c.AttachmentTTL = -time.Second },
	} {
		cfg := Config{Store: &expiryStore{}}
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", fmt.Sprint(cfg.MaxAttachment, cfg.MaxAttachmentChunk, cfg.AttachmentTTL))
		}
	}
}
