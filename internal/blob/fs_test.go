package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// clock is a settable clock for the FS.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newFS(t *testing.T) (*FS, *clock, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "attachments")
	c := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	f, err := NewFS(dir, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return f, c, dir
}

func data(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

var token = sha256.Sum256([]byte("token"))

func create(t *testing.T, f *FS, size int) string {
	t.Helper()
	id, err := f.Create(context.Background(), int64(size), token)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(id) {
		t.Fatalf("id %q is not valid", id)
	}
	return id
}

func appendOK(t *testing.T, f *FS, id string, off int64, b []byte) int64 {
	t.Helper()
	n, err := f.Append(context.Background(), id, off, bytes.NewReader(b))
	if err != nil || n != off+int64(len(b)) {
		t.Fatalf("append %d bytes at %d: %d, %v", len(b), off, n, err)
	}
	return n
}

func readAll(t *testing.T, f *FS, id string) []byte {
	t.Helper()
	r, size, err := f.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || int64(len(b)) != size {
		t.Fatalf("read %d of %d bytes: %v", len(b), size, err)
	}
	return b
}

func TestUploadAndRead(t *testing.T) {
	f, clk, _ := newFS(t)
	ctx := context.Background()
	want := data(1<<20 + 17)
	id := create(t, f, len(want))

	info, err := f.Stat(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(want)) || info.Offset != 0 || info.Finished || info.TokenHash != token || !info.Created.Equal(clk.now()) {
		t.Fatalf("fresh upload: %+v", info)
	}
	if _, _, err := f.Open(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open unfinished: %v, want ErrNotFound", err)
	}

	var off int64
	for _, n := range []int{1000, 300_000, 0, 500_000} {
		off = appendOK(t, f, id, off, want[off:off+int64(n)])
		if info, _ := f.Stat(ctx, id); info.Offset != off || info.Finished {
			t.Fatalf("after %d bytes: %+v", off, info)
		}
	}
	appendOK(t, f, id, off, want[off:])
	info, err = f.Stat(ctx, id)
	if err != nil || !info.Finished || info.Offset != info.Size {
		t.Fatalf("finished: %+v, %v", info, err)
	}
	if got := readAll(t, f, id); !bytes.Equal(got, want) {
		t.Fatal("blob differs from what was uploaded")
	}

	// Seeking, as ServeContent does for a Range request.
	r, _, err := f.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Seek(12345, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 100)
	if _, err := io.ReadFull(r, part); err != nil || !bytes.Equal(part, want[12345:12445]) {
		t.Fatalf("range read: %v", err)
	}

	// A finished upload takes an empty append at its end and nothing else.
	if n, err := f.Append(ctx, id, info.Size, bytes.NewReader(nil)); err != nil || n != info.Size {
		t.Fatalf("empty append to a finished blob: %d, %v", n, err)
	}
	if n, err := f.Append(ctx, id, info.Size, bytes.NewReader([]byte{1})); !errors.Is(err, ErrTooLarge) || n != info.Size {
		t.Fatalf("append past a finished blob: %d, %v", n, err)
	}
	if n, err := f.Append(ctx, id, 0, bytes.NewReader([]byte{1})); !errors.Is(err, ErrOffsetMismatch) || n != info.Size {
		t.Fatalf("append into a finished blob: %d, %v", n, err)
	}
}

func TestAppendRefusals(t *testing.T) {
	f, _, _ := newFS(t)
	ctx := context.Background()
	want := data(1000)
	id := create(t, f, len(want))
	off := appendOK(t, f, id, 0, want[:100])

	for _, o := range []int64{0, 99, 101, 2000, -1} {
		n, err := f.Append(ctx, id, o, bytes.NewReader(want[o&0xff:][:1]))
		if !errors.Is(err, ErrOffsetMismatch) || n != off {
			t.Errorf("append at %d: %d, %v; want ErrOffsetMismatch and %d", o, n, err, off)
		}
	}
	// One byte too many: nothing is acknowledged.
	if n, err := f.Append(ctx, id, off, bytes.NewReader(data(901))); !errors.Is(err, ErrTooLarge) || n != off {
		t.Fatalf("oversize chunk: %d, %v", n, err)
	}
	if info, _ := f.Stat(ctx, id); info.Offset != off {
		t.Fatalf("offset %d after a refused chunk, want %d", info.Offset, off)
	}
	appendOK(t, f, id, off, want[off:])
	if !bytes.Equal(readAll(t, f, id), want) {
		t.Fatal("blob differs after refusals")
	}

	for _, bad := range []string{"", "x", "../../../../etc/passwd", strings.Repeat("A", 42), strings.Repeat("A", 42) + "B", strings.Repeat("/", 43)} {
		if _, err := f.Stat(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("stat %q: %v", bad, err)
		}
		if _, err := f.Append(ctx, bad, 0, bytes.NewReader(nil)); !errors.Is(err, ErrNotFound) {
			t.Errorf("append %q: %v", bad, err)
		}
		if _, _, err := f.Open(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("open %q: %v", bad, err)
		}
		if err := f.Delete(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("delete %q: %v", bad, err)
		}
	}
	unknown := NewID()
	if _, err := f.Stat(ctx, unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("stat unknown: %v", err)
	}
	if _, err := f.Append(ctx, unknown, 0, bytes.NewReader([]byte{1})); !errors.Is(err, ErrNotFound) {
		t.Errorf("append unknown: %v", err)
	}
	for _, size := range []int64{0, -1} {
		if _, err := f.Create(ctx, size, token); err == nil {
			t.Errorf("create of size %d accepted", size)
		}
	}
}

// TestCutChunk: a chunk whose body breaks off is not acknowledged, and the
// retry at the same offset overwrites what of it was written.
func TestCutChunk(t *testing.T) {
	f, _, _ := newFS(t)
	ctx := context.Background()
	want := data(3 * copyBuffer)
	id := create(t, f, len(want))
	off := appendOK(t, f, id, 0, want[:1000])

	garbage := bytes.Repeat([]byte{0xEE}, 2*copyBuffer)
	cut := errors.New("connection cut")
	r := io.MultiReader(bytes.NewReader(garbage), iotest.ErrReader(cut))
	n, err := f.Append(ctx, id, off, r)
	if !errors.Is(err, cut) || n != off {
		t.Fatalf("cut chunk: %d, %v; want the read error and offset %d", n, err, off)
	}
	if info, _ := f.Stat(ctx, id); info.Offset != off {
		t.Fatalf("offset moved to %d by a cut chunk", info.Offset)
	}
	appendOK(t, f, id, off, want[off:])
	if !bytes.Equal(readAll(t, f, id), want) {
		t.Fatal("the cut chunk's bytes survived the retry")
	}
}

// TestCrashRecovery: a process that died mid-chunk left unacknowledged
// bytes past the offset (even past the declared size) and a half-written
// sidecar; a new FS on the directory resumes at the acknowledged offset and
// ends with the right blob.
func TestCrashRecovery(t *testing.T) {
	f, clk, dir := newFS(t)
	ctx := context.Background()
	want := data(5000)
	id := create(t, f, len(want))
	off := appendOK(t, f, id, 0, want[:2000])

	// The crash: bytes written at the offset but never acknowledged.
	p, err := os.OpenFile(f.path(id, extPart), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteAt(bytes.Repeat([]byte{0xAB}, 4000), off); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := os.WriteFile(filepath.Join(filepath.Dir(f.path(id, "")), "meta-123"+extTmp), []byte(`{"size":`), 0o600); err != nil {
		t.Fatal(err)
	}

	g, err := NewFS(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	info, err := g.Stat(ctx, id)
	if err != nil || info.Offset != off || info.Finished {
		t.Fatalf("after restart: %+v, %v; want offset %d", info, err, off)
	}
	if _, _, err := g.Open(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatal("an unfinished upload opened after a crash")
	}
	appendOK(t, g, id, off, want[off:])
	if !bytes.Equal(readAll(t, g, id), want) {
		t.Fatal("blob differs after a crash and retry")
	}
	// The stale temporary file goes with the idle uploads.
	clk.add(48 * time.Hour)
	os.Chtimes(filepath.Join(filepath.Dir(f.path(id, "")), "meta-123"+extTmp), clk.now().Add(-25*time.Hour), clk.now().Add(-25*time.Hour))
	if _, _, err := g.Expire(ctx, time.Time{}, clk.now().Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(f.path(id, "")), "meta-123"+extTmp)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temporary file kept: %v", err)
	}
}

// TestConcurrentAppends: racing appenders of one upload never corrupt it;
// each chunk lands once, at its offset.
func TestConcurrentAppends(t *testing.T) {
	f, _, _ := newFS(t)
	ctx := context.Background()
	want := data(64 << 10)
	const chunk = 1000
	id := create(t, f, len(want))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				info, err := f.Stat(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				if info.Finished {
					return
				}
				end := min(info.Offset+chunk, info.Size)
				_, err = f.Append(ctx, id, info.Offset, bytes.NewReader(want[info.Offset:end]))
				if err != nil && !errors.Is(err, ErrOffsetMismatch) {
					errs <- err
					return
				}
			}
		})
	}
	// Other uploads at the same time.
	for i := range 4 {
		wg.Go(func() {
			b := data(3000 + i)
			id, err := f.Create(ctx, int64(len(b)), token)
			if err == nil {
				_, err = f.Append(ctx, id, 0, bytes.NewReader(b))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, f, id), want) {
		t.Fatal("blob corrupted by concurrent appends")
	}
}

// TestAppendWaits: a second append to an upload waits for the first, and
// gives up with its context.
func TestAppendWaits(t *testing.T) {
	f, _, _ := newFS(t)
	id := create(t, f, 100)
	pr, pw := io.Pipe()
	first := make(chan error, 1)
	go func() {
		_, err := f.Append(context.Background(), id, 0, pr)
		first <- err
	}()
	// Once the first append reads, it holds the lock.
	if _, err := pw.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Append(ctx, id, 0, bytes.NewReader([]byte{2})); !errors.Is(err, context.Canceled) {
		t.Fatalf("second append: %v, want context.Canceled while the first holds the lock", err)
	}
	// Expire does not take an upload with an append under way, however old.
	if _, p, err := f.Expire(context.Background(), time.Now().Add(time.Hour*1e5), time.Now().Add(time.Hour*1e5)); err != nil || p != 0 {
		t.Fatalf("expire during an append: %d, %v", p, err)
	}
	pw.Write(bytes.Repeat([]byte{3}, 49))
	pw.Close()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if info, _ := f.Stat(context.Background(), id); info.Offset != 50 {
		t.Fatalf("offset %d, want 50", info.Offset)
	}
	if len(f.locks.m) != 0 {
		t.Fatalf("%d locks left", len(f.locks.m))
	}
}

func TestDeleteAndExpire(t *testing.T) {
	f, clk, dir := newFS(t)
	ctx := context.Background()
	const ttl, idle = 30 * 24 * time.Hour, 24 * time.Hour
	expire := func() (int, int) {
		t.Helper()
		b, p, err := f.Expire(ctx, clk.now().Add(-ttl), clk.now().Add(-idle))
		if err != nil {
			t.Fatal(err)
		}
		return b, p
	}

	oldBlob := create(t, f, 10)
	appendOK(t, f, oldBlob, 0, data(10))
	stalled := create(t, f, 10)
	appendOK(t, f, stalled, 0, data(3))
	slow := create(t, f, 10)
	deleted := create(t, f, 10)
	if err := f.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	if err := f.Delete(ctx, deleted); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := f.Stat(ctx, deleted); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat deleted: %v", err)
	}

	clk.add(23 * time.Hour)
	appendOK(t, f, slow, 0, data(1)) // progress keeps it
	if b, p := expire(); b != 0 || p != 0 {
		t.Fatalf("expired %d blobs, %d uploads within the limits", b, p)
	}
	clk.add(2 * time.Hour)
	if b, p := expire(); b != 0 || p != 1 {
		t.Fatalf("expired %d blobs, %d uploads; want the stalled upload", b, p)
	}
	if _, err := f.Stat(ctx, stalled); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stalled upload: %v", err)
	}
	if _, err := f.Stat(ctx, slow); err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	newBlob := create(t, f, 5)
	appendOK(t, f, newBlob, 0, data(5))

	clk.add(ttl - 24*time.Hour)
	if b, p := expire(); b != 1 || p != 1 {
		t.Fatalf("expired %d blobs, %d uploads; want the old blob and the slow upload", b, p)
	}
	if _, _, err := f.Open(ctx, oldBlob); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old blob: %v", err)
	}
	if got := readAll(t, f, newBlob); !bytes.Equal(got, data(5)) {
		t.Fatal("new blob damaged")
	}
	// Nothing but the new blob's two files is left.
	var left []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, filepath.Base(path))
		}
		return nil
	})
	if fmt.Sprint(left) != fmt.Sprint([]string{newBlob + extBlob, newBlob + extMeta}) {
		t.Fatalf("files left: %v", left)
	}
}

// TestSidecar: the sidecar holds the size, the created time, the token
// hash and the offset, nothing else.
func TestSidecar(t *testing.T) {
	f, _, _ := newFS(t)
	id := create(t, f, 10)
	appendOK(t, f, id, 0, data(4))
	b, err := os.ReadFile(f.path(id, extMeta))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"size":10,"created":%d,"token_sha256":"%x","offset":4}`, f.now().UnixMilli(), token)
	if string(b) != want {
		t.Fatalf("sidecar %s, want %s", b, want)
	}
	fi, err := os.Stat(f.path(id, extPart))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("upload file mode %v, %v", fi.Mode(), err)
	}
}

func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if !ValidID(id) || len(id) != 43 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	// The last character carries 4 bits and 2 zero bits: setting one of
	// those would be a second spelling of the same id.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	id := NewID()
	v := strings.IndexByte(alphabet, id[42])
	alt := id[:42] + string(alphabet[v|1])
	if ValidID(alt) {
		t.Fatalf("non-canonical id %q accepted", alt)
	}
	if ValidID(id[:42]+"=") || ValidID(id[:41]+"+/") {
		t.Fatal("padding or the standard alphabet accepted")
	}
}

// TestErrorsHideID: errors never carry the path, which holds the id.
func TestErrorsHideID(t *testing.T) {
	id := NewID()
	err := fsErr("open", &fs.PathError{Op: "open", Path: "/data/" + id + ".blob", Err: fs.ErrPermission})
	if strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "permission") {
		t.Fatalf("error %q", err)
	}
	err = fsErr("rename", &os.LinkError{Op: "rename", Old: id, New: id, Err: fs.ErrExist})
	if strings.Contains(err.Error(), id) {
		t.Fatalf("error %q", err)
	}
}
