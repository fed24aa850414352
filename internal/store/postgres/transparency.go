package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/kt"
)

var _ store.Transparency = (*Store)(nil)

// queueUpdate records, within tx, that the log must publish the account's
// username's entry with the account id, its identity key and the signed
// device list that tx has just stored (replaceList calls it).
func queueUpdate(ctx context.Context, tx pgx.Tx, accountID string, signedList []byte) error {
	tag, err := tx.Exec(ctx, `INSERT INTO kt_pending (username, account_id, identity_key, device_list)
		SELECT username, id, identity_key, $1 FROM accounts WHERE id = $2`, signedList, accountID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errors.New("no account to publish")
	}
	return nil
}

// queueDeletion records, within tx, that the log must publish the
// username's entry empty.
func queueDeletion(ctx context.Context, tx pgx.Tx, username string) error {
	_, err := tx.Exec(ctx, `INSERT INTO kt_pending (username, account_id, identity_key, device_list) VALUES ($1, '', '', '')`, username)
	return err
}

// PendingUpdates implements store.Transparency.
func (s *Store) PendingUpdates(ctx context.Context, limit int) ([]store.PendingUpdate, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []store.PendingUpdate
	err := s.read(func(db *pgxpool.Pool) error {
		out = nil
		rows, err := db.Query(ctx, `SELECT seq, username, account_id, identity_key, device_list FROM kt_pending
			ORDER BY seq LIMIT $1`, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u store.PendingUpdate
			if err := rows.Scan(&u.Seq, &u.Username, &u.AccountID, &u.IdentityKey, &u.DeviceList); err != nil {
				return err
			}
			if u.Deletion() {
				u.IdentityKey, u.DeviceList = nil, nil
			}
			out = append(out, u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, readErr("pending updates", err)
	}
	return out, nil
}

// AppendEpoch implements store.Transparency. Of several nodes appending at
// once, the epoch number settles it: one that counted the epochs before
// another's commit finds its number taken by kt_epochs' primary key (it
// waits for the other transaction to end), and one that counted after it
// finds the count moved on; either gets store.ErrEpochConflict, and its
// transaction, entries included, is rolled back.
func (s *Store) AppendEpoch(ctx context.Context, e *store.Epoch, entries []kt.Entry, published []int64) error {
	if e == nil || len(e.Changes) == 0 || len(e.Checkpoint) == 0 {
		return errors.New("postgres: append epoch: no epoch, changes or checkpoint")
	}
	if e.Number > math.MaxInt64 {
		return fmt.Errorf("postgres: append epoch: %w", store.ErrEpochConflict)
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, epochCountQuery).Scan(&n); err != nil {
			return wrap("append epoch", err)
		}
		if uint64(n) != e.Number {
			return fmt.Errorf("postgres: append epoch %d after %d epochs: %w", e.Number, n, store.ErrEpochConflict)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kt_epochs (number, timestamp, prefix_root, changes, checkpoint) VALUES ($1, $2, $3, $4, $5)`,
			int64(e.Number), e.Timestamp, e.PrefixRoot[:], e.Changes, e.Checkpoint); err != nil {
			if uniqueViolation(err, "kt_epochs_pkey") {
				return fmt.Errorf("postgres: append epoch %d: %w", e.Number, store.ErrEpochConflict)
			}
			return wrap("append epoch", err)
		}
		var b pgx.Batch
		for i := range entries {
			en := &entries[i]
			b.Queue(`INSERT INTO kt_entries (vrf_index, counter, commitment, opening, value) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (vrf_index) DO UPDATE SET counter = excluded.counter, commitment = excluded.commitment,
				opening = excluded.opening, value = excluded.value`,
				en.Leaf.Index[:], int64(en.Leaf.Counter), en.Leaf.Commitment[:], en.Opening[:], blob(en.Value))
		}
		if len(published) > 0 {
			b.Queue(`DELETE FROM kt_pending WHERE seq = ANY ($1)`, published)
		}
		if b.Len() > 0 {
			if err := tx.SendBatch(ctx, &b).Close(); err != nil {
				return wrap("append epoch", err)
			}
		}
		return nil
	})
}

// epochCountQuery counts the stored epochs. They are numbered from 0 with
// no gap (AppendEpoch stores only the next one), so the count is the
// largest number plus one, read off the primary key's index.
const epochCountQuery = `SELECT COALESCE(MAX(number) + 1, 0) FROM kt_epochs`

// EpochCount implements store.Transparency.
func (s *Store) EpochCount(ctx context.Context) (uint64, error) {
	var n int64
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, epochCountQuery).Scan(&n)
	})
	if err != nil {
		return 0, readErr("epoch count", err)
	}
	return uint64(n), nil
}

// Epochs implements store.Transparency.
func (s *Store) Epochs(ctx context.Context, from uint64, limit int) ([]store.Epoch, error) {
	if limit <= 0 || from > math.MaxInt64 {
		return nil, nil
	}
	var out []store.Epoch
	err := s.read(func(db *pgxpool.Pool) error {
		out = nil
		rows, err := db.Query(ctx, `SELECT number, timestamp, prefix_root, changes, checkpoint FROM kt_epochs
			WHERE number >= $1 ORDER BY number LIMIT $2`, int64(from), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e store.Epoch
			var number int64
			var root []byte
			if err := rows.Scan(&number, &e.Timestamp, &root, &e.Changes, &e.Checkpoint); err != nil {
				return err
			}
			if len(root) != kt.HashSize {
				return fmt.Errorf("epoch %d: prefix root of %d bytes", number, len(root))
			}
			e.Number = uint64(number)
			e.PrefixRoot = kt.Hash(root)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, readErr("epochs", err)
	}
	return out, nil
}

// EpochHeads implements store.Transparency.
func (s *Store) EpochHeads(ctx context.Context) ([]kt.Epoch, error) {
	var out []kt.Epoch
	err := s.read(func(db *pgxpool.Pool) error {
		out = nil
		rows, err := db.Query(ctx, `SELECT number, timestamp, prefix_root FROM kt_epochs ORDER BY number`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var number int64
			var e kt.Epoch
			var root []byte
			if err := rows.Scan(&number, &e.Timestamp, &root); err != nil {
				return err
			}
			if number != int64(len(out)) || len(root) != kt.HashSize {
				return fmt.Errorf("epoch %d malformed or out of sequence", number)
			}
			e.PrefixRoot = kt.Hash(root)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, readErr("epoch heads", err)
	}
	return out, nil
}

// TransparencyEntry implements store.Transparency.
func (s *Store) TransparencyEntry(ctx context.Context, index kt.Index) (*kt.Entry, error) {
	var counter int64
	var commitment, opening, value []byte
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT counter, commitment, opening, value FROM kt_entries WHERE vrf_index = $1`, index[:]).
			Scan(&counter, &commitment, &opening, &value)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: transparency entry: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("transparency entry", err)
	}
	l, err := store.LeafFromRow(index[:], counter, commitment)
	if err != nil || len(opening) != kt.OpeningSize {
		return nil, errors.New("postgres: transparency entry: malformed row")
	}
	return &kt.Entry{Leaf: l, Opening: [kt.OpeningSize]byte(opening), Value: value}, nil
}

// TransparencyLeaves implements store.Transparency. The sequence holds a
// connection while it runs. bytea compares bytewise, so the order is the
// indexes' as byte strings, as in SQLite.
func (s *Store) TransparencyLeaves(ctx context.Context) iter.Seq2[kt.Leaf, error] {
	return func(yield func(kt.Leaf, error) bool) {
		stopped := false
		err := s.read(func(db *pgxpool.Pool) error {
			rows, err := db.Query(ctx, `SELECT vrf_index, counter, commitment FROM kt_entries ORDER BY vrf_index`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var index, commitment []byte
				var counter int64
				if err := rows.Scan(&index, &counter, &commitment); err != nil {
					return err
				}
				l, err := store.LeafFromRow(index, counter, commitment)
				if err != nil {
					return err
				}
				if !yield(l, nil) {
					stopped = true
					return nil
				}
			}
			return rows.Err()
		})
		if err != nil && !stopped {
			yield(kt.Leaf{}, readErr("transparency leaves", err))
		}
	}
}

// PutCosignature implements store.Transparency.
func (s *Store) PutCosignature(ctx context.Context, c *store.Cosignature) error {
	if c == nil || c.Auditor == "" || len(c.Checkpoint) == 0 || c.Size > math.MaxInt64 {
		return errors.New("postgres: put cosignature: no auditor or checkpoint")
	}
	return s.single(ctx, func(q querier) error {
		if _, err := q.Exec(ctx, `INSERT INTO kt_cosignatures (auditor, size, checkpoint) VALUES ($1, $2, $3)
			ON CONFLICT (auditor) DO UPDATE SET size = excluded.size, checkpoint = excluded.checkpoint
			WHERE excluded.size >= kt_cosignatures.size`, c.Auditor, int64(c.Size), c.Checkpoint); err != nil {
			return wrap("put cosignature", err)
		}
		return nil
	})
}

// Cosignatures implements store.Transparency. Auditor names sort bytewise
// (COLLATE "C"), whatever the database's collation.
func (s *Store) Cosignatures(ctx context.Context) ([]store.Cosignature, error) {
	var out []store.Cosignature
	err := s.read(func(db *pgxpool.Pool) error {
		out = nil
		rows, err := db.Query(ctx, `SELECT auditor, size, checkpoint FROM kt_cosignatures ORDER BY auditor COLLATE "C"`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c store.Cosignature
			var size int64
			if err := rows.Scan(&c.Auditor, &size, &c.Checkpoint); err != nil {
				return err
			}
			c.Size = uint64(size)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, readErr("cosignatures", err)
	}
	return out, nil
}

// The sequencer lease is a session-level advisory lock, held on a
// connection of its own (taken out of the pool) for as long as the node
// leads: when the node dies, or its connection breaks, the session ends
// and PostgreSQL releases the lock, so that another node's next attempt
// takes it. Its key is sequencerLockClass in the high 32 bits and the OID
// of this schema's kt_epochs table in the low ones: deployments in other
// schemas of the same database (the tests' among them) lock apart.
const (
	sequencerLockClass   = 0x6b74_7371 // "ktsq"
	sequencerLockKey     = `($1::bigint << 32) | 'kt_epochs'::regclass::oid::bigint`
	sequencerLockQuery   = `SELECT pg_try_advisory_lock(` + sequencerLockKey + `)`
	sequencerUnlockQuery = `SELECT pg_advisory_unlock(` + sequencerLockKey + `)`
)

// errLeaseReleased is Check's answer for a lease already released.
var errLeaseReleased = errors.New("postgres: sequencer lease: released")

// sequencerLease is a held advisory lock and its session's connection.
type sequencerLease struct {
	s    *Store
	mu   sync.Mutex
	conn *pgx.Conn // nil once released
}

// AcquireSequencer implements store.Transparency.
func (s *Store) AcquireSequencer(ctx context.Context) (store.SequencerLease, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.inflight.Done()
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap("acquire sequencer", err)
	}
	var got bool
	if err := pc.QueryRow(ctx, sequencerLockQuery, sequencerLockClass).Scan(&got); err != nil {
		// (A connection the error broke, its session and any lock with
		// it, the pool closes.)
		pc.Release()
		return nil, wrap("acquire sequencer", err)
	}
	if !got {
		pc.Release()
		return nil, fmt.Errorf("postgres: acquire sequencer: %w", store.ErrSequencerTaken)
	}
	l := &sequencerLease{s: s, conn: pc.Hijack()}
	s.mu.Lock()
	s.lease = l
	s.mu.Unlock()
	return l, nil
}

// Check implements store.SequencerLease: the lock is held while its
// session lives, which a round trip on its connection shows.
func (l *sequencerLease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return errLeaseReleased
	}
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: sequencer lease lost: %v", err)
	}
	return nil
}

// Release implements store.SequencerLease: it unlocks, so that another
// node may take the lock as soon as Release returns, and closes the
// connection, whose session's end would release the lock anyway.
func (l *sequencerLease) Release() error {
	l.mu.Lock()
	conn := l.conn
	l.conn = nil
	l.mu.Unlock()
	if conn == nil {
		return nil
	}
	l.s.mu.Lock()
	if l.s.lease == l {
		l.s.lease = nil
	}
	l.s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn.IsClosed() {
		return nil // (a broken connection: its session, and the lock, are gone)
	}
	_, uerr := conn.Exec(ctx, sequencerUnlockQuery, sequencerLockClass)
	if err := errors.Join(uerr, conn.Close(ctx)); err != nil {
		return fmt.Errorf("postgres: release sequencer: %v", err)
	}
	return nil
}

// LastPendingSeq implements store.Transparency.
func (s *Store) LastPendingSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM kt_pending`).Scan(&seq)
	})
	if err != nil {
		return 0, readErr("last pending seq", err)
	}
	return seq, nil
}
