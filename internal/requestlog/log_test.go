package requestlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/doorless/doorless/internal/api"
)

// openLog opens a log in a new directory, closed at the end of the test.
func openLog(t *testing.T, k testKey) (*Log, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	l, err := Open(context.Background(), dir, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

// serve serves l as a server mounts it, returning the log's base URL.
func serve(t *testing.T, l *Log) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(api.PathLegalLogPrefix, http.StripPrefix(api.PathLegalLogPrefix, l.Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + api.PathLegalLogPrefix
}

// nthEntry is a distinct valid entry for each n.
func nthEntry(t testing.TB, n int) []byte {
	var c [32]byte
	copy(c[:], fmt.Sprintf("entry %d", n))
	return requestEntry(t, c, day1, "de", "court_order", OutcomeAccepted)
}

func TestAppendEntriesFetch(t *testing.T) {
	k := newKey(t, testOrigin)
	l, _ := openLog(t, k)
	base := serve(t, l)
	ctx := context.Background()

	empty, err := Fetch(ctx, nil, base, k.verifier, nil)
	if err != nil {
		t.Fatalf("Fetch of the empty log: %v", err)
	}
	if empty.Size != 0 || len(empty.Entries) != 0 {
		t.Fatalf("empty log: %+v", empty)
	}
	var want [][]byte
	for i := range 3 {
		idx, err := l.Append(ctx, nthEntry(t, i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != uint64(i) {
			t.Fatalf("Append %d got index %d", i, idx)
		}
		want = append(want, nthEntry(t, i))
		// Append returns once a published checkpoint covers the entry.
		v, err := Fetch(ctx, nil, base, k.verifier, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.Size != uint64(i+1) {
			t.Fatalf("after Append %d the checkpoint has size %d", i, v.Size)
		}
	}
	got, err := l.Entries(ctx)
	if err != nil || !equalEntries(got, want) {
		t.Fatalf("Entries = %q, %v", got, err)
	}
	v, err := Fetch(ctx, nil, base, k.verifier, empty.Checkpoint)
	if err != nil || !equalEntries(v.Entries, want) {
		t.Fatalf("Fetch = %+v, %v", v, err)
	}
	if _, err := l.Append(ctx, []byte("not an entry\n")); !errors.Is(err, ErrMalformedEntry) {
		t.Fatalf("Append of garbage = %v, want ErrMalformedEntry", err)
	}
}

// Past one entry bundle and one tile: full and partial bundles, a second
// tile level, and a consistency proof across them.
func TestFetchPastOneTile(t *testing.T) {
	k := newKey(t, testOrigin)
	l, _ := openLog(t, k)
	base := serve(t, l)
	ctx := context.Background()
	appendN(t, l, 0, 100)
	first, err := Fetch(ctx, nil, base, k.verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 100, 200)
	v, err := Fetch(ctx, nil, base, k.verifier, first.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	checkAllPresent(t, v.Entries, 300)
}

// appendN appends entries from..from+n concurrently.
func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := from; i < from+n; i++ {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), nthEntry(t, i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func equalEntries(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestHandler(t *testing.T) {
	k := newKey(t, testOrigin)
	l, dir := openLog(t, k)
	base := serve(t, l)
	if _, err := l.Append(context.Background(), nthEntry(t, 0)); err != nil {
		t.Fatal(err)
	}
	get := func(method, p string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, base+p, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, tc := range []struct {
		path, contentType, file string
	}{
		{"checkpoint", "text/plain; charset=utf-8", "checkpoint"},
		{"tile/0/000.p/1", "application/octet-stream", "tile/0/000.p/1"},
		{"tile/entries/000.p/1", "application/octet-stream", "tile/entries/000.p/1"},
	} {
		resp, body := get(http.MethodGet, tc.path)
		want, _ := os.ReadFile(filepath.Join(dir, tc.file))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.contentType || !bytes.Equal(body, want) {
			t.Errorf("GET %s: %d %q %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	// Tessera's private state exists on disk, and is not served; nor are
	// directories, nor other spellings of a resource.
	if _, err := os.Stat(filepath.Join(dir, ".state", "treeState")); err != nil {
		t.Fatalf("the test expects Tessera's state file: %v", err)
	}
	for _, p := range []string{
		".state/treeState", ".state", "", "tile", "tile/", "tile/0", "tile/0/", "tile/entries",
		"tile/entries/", "tile/0/0.p/1", "tile/0/000.p/01", "tile/../checkpoint", "tile/0/../../checkpoint",
		"tile/entries/000.p/1/", "tile/64/000", "checkpoint/", "tile/entries/../../.state/treeState",
	} {
		// Straight to the handler: a ServeMux would clean the dots away.
		rec := httptest.NewRecorder()
		l.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %q: %d %q, want 404", p, rec.Code, rec.Body)
		}
	}
	if resp, _ := get(http.MethodPost, "checkpoint"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST checkpoint: %d", resp.StatusCode)
	}
	if resp, body := get(http.MethodHead, "checkpoint"); resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD checkpoint: %d %q", resp.StatusCode, body)
	}
}

func TestOpenTwiceInOneProcess(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := filepath.Join(t.TempDir(), "log")
	ctx := context.Background()
	a, err := Open(ctx, dir, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, dir, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, newKey(t, testOrigin).signer); !errors.Is(err, ErrSignerMismatch) {
		t.Fatalf("Open with another key = %v, want ErrSignerMismatch", err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			if _, err := l.Append(ctx, nthEntry(t, i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := a.Append(ctx, nthEntry(t, 99)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	// b still works after a closed.
	if _, err := b.Append(ctx, nthEntry(t, 40)); err != nil {
		t.Fatal(err)
	}
	entries, err := b.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAllPresent(t, entries, 41)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, the log has everything.
	c, err := Open(ctx, dir, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	entries, err = c.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAllPresent(t, entries, 41)
}

// checkAllPresent checks that entries are nthEntry(0..n-1), each once, in
// any order.
func checkAllPresent(t *testing.T, entries [][]byte, n int) {
	t.Helper()
	if len(entries) != n {
		t.Fatalf("%d entries, want %d", len(entries), n)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[string(e)] = true
	}
	for i := range n {
		if !seen[string(nthEntry(t, i))] {
			t.Fatalf("entry %d is missing", i)
		}
	}
}

// The helper process of TestTwoProcesses: it appends entries from..to-1 to
// the log in REQUESTLOG_HELPER_DIR.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("REQUESTLOG_HELPER_DIR")
	if dir == "" {
		return // not a helper process
	}
	k := keyFrom(t, os.Getenv("REQUESTLOG_HELPER_SKEY"), os.Getenv("REQUESTLOG_HELPER_VKEY"))
	from, _ := strconv.Atoi(os.Getenv("REQUESTLOG_HELPER_FROM"))
	to, _ := strconv.Atoi(os.Getenv("REQUESTLOG_HELPER_TO"))
	l, err := Open(context.Background(), dir, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, from, to-from)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// Two processes append to one directory at once (doorlessd and
// "doorlessd legal process"); nothing is lost and the log verifies.
func TestTwoProcesses(t *testing.T) {
	k := newKey(t, testOrigin)
	l, dir := openLog(t, k)
	base := serve(t, l)
	const n = 60
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"REQUESTLOG_HELPER_DIR="+dir, "REQUESTLOG_HELPER_SKEY="+k.skey, "REQUESTLOG_HELPER_VKEY="+k.vkey,
		"REQUESTLOG_HELPER_FROM="+strconv.Itoa(n), "REQUESTLOG_HELPER_TO="+strconv.Itoa(2*n))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, n)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out.String())
	}
	entries, err := l.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkAllPresent(t, entries, 2*n)
	// The child closed after its entries were published; ours were
	// published before appendN returned.
	v, err := Fetch(context.Background(), nil, base, k.verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAllPresent(t, v.Entries, 2*n)
}
