// Package postgres is doorlessd's storage backend for many nodes: a
// store.Store kept in one PostgreSQL database (through
// github.com/jackc/pgx/v5), shared by every node of a cluster. It has the
// tables and semantics of the SQLite store (internal/store/sqlite) and passes
// the same conformance suite (internal/store/storetest).
//
// The schema lives in the first schema of the connection's search_path
// (public by default; a DSN may name another with search_path=...). It is
// versioned (table schema_version) and migrated forward by Open, one
// migration per transaction; Open refuses a schema newer than this program's
// (ErrSchemaTooNew).
//
// Concurrency: a *Store is safe for concurrent use, and so are several
// Stores on one database, in one process or on many nodes. Every write runs
// in its own transaction at READ COMMITTED, and what several writers race
// for is settled by the database: unique constraints (usernames, send ids,
// epoch numbers, legal-request nonces, one report per reporter and message),
// row locks (a device's queue while envelopes are added to it, an account
// while its device list changes) and SKIP LOCKED (one-time prekeys, each
// handed out once). A transaction that deadlocks with another is retried.
//
// Durability and group commit: a write returns after its transaction has
// committed, with the server's synchronous_commit (on by default, which
// makes it durable). PostgreSQL itself commits concurrent transactions with
// one WAL flush (commit_delay tunes how long a commit waits for company), so
// concurrent Enqueue calls, from one node or many, share fsyncs without a
// batching writer here.
//
// Close waits for the calls in flight, then closes the pool; after it every
// method returns store.ErrClosed.
//
// The zero Store is not usable; call Open.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var (
	_ store.Store  = (*Store)(nil)
	_ store.Dumper = (*Store)(nil)
)

// maxRetries bounds how often a transaction that failed with a deadlock or
// a serialization failure is run again.
const maxRetries = 8

var errClosed = fmt.Errorf("postgres: %w", store.ErrClosed)

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool

	mu       sync.Mutex // guards closed and inflight.Add
	closed   bool
	inflight sync.WaitGroup  // calls in flight; Close waits for them
	lease    *sequencerLease // the sequencer lease this store holds, if any (guarded by mu)
}

// Open connects to the database at dsn (a postgres:// URL or a key=value
// connection string, as pgx parses it), and migrates its schema to the
// current version.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's error may quote the DSN, password included.
		return nil, errors.New("postgres: malformed connection string")
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is Open with a pool configuration made by the caller.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %v", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %v", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close waits for the calls in flight, releases the sequencer lease the
// store holds, then closes the pool. Calls after Close (Close included)
// return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	s.mu.Lock()
	lease := s.lease
	s.mu.Unlock()
	if lease != nil {
		lease.Release()
	}
	s.pool.Close()
	return nil
}

// enter registers a call in flight; the caller must call s.inflight.Done.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.inflight.Add(1)
	return nil
}

// read runs fn with the pool, unless the store is closed.
func (s *Store) read(fn func(db *pgxpool.Pool) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	return fn(s.pool)
}

// write runs fn in a transaction and commits it; an error from fn rolls it
// back. A transaction that fails with a deadlock or a serialization failure
// (fn's error or the commit's) is run again, so fn must set everything it
// hands back afresh on each run.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	var err error
	for range maxRetries {
		if err = s.tryWrite(ctx, fn); !retryable(err) {
			return err
		}
	}
	return errRetries(err)
}

// querier is what single hands its function: the pool, on which each
// statement is a transaction of its own.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// single runs fn, a write of one statement, without an explicit
// transaction: the statement commits by itself, in one round trip instead
// of three. It is retried as write retries.
func (s *Store) single(ctx context.Context, fn func(q querier) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	var err error
	for range maxRetries {
		if err = fn(s.pool); !retryable(err) {
			return err
		}
	}
	return errRetries(err)
}

func (s *Store) tryWrite(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("postgres: begin: %v", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		if retryable(err) {
			return err
		}
		return fmt.Errorf("postgres: commit: %v", err)
	}
	return nil
}

// batch sends the statements fill queues in one round trip, in one
// implicit transaction: an error in one of them (a constraint violation,
// an error a function raises) rolls all of them back. The queued queries'
// callbacks read the results; an error from a callback does not roll back
// what the server did. It is retried as write retries, so fill and the
// callbacks must set what they hand back afresh. Its error is batchErr's
// for the method what.
func (s *Store) batch(ctx context.Context, what string, fill func(b *pgx.Batch)) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	var err error
	for range maxRetries {
		b := &pgx.Batch{}
		fill(b)
		if err = s.pool.SendBatch(ctx, b).Close(); !retryable(err) {
			return batchErr(what, err)
		}
	}
	return errRetries(err)
}

// Errors the schema raises on purpose, in a batch's implicit transaction,
// to roll it back with a verdict (migration 2's enqueue_lock).
const (
	codeDeviceNotFound = "DL404"
	codeQueueFull      = "DL429"
)

// batchErr wraps a batch's error for the method what: the errors the
// schema raises on purpose and a send id's duplicate (send_ids_pkey) as
// their store sentinels, the rest as wrap does.
func batchErr(what string, err error) error {
	var sentinel error
	switch pe := pgErr(err); {
	case err == nil:
		return nil
	case uniqueViolation(err, "send_ids_pkey"):
		sentinel = store.ErrDuplicate
	case pe != nil && pe.Code == codeDeviceNotFound:
		sentinel = store.ErrNotFound
	case pe != nil && pe.Code == codeQueueFull:
		sentinel = store.ErrQueueFull
	default:
		return wrap(what, err)
	}
	return fmt.Errorf("postgres: %s: %w", what, sentinel)
}

// pipelined runs a transaction of two batches of statements, each sent in
// one round trip: first BEGIN and the statements check queues, then those
// do queues and COMMIT. The batches' callbacks (pgx.QueuedQuery's Exec and
// Query) read the results; an error from one of check's, a sentinel say,
// rolls the transaction back before do's are sent. It is retried as write
// retries, so the callbacks must set what they hand back afresh.
func (s *Store) pipelined(ctx context.Context, what string, check, do func(b *pgx.Batch)) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	var err error
	for range maxRetries {
		if err = s.tryPipelined(ctx, what, check, do); !retryable(err) {
			return err
		}
	}
	return errRetries(err)
}

func (s *Store) tryPipelined(ctx context.Context, what string, check, do func(b *pgx.Batch)) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return wrap(what, err)
	}
	defer conn.Release()
	committed := false
	defer func() {
		if committed {
			return
		}
		// A connection that cannot roll back is closed, so that the pool
		// never hands out one inside a transaction.
		if _, rerr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	run := func(b *pgx.Batch) error {
		return conn.SendBatch(ctx, b).Close()
	}
	first := &pgx.Batch{}
	first.Queue("BEGIN")
	check(first)
	if err := run(first); err != nil {
		return passSentinel(what, err)
	}
	second := &pgx.Batch{}
	do(second)
	second.Queue("COMMIT")
	if err := run(second); err != nil {
		return passSentinel(what, err)
	}
	committed = true
	return nil
}

// passSentinel returns err as it is when it wraps a store sentinel (a
// callback's verdict, already prefixed), and as wrap does otherwise.
func passSentinel(what string, err error) error {
	for _, s := range []error{store.ErrNotFound, store.ErrNoSignedPreKey, store.ErrNoKyberPreKey} {
		if errors.Is(err, s) {
			return err
		}
	}
	return wrap(what, err)
}

// errRetries is the error of a transaction that kept failing with err, a
// deadlock or a serialization failure, maxRetries times.
func errRetries(err error) error {
	return fmt.Errorf("postgres: %d attempts failed: %v", maxRetries, err)
}

// retryable reports whether err is a deadlock or a serialization failure,
// after which the transaction may be run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// pgErr is err's PostgreSQL error, or nil.
func pgErr(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// uniqueViolation reports whether err is a unique violation of the named
// constraint (or index).
func uniqueViolation(err error, constraint string) bool {
	pe := pgErr(err)
	return pe != nil && pe.Code == "23505" && pe.ConstraintName == constraint
}

// wrap wraps a database error for the method what: a retryable error keeps
// its type (write runs the transaction again), a context's error is kept
// for errors.Is, and the rest are wrapped with %v.
func wrap(what string, err error) error {
	switch {
	case retryable(err):
		return err
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	return fmt.Errorf("postgres: %s: %v", what, err)
}

// readErr wraps a read's error: store.ErrClosed as it is, the rest as wrap.
func readErr(what string, err error) error {
	if errors.Is(err, store.ErrClosed) {
		return err
	}
	return wrap(what, err)
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

// blob returns b, or an empty non-nil slice, for NOT NULL bytea columns
// (pgx sends a nil slice as NULL).
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// nullBytes is b as stored in a nullable bytea column: NULL for nil.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// nullString is s as stored in a nullable text column: NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
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
