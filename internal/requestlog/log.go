// Package requestlog is Doorless's public log of legal requests: an
// append-only Tessera log (C2SP tlog-tiles, with C2SP tlog-checkpoint
// checkpoints signed by the server's legal key) of three kinds of entries:
// request commitments, publications of requests after their
// non-disclosure date, and signed transparency reports
// (docs/protocol.md, "The legal request log").
//
// Log writes and serves a log kept in a directory with Tessera's POSIX
// driver; Fetch reads a served log and verifies it cryptographically, and
// Check verifies what its entries say. The entry formats, Commit and
// CountRequests are shared by the server that writes entries and every
// verifier.
//
// A *Log is safe for concurrent use, and several processes may append to
// the same directory: Tessera serialises them with fcntl locks, and Open
// shares one Tessera appender between the Logs of a process that open the
// same directory (fcntl locks do not exclude each other within a process).
// The zero Log is not usable; Open makes one.
package requestlog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// Tuning of the appender. Appends are rare (one per legal request), so the
// log favours latency: a batch is sequenced almost at once, a checkpoint
// follows within checkpointInterval (Tessera's POSIX minimum is 100ms) and
// Append notices it within awaitPoll.
const (
	batchMaxSize       = 64
	batchMaxAge        = 10 * time.Millisecond
	checkpointInterval = 100 * time.Millisecond
	awaitPoll          = 20 * time.Millisecond
	shutdownTimeout    = 30 * time.Second
)

// ErrClosed: the Log was closed.
var ErrClosed = errors.New("requestlog: log closed")

// ErrSignerMismatch: a directory already open in this process was opened
// again with another signer.
var ErrSignerMismatch = errors.New("requestlog: the log is already open with another signer")

// Log is an open request log. See the package documentation.
type Log struct {
	a *appender

	mu     sync.Mutex
	closed bool
}

// appender is one Tessera appender over a directory, shared by the Logs
// of this process that opened it.
type appender struct {
	dir     string
	name    string
	keyHash uint32
	refs    int // guarded by openMu

	add      tessera.AddFn
	reader   tessera.LogReader
	awaiter  *tessera.PublicationAwaiter
	shutdown func(context.Context) error
	cancel   context.CancelFunc
}

var (
	openMu sync.Mutex
	opened = map[string]*appender{}
)

// Open opens (creating it if needed) the log in dir, whose checkpoints
// signer signs; the signer's name is the log's origin.
func Open(ctx context.Context, dir string, signer note.Signer) (*Log, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("requestlog: %v", err)
	}
	openMu.Lock()
	defer openMu.Unlock()
	if a := opened[abs]; a != nil {
		if a.name != signer.Name() || a.keyHash != signer.KeyHash() {
			return nil, ErrSignerMismatch
		}
		a.refs++
		return &Log{a: a}, nil
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("requestlog: %v", err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: abs})
	if err != nil {
		return nil, fmt.Errorf("requestlog: %v", err)
	}
	// The appender's background work (sequencing, publishing checkpoints)
	// outlives ctx, which only bounds the opening; Close ends it.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(batchMaxSize, batchMaxAge).
		WithCheckpointInterval(checkpointInterval)
	app, shutdown, reader, err := tessera.NewAppender(bg, driver, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("requestlog: %v", err)
	}
	a := &appender{
		dir:      abs,
		name:     signer.Name(),
		keyHash:  signer.KeyHash(),
		refs:     1,
		add:      app.Add,
		reader:   reader,
		awaiter:  tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, awaitPoll),
		shutdown: shutdown,
		cancel:   cancel,
	}
	opened[abs] = a
	return &Log{a: a}, nil
}

// Append appends entry, which must parse (ParseEntry), and returns its
// index once it is integrated into the tree and a signed checkpoint that
// covers it is published.
func (l *Log) Append(ctx context.Context, entry []byte) (uint64, error) {
	if _, err := ParseEntry(entry); err != nil {
		return 0, err
	}
	if l.isClosed() {
		return 0, ErrClosed
	}
	idx, _, err := l.a.awaiter.Await(ctx, l.a.add(ctx, tessera.NewEntry(entry)))
	if err != nil {
		return 0, fmt.Errorf("requestlog: append: %w", err)
	}
	return idx.Index, nil
}

// Entries returns every entry integrated into the log, in order.
func (l *Log) Entries(ctx context.Context) ([][]byte, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	size, err := l.a.reader.IntegratedSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("requestlog: reading the tree size: %v", err)
	}
	entries := make([][]byte, 0, size)
	for r := range layout.Range(0, size, size) {
		raw, err := l.a.reader.ReadEntryBundle(ctx, r.Index, r.Partial)
		if err != nil {
			return nil, fmt.Errorf("requestlog: reading entry bundle %d: %v", r.Index, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil || uint(len(b.Entries)) < r.First+r.N {
			return nil, fmt.Errorf("requestlog: entry bundle %d is corrupt", r.Index)
		}
		entries = append(entries, b.Entries[r.First:r.First+r.N]...)
	}
	return entries, nil
}

// Close releases the log. The last Log of a directory in this process
// waits until every entry it appended is in a published checkpoint, then
// stops the appender.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()

	openMu.Lock()
	l.a.refs--
	last := l.a.refs == 0
	if last {
		delete(opened, l.a.dir)
	}
	openMu.Unlock()
	if !last {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := l.a.shutdown(ctx)
	l.a.cancel()
	if err != nil {
		return fmt.Errorf("requestlog: close: %v", err)
	}
	return nil
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Handler serves the log read-only as C2SP tlog-tiles resources: GET or
// HEAD "checkpoint", "tile/<L>/<N>[.p/<W>]" and "tile/entries/<N>[.p/<W>]",
// with the path relative to where it is mounted (use http.StripPrefix with
// api.PathLegalLogPrefix). Nothing else in the directory is served: no
// listings, nothing of Tessera's private state.
func (l *Log) Handler() http.Handler { return fileHandler(l.a.dir) }

// fileHandler serves the log's public resources from dir.
type fileHandler string

func (h fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	contentType, cache, ok := resource(p)
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := os.ReadFile(filepath.Join(string(h), filepath.FromSlash(p)))
	if errors.Is(err, os.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "cannot read the log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", cache)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

// resource says whether p names a public resource of a tlog-tiles log, in
// canonical form, and how to serve it.
func resource(p string) (contentType, cacheControl string, ok bool) {
	const immutable = "public, max-age=31536000, immutable"
	if p == layout.CheckpointPath {
		return "text/plain; charset=utf-8", "no-cache", true
	}
	if rest, found := strings.CutPrefix(p, "tile/entries/"); found {
		i, w, err := layout.ParseTileIndexPartial(rest)
		if err != nil || layout.EntriesPath(i, w) != p {
			return "", "", false
		}
		return "application/octet-stream", immutable, true
	}
	if rest, found := strings.CutPrefix(p, "tile/"); found {
		level, index, ok := strings.Cut(rest, "/")
		if !ok {
			return "", "", false
		}
		l, i, w, err := layout.ParseTileLevelIndexPartial(level, index)
		if err != nil || layout.TilePath(l, i, w) != p {
			return "", "", false
		}
		return "application/octet-stream", immutable, true
	}
	return "", "", false
}
