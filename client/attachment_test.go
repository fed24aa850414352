package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/attachment"
	"github.com/doorless/doorless/internal/blob"
	"github.com/doorless/doorless/internal/server"
)

// newAttachmentServer is a test server that stores attachments in the
// returned directory.
func newAttachmentServer(t *testing.T) (*testServer, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "attachments")
	blobs, err := blob.NewFS(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newServer(t, func(c *server.Config) { c.Blobs = blobs }), dir
}

// cuttingDialer makes connections that it cuts once: the first time the
// bytes written (or read) over all its connections pass cutWrite (or
// cutRead).
type cuttingDialer struct {
	cutWrite, cutRead int64

	mu                sync.Mutex
	written, read     int64
	wroteCut, readCut bool
	dials             int
	requests          map[string]int
}

func (d *cuttingDialer) state() (wroteCut, readCut bool, dials int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wroteCut, d.readCut, d.dials
}

var errCut = errors.New("test: connection cut")

func (d *cuttingDialer) client() *http.Client {
	var nd net.Dialer
	return &http.Client{Transport: &countingTransport{rt: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			d.mu.Lock()
			d.dials++
			d.mu.Unlock()
			return &cutConn{Conn: c, d: d}, nil
		},
	}, counts: &d.requests}}
}

// countingTransport counts requests by method, and can lose the answer to
// the PATCH number losePatch (1-based) after the server has handled it.
type countingTransport struct {
	rt        http.RoundTripper
	mu        sync.Mutex
	counts    *map[string]int
	losePatch int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if *c.counts == nil {
		*c.counts = make(map[string]int)
	}
	(*c.counts)[req.Method]++
	lose := req.Method == http.MethodPatch && (*c.counts)[req.Method] == c.losePatch
	c.mu.Unlock()
	resp, err := c.rt.RoundTrip(req)
	if err == nil && lose {
		resp.Body.Close()
		return nil, errors.New("test: answer lost")
	}
	return resp, err
}

func (c *countingTransport) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (*c.counts)[method]
}

type cutConn struct {
	net.Conn
	d *cuttingDialer
}

// count adds n to a counter and reports whether the connection is to be
// cut now.
func (d *cuttingDialer) count(n int, total *int64, limit int64, done *bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	*total += int64(n)
	if limit > 0 && !*done && *total > limit {
		*done = true
		return true
	}
	return false
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.d.count(len(b), &c.d.written, c.d.cutWrite, &c.d.wroteCut) {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(b)
}

func (c *cutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.d.count(n, &c.d.read, c.d.cutRead, &c.d.readCut) {
		c.Conn.Close()
		return 0, errCut
	}
	return n, err
}

// stream is n pseudo-random bytes, the same for the same seed.
func stream(seed byte, n int64) io.Reader {
	var s [32]byte
	s[0] = seed
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// leftovers lists the files in dir other than the profile's database.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ProfileFile) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestAttachmentLarge: 50 MiB up and down, each cut part way and resumed,
// and the same bytes arrive.
func TestAttachmentLarge(t *testing.T) {
	start := time.Now()
	srv, _ := newAttachmentServer(t)
	d := &cuttingDialer{cutWrite: 20 << 20, cutRead: 20 << 20}
	alice, aliceDir := srv.register(t, "alice", Options{HTTPClient: d.client()})
	const size = 50 << 20
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	var last, calls int64
	p, err := alice.uploadAttachment(ctx, stream(1, size), size, func(done, total int64) {
		if done <= last || total != attachment.BlobSize(size) {
			t.Errorf("upload progress %d/%d after %d", done, total, last)
		}
		last, calls = done, calls+1
	})
	if err != nil {
		t.Fatal(err)
	}
	if wrote, _, dials := d.state(); !wrote || dials < 2 {
		t.Fatalf("the upload was not cut (cut %v, %d connections)", wrote, dials)
	}
	if n := alice.hc.Transport.(*countingTransport).count(http.MethodHead); n != 1 {
		t.Fatalf("%d HEAD requests, want 1 after the cut", n)
	}
	if last != p.BlobSize || p.Size != size {
		t.Fatalf("upload progress ended at %d of %d", last, p.BlobSize)
	}
	if l := leftovers(t, aliceDir); len(l) != 0 {
		t.Fatalf("upload left %v in the profile", l)
	}
	uploaded := time.Since(start)

	bob, _ := srv.register(t, "bob", Options{HTTPClient: d.client()})
	dst := filepath.Join(t.TempDir(), "received.bin")
	last = 0
	if err := bob.downloadAttachment(ctx, p, dst, func(done, total int64) {
		if done <= last || total != p.BlobSize {
			t.Errorf("download progress %d/%d after %d", done, total, last)
		}
		last = done
	}); err != nil {
		t.Fatal(err)
	}
	if _, read, _ := d.state(); !read {
		t.Fatal("the download was not cut")
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 || fi.Size() != size {
		t.Fatalf("received file: mode %v, %d bytes", fi.Mode(), fi.Size())
	}
	h1, h2 := sha256.New(), sha256.New()
	io.Copy(h1, f)
	io.Copy(h2, stream(1, size))
	if !bytes.Equal(h1.Sum(nil), h2.Sum(nil)) {
		t.Fatal("the received attachment differs from the sent one")
	}
	if l := leftovers(t, filepath.Dir(dst)); len(l) != 1 {
		t.Fatalf("download left %v next to the file", l)
	}
	t.Logf("50 MiB: upload %v (%d chunks), total %v", uploaded.Round(time.Millisecond), calls, time.Since(start).Round(time.Millisecond))
}

// uploadSmall uploads a small attachment for the tests below.
func uploadSmall(t *testing.T, c *Client, n int64) *attachment.Pointer {
	t.Helper()
	p, err := c.uploadAttachment(ctxT(t), stream(2, n), n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAttachmentTampered: a blob changed in the server's store is refused,
// and nothing lands at the destination.
func TestAttachmentTampered(t *testing.T) {
	srv, blobDir := newAttachmentServer(t)
	alice, _ := srv.register(t, "alice", Options{})
	p := uploadSmall(t, alice, 100_000)

	var blobPath string
	filepath.WalkDir(blobDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".blob") {
			blobPath = path
		}
		return nil
	})
	b, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != p.BlobSize {
		t.Fatalf("stored blob %d bytes, pointer says %d", len(b), p.BlobSize)
	}
	b[5000] ^= 0x40
	if err := os.WriteFile(blobPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "photo.jpg")
	err = alice.downloadAttachment(ctxT(t), p, dst, nil)
	if !errors.Is(err, ErrAttachmentInvalid) {
		t.Fatalf("tampered blob: %v, want ErrAttachmentInvalid", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("a refused download left %v", l)
	}

	// A message naming another digest (or key) is refused the same way.
	b[5000] ^= 0x40
	os.WriteFile(blobPath, b, 0o600)
	q := *p
	q.Key[0] ^= 1
	if err := alice.downloadAttachment(ctxT(t), &q, dst, nil); !errors.Is(err, ErrAttachmentInvalid) {
		t.Fatalf("wrong key: %v, want ErrAttachmentInvalid", err)
	}
	q = *p
	q.BlobSize += 16
	if err := alice.downloadAttachment(ctxT(t), &q, dst, nil); !errors.Is(err, ErrAttachmentInvalid) {
		t.Fatalf("wrong size: %v, want ErrAttachmentInvalid", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("refused downloads left %v", l)
	}
	// The untouched blob still arrives.
	if err := alice.downloadAttachment(ctxT(t), p, dst, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	want, _ := io.ReadAll(stream(2, 100_000))
	if !bytes.Equal(got, want) {
		t.Fatal("restored blob decrypts to something else")
	}
}

func TestAttachmentErrors(t *testing.T) {
	srv, _ := newAttachmentServer(t)
	alice, _ := srv.register(t, "alice", Options{})
	p := uploadSmall(t, alice, 10)
	q := *p
	q.ID = blob.NewID()
	dst := filepath.Join(t.TempDir(), "x")
	if err := alice.downloadAttachment(ctxT(t), &q, dst, nil); !errors.Is(err, ErrAttachmentNotFound) {
		t.Fatalf("unknown id: %v, want ErrAttachmentNotFound", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("destination created")
	}
	if _, err := alice.uploadAttachment(ctxT(t), stream(3, 10), 1<<30, nil); !errors.Is(err, ErrAttachmentTooLarge) {
		t.Fatalf("1 GiB: %v, want ErrAttachmentTooLarge", err)
	}
	if _, err := alice.uploadAttachment(ctxT(t), stream(3, 10), 11, nil); err == nil {
		t.Fatal("short source accepted")
	}

	// A server configured stricter refuses at creation.
	small := newServer(t, func(c *server.Config) {
		blobs, _ := blob.NewFS(t.TempDir(), nil)
		c.Blobs, c.MaxAttachment = blobs, 1000
	})
	bob, _ := small.register(t, "bob", Options{})
	if _, err := bob.uploadAttachment(ctxT(t), stream(3, 5000), 5000, nil); !errors.Is(err, ErrAttachmentTooLarge) {
		t.Fatalf("over the server's limit: %v, want ErrAttachmentTooLarge", err)
	}

	// A server that is gone: bounded retries, then an error.
	gone := newServer(t, nil)
	carol, _ := gone.register(t, "carol", Options{})
	gone.hs.Close()
	if err := carol.downloadAttachment(ctxT(t), p, dst, nil); err == nil || errors.Is(err, ErrAttachmentInvalid) {
		t.Fatalf("server gone: %v", err)
	}
}

// TestAttachmentLostAnswer: the server stored a chunk but its answer was
// lost; HEAD tells the client, which goes on from there.
func TestAttachmentLostAnswer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "attachments")
	blobs, err := blob.NewFS(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, func(c *server.Config) { c.Blobs, c.MaxAttachmentChunk = blobs, 4096 })
	var counts map[string]int
	ct := &countingTransport{rt: http.DefaultTransport, counts: &counts, losePatch: 2}
	alice, _ := srv.register(t, "alice", Options{HTTPClient: &http.Client{Transport: ct}})
	const n = 20_000
	var dones []int64
	p, err := alice.uploadAttachment(ctxT(t), stream(4, n), n, func(done, _ int64) { dones = append(dones, done) })
	if err != nil {
		t.Fatal(err)
	}
	// 20 000 bytes pad to 20 101, a blob of 20 160: five chunks of 4096.
	if ct.count(http.MethodPatch) != 5 || ct.count(http.MethodHead) != 1 {
		t.Fatalf("%d PATCH, %d HEAD; want 5 and 1", ct.count(http.MethodPatch), ct.count(http.MethodHead))
	}
	if len(dones) != 5 || dones[1] != 8192 || dones[4] != p.BlobSize {
		t.Fatalf("progress %v", dones)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := alice.downloadAttachment(ctxT(t), p, dst, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	want, _ := io.ReadAll(stream(4, n))
	if !bytes.Equal(got, want) {
		t.Fatal("attachment differs")
	}
}

// stallWriter passes limit bytes of a response, then blocks until the
// request ends.
type stallWriter struct {
	http.ResponseWriter
	ctx   context.Context
	limit int
}

func (w *stallWriter) Write(b []byte) (int, error) {
	if len(b) > w.limit {
		n, _ := w.ResponseWriter.Write(b[:w.limit])
		w.limit = 0
		w.ResponseWriter.(http.Flusher).Flush()
		<-w.ctx.Done()
		return n, w.ctx.Err()
	}
	w.limit -= len(b)
	return w.ResponseWriter.Write(b)
}

// TestAttachmentStall: a download that stops moving is abandoned after
// transferIdleTimeout and resumed with a Range request.
func TestAttachmentStall(t *testing.T) {
	old := transferIdleTimeout
	transferIdleTimeout = 200 * time.Millisecond
	t.Cleanup(func() { transferIdleTimeout = old })

	var mu sync.Mutex
	var gets []string
	srv := newWrappedServer(t, func(c *server.Config) {
		blobs, _ := blob.NewFS(t.TempDir(), nil)
		c.Blobs = blobs
	}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/attachments/") {
				mu.Lock()
				gets = append(gets, r.Header.Get("Range"))
				first := len(gets) == 1
				mu.Unlock()
				if first {
					w = &stallWriter{ResponseWriter: w, ctx: r.Context(), limit: 50_000}
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	alice, _ := srv.register(t, "alice", Options{})
	p := uploadSmall(t, alice, 300_000)
	dst := filepath.Join(t.TempDir(), "out")
	if err := alice.downloadAttachment(ctxT(t), p, dst, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	want, _ := io.ReadAll(stream(2, 300_000))
	if !bytes.Equal(got, want) {
		t.Fatal("attachment differs")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gets) != 2 || gets[0] != "" || gets[1] != "bytes=50000-" {
		t.Fatalf("GET requests with ranges %q, want a full one and one from 50000", gets)
	}
}
