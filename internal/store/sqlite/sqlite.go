// Package sqlite is doorlessd's embedded storage backend: a store.Store kept
// in one SQLite database file (through modernc.org/sqlite, pure Go), for a
// server that runs on one machine with nothing else to install.
//
// The database runs in WAL mode with synchronous=FULL: a write that has
// returned survives a crash or a power cut. With secure_delete on, deleted
// rows (acknowledged envelopes, handed-out prekeys) are overwritten, not left
// in free pages. The schema is versioned (table schema_version) and migrated
// forward by Open.
//
// Concurrency: a *Store is safe for concurrent use. SQLite admits one writer
// at a time, so every write runs on one writer goroutine that owns the only
// writing connection. Writes that arrive while a transaction is committing
// are collected and run together in the next transaction, each (when there
// are several) inside its own savepoint so that a write that fails (a
// duplicate send id, a full queue) fails alone, and the whole batch is
// committed with one fsync: group commit. (The writes on the message path,
// which refuse only before they change anything, run without a savepoint;
// should one fail after a change, the batch fails with it.) A write returns
// only after the transaction holding it is durable.
// Reads run on a small pool of read-only connections and see every write that
// has returned. Close waits for queued writes to commit; after it every
// method returns store.ErrClosed.
//
// The zero Store is not usable; call Open.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/doorless/doorless/internal/store"
)

var _ store.Store = (*Store)(nil)

const (
	// busyTimeout is how long a connection waits for a lock another process
	// holds (a backup tool, say) before failing with SQLITE_BUSY.
	busyTimeout = 10 * time.Second
	// walSizeLimit is the size the WAL file is cut back to after a
	// checkpoint has emptied it, so that a burst does not leave it large.
	walSizeLimit = 64 << 20
	// maxBatch bounds the writes committed in one transaction.
	maxBatch = 256
	// readConns bounds the read-only connections. Parallel reads run
	// faster with 2 or 4 than with 1 even on 2 cores (BenchmarkQueueParallel,
	// docs/benchmarks.md), and a long read then does not hold up the others.
	readConns = 4
)

var errClosed = fmt.Errorf("sqlite: %w", store.ErrClosed)

// Store is a store.Store on one SQLite database file.
type Store struct {
	rdb *sql.DB // read-only pool
	rd  *reader // rdb as reads see it
	wdb *sql.DB // holds wtx.conn, the one writing connection
	wtx *wtx    // used by the writer goroutine only

	mu     sync.RWMutex // held (shared) by every call in flight; Close takes it exclusively
	closed bool
	path   string          // the database file's absolute path: the sequencer lease's key
	lease  *sequencerLease // the sequencer lease this store holds, if any (guarded by leases.mu)

	ops  chan *op      // writes waiting for the writer goroutine
	done chan struct{} // closed when the writer goroutine has exited

	commits  atomic.Int64 // transactions the writer has committed
	maxBatch int          // writes per transaction at most
}

// op is one write: fn runs inside a savepoint of the batch's transaction.
// A raw op runs alone, between batches, outside any transaction (a
// checkpoint cannot run inside one).
type op struct {
	ctx  context.Context
	fn   func(tx *wtx) error
	raw  bool
	err  error
	done chan struct{}
	// clean: fn refuses (with one of refusals) only before it has changed
	// anything, so it needs no savepoint. Any other failure of fn fails
	// the whole batch: it may come after a change, or with a transaction
	// SQLite has already rolled back.
	clean bool
}

// refusals are the answers a clean op gives before changing anything.
var refusals = []error{store.ErrDuplicate, store.ErrQueueFull, store.ErrNotFound}

func refused(err error) bool {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// wtx is the writing connection as the writer goroutine and the ops it runs
// see it. The writer issues BEGIN, SAVEPOINT and COMMIT itself, so every
// statement run through wtx between them is part of the batch's
// transaction. Statements are prepared once and kept.
type wtx struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

func (w *wtx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(context.Background(), query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

// Exec runs a statement.
func (w *wtx) Exec(query string, args ...any) (sql.Result, error) {
	st, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

// QueryRow runs a query for at most one row; the caller must Scan it.
func (w *wtx) QueryRow(query string, args ...any) *sql.Row {
	st, err := w.stmt(query)
	if err != nil {
		// Unprepared, so that the Row carries the error.
		return w.conn.QueryRowContext(context.Background(), query, args...)
	}
	return st.QueryRow(args...)
}

// reader is the read pool as reads see it: QueryContext and QueryRowContext
// as *sql.DB has them, each through a statement prepared once and kept
// (database/sql prepares it on each pool connection the first time it runs
// there), so that SQLite compiles each read's SQL once per connection, not
// once per call. The statements are a fixed set, so the cache only grows
// to its size.
//
// A read does not follow its context once it has started: reads are short
// indexed lookups, and a cancellable context makes the driver start a
// goroutine per statement to watch it.
type reader struct {
	db    *sql.DB
	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

func (r *reader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	r.mu.RLock()
	st, ok := r.stmts[query]
	r.mu.RUnlock()
	if ok {
		return st, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stmts[query]; ok {
		return st, nil
	}
	st, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	r.stmts[query] = st
	return st, nil
}

// QueryContext runs a query.
func (r *reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(context.WithoutCancel(ctx), args...)
}

// QueryRowContext runs a query for at most one row; the caller must Scan it.
func (r *reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if ctx.Err() != nil {
		return r.db.QueryRowContext(ctx, query, args...) // a Row carrying ctx's error
	}
	st, err := r.stmt(ctx, query)
	if err != nil {
		return r.db.QueryRowContext(ctx, query, args...) // a Row carrying the error
	}
	return st.QueryRowContext(context.WithoutCancel(ctx), args...)
}

// BeginTx starts a transaction on the pool, for reads that must see one
// snapshot; its statements are not cached.
func (r *reader) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return r.db.BeginTx(ctx, opts)
}

func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.stmts {
		st.Close()
	}
	clear(r.stmts)
}

func (w *wtx) close() error {
	for _, st := range w.stmts {
		st.Close()
	}
	return w.conn.Close()
}

// Open opens the database file at path, creating it (mode 0600) when it does
// not exist, and migrates its schema to the current version.
func Open(path string) (*Store, error) {
	return open(path, options{maxBatch: maxBatch, secureDelete: true})
}

// options are the knobs benchmarks turn; Open uses the defaults.
type options struct {
	maxBatch     int  // writes per transaction at most; 1 turns group commit off
	secureDelete bool // PRAGMA secure_delete
}

func open(path string, opt options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, errors.New("sqlite: database path must be a plain file name")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f.Close()

	ms := busyTimeout.Milliseconds()
	wdb, err := sql.Open("sqlite", fmt.Sprintf("%s?_txlock=immediate"+
		"&_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"+
		"&_pragma=foreign_keys(1)&_pragma=temp_store(2)&_pragma=secure_delete(%d)&_pragma=journal_size_limit(%d)",
		path, ms, b2i(opt.secureDelete), walSizeLimit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %v", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(wdb); err != nil {
		wdb.Close()
		return nil, err
	}

	n := readConns
	rdb, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=query_only(1)", path, ms))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: %v", err)
	}
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)
	if err := rdb.Ping(); err != nil {
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("sqlite: %v", err)
	}
	conn, err := wdb.Conn(context.Background())
	if err != nil {
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("sqlite: %v", err)
	}

	abs, err := filepath.Abs(path)
	if err != nil {
		conn.Close()
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("sqlite: %v", err)
	}
	s := &Store{
		path:     abs,
		rdb:      rdb,
		rd:       &reader{db: rdb, stmts: map[string]*sql.Stmt{}},
		wdb:      wdb,
		wtx:      &wtx{conn: conn, stmts: map[string]*sql.Stmt{}},
		ops:      make(chan *op, maxBatch),
		done:     make(chan struct{}),
		maxBatch: max(1, opt.maxBatch),
	}
	go s.writer()
	return s, nil
}

// Close commits the writes already queued, then closes the database. Calls
// after Close (Close included) return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.closed = true
	close(s.ops)
	s.mu.Unlock()
	s.releaseLease()

	<-s.done
	cerr := s.wtx.close()
	s.rd.close()
	werr := s.wdb.Close()
	rerr := s.rdb.Close()
	if err := errors.Join(cerr, werr, rerr); err != nil {
		return fmt.Errorf("sqlite: close: %v", err)
	}
	return nil
}

// write runs fn on the writer goroutine, inside the next batch's transaction,
// and returns after that transaction has committed (or failed). fn must not
// touch the caller's state: its effects reach the caller only when write
// returns nil.
func (s *Store) write(ctx context.Context, fn func(tx *wtx) error) error {
	return s.enqueueOp(&op{ctx: ctx, fn: fn, done: make(chan struct{})})
}

// writeClean is write for an fn that refuses only before it has changed
// anything (op.clean): it runs without a savepoint.
func (s *Store) writeClean(ctx context.Context, fn func(tx *wtx) error) error {
	return s.enqueueOp(&op{ctx: ctx, fn: fn, clean: true, done: make(chan struct{})})
}

// checkpoint copies the write-ahead log into the database file and
// truncates the log to zero bytes, so that copies of pages as they were
// before recent deletions leave the log too. It runs on the writer
// goroutine between batches. It is best effort: when readers hold the log
// for longer than the busy timeout, it returns having done what it could.
func (s *Store) checkpoint(ctx context.Context) error {
	return s.enqueueOp(&op{ctx: ctx, raw: true, done: make(chan struct{}), fn: func(w *wtx) error {
		var busy, logFrames, checkpointed int
		if err := w.conn.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil {
			return fmt.Errorf("sqlite: checkpoint: %v", err)
		}
		if busy != 0 {
			return errors.New("sqlite: checkpoint: the log is busy")
		}
		return nil
	}})
}

// enqueueOp hands o to the writer goroutine and waits until it is done.
func (s *Store) enqueueOp(o *op) error {
	ctx := o.ctx
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	// Once queued, the op runs unless its context ends before the writer
	// reaches it; either way the writer finishes it promptly, so the wait
	// is bounded by one batch and the outcome is never ambiguous.
	<-o.done
	return o.err
}

// read runs fn with the read pool, unless the store is closed.
func (s *Store) read(fn func(db *reader) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	return fn(s.rd)
}

// writer is the writer goroutine: it takes what is queued, commits it as one
// batch, and repeats until Close closes s.ops and the queue is drained.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*op, 0, s.maxBatch)
	var next *op // a raw op that ended the last batch
	for {
		o := next
		next = nil
		if o == nil {
			var ok bool
			if o, ok = <-s.ops; !ok {
				return
			}
		}
		if o.raw {
			if o.err = o.ctx.Err(); o.err == nil {
				o.err = o.fn(s.wtx)
			}
			close(o.done)
			continue
		}
		batch = append(batch[:0], o)
	drain:
		for len(batch) < s.maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break drain
				}
				if o.raw {
					next = o
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit runs a batch of writes in one transaction and commits it. With
// more than one write in the batch, each runs in a savepoint, so that one
// that fails is undone alone. Every op of the batch is finished (done
// closed) on return.
func (s *Store) commit(batch []*op) {
	defer func() {
		for _, o := range batch {
			close(o.done)
		}
	}()
	w := s.wtx
	failAll := func(what string, err error) {
		// The transaction may already be gone (SQLite rolls back by itself
		// after some errors); then ROLLBACK fails, harmlessly.
		w.Exec("ROLLBACK")
		err = fmt.Errorf("sqlite: %s: %v", what, err)
		// Every op that ran gets the batch's failure, refusals included:
		// a refusal may rest on a write of the batch now undone (a
		// duplicate of a send rolled back is no duplicate).
		for _, o := range batch {
			if !errors.Is(o.err, context.Canceled) && !errors.Is(o.err, context.DeadlineExceeded) {
				o.err = err
			}
		}
	}
	if _, err := w.Exec("BEGIN IMMEDIATE"); err != nil {
		failAll("begin", err)
		return
	}
	if len(batch) == 1 {
		o := batch[0]
		if o.err = o.ctx.Err(); o.err == nil {
			o.err = o.fn(w)
		}
		if o.err != nil {
			if _, err := w.Exec("ROLLBACK"); err != nil {
				failAll("rollback", err)
			}
			return
		}
	} else {
		for _, o := range batch {
			if o.err = o.ctx.Err(); o.err != nil {
				continue
			}
			if o.clean {
				if o.err = o.fn(w); o.err != nil && !refused(o.err) {
					failAll("batch", o.err)
					return
				}
				continue
			}
			if _, err := w.Exec("SAVEPOINT op"); err != nil {
				failAll("savepoint", err)
				return
			}
			if o.err = o.fn(w); o.err != nil {
				if _, err := w.Exec("ROLLBACK TO op"); err != nil {
					failAll("rollback to savepoint", err)
					return
				}
			}
			if _, err := w.Exec("RELEASE op"); err != nil {
				failAll("release savepoint", err)
				return
			}
		}
	}
	if _, err := w.Exec("COMMIT"); err != nil {
		failAll("commit", err)
		return
	}
	s.commits.Add(1)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Times are stored as Unix milliseconds, the precision of the HTTP API.

func toMS(t time.Time) int64 { return t.UnixMilli() }

func fromMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// orNow returns t, or the current time when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// blob returns b, or an empty non-nil slice, for NOT NULL blob columns.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// newUUID returns a random version-4 UUID in lower-case hyphenated form.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
