package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math"
	"sync"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/kt"
)

var _ store.Transparency = (*Store)(nil)

// queueUpdate records, within tx, that the log must publish the account's
// username's entry with the account id, its identity key and the signed
// device list that tx has just stored (replaceList calls it).
func queueUpdate(tx *wtx, accountID string, signedList []byte) error {
	res, err := tx.Exec(`INSERT INTO kt_pending (username, account_id, identity_key, device_list)
		SELECT username, id, identity_key, ? FROM accounts WHERE id = ?`, signedList, accountID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return errors.New("no account to publish")
	}
	return nil
}

// queueDeletion records, within tx, that the log must publish the
// username's entry empty.
func queueDeletion(tx *wtx, username string) error {
	_, err := tx.Exec(`INSERT INTO kt_pending (username, account_id, identity_key, device_list) VALUES (?, '', X'', X'')`, username)
	return err
}

// PendingUpdates implements store.Transparency.
func (s *Store) PendingUpdates(ctx context.Context, limit int) ([]store.PendingUpdate, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []store.PendingUpdate
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT seq, username, account_id, identity_key, device_list FROM kt_pending
			ORDER BY seq LIMIT ?`, limit)
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

// AppendEpoch implements store.Transparency. When a published update was
// a deletion, the write-ahead log is checkpointed afterwards, as after
// DeleteAccount, so that the copies of the deleted account's pending rows
// (which held its username, and the earlier ones its id, identity key and
// device lists) leave it.
func (s *Store) AppendEpoch(ctx context.Context, e *store.Epoch, entries []kt.Entry, published []int64) error {
	if e == nil || len(e.Changes) == 0 || len(e.Checkpoint) == 0 {
		return errors.New("sqlite: append epoch: no epoch, changes or checkpoint")
	}
	if e.Number > math.MaxInt64 {
		return fmt.Errorf("sqlite: append epoch: %w", store.ErrEpochConflict)
	}
	var deletion bool
	err := s.write(ctx, func(tx *wtx) error {
		deletion = false
		var n int64
		if err := tx.QueryRow(epochCountQuery).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: append epoch: %v", err)
		}
		if uint64(n) != e.Number {
			return fmt.Errorf("sqlite: append epoch %d after %d epochs: %w", e.Number, n, store.ErrEpochConflict)
		}
		if _, err := tx.Exec(`INSERT INTO kt_epochs (number, timestamp, prefix_root, changes, checkpoint) VALUES (?, ?, ?, ?, ?)`,
			int64(e.Number), e.Timestamp, e.PrefixRoot[:], e.Changes, e.Checkpoint); err != nil {
			return fmt.Errorf("sqlite: append epoch: %v", err)
		}
		for i := range entries {
			en := &entries[i]
			if _, err := tx.Exec(`INSERT INTO kt_entries (vrf_index, counter, commitment, opening, value) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (vrf_index) DO UPDATE SET counter = excluded.counter, commitment = excluded.commitment,
				opening = excluded.opening, value = excluded.value`,
				en.Leaf.Index[:], int64(en.Leaf.Counter), en.Leaf.Commitment[:], en.Opening[:], blob(en.Value)); err != nil {
				return fmt.Errorf("sqlite: append epoch: %v", err)
			}
		}
		for _, seq := range published {
			var accountID string
			err := tx.QueryRow(`DELETE FROM kt_pending WHERE seq = ? RETURNING account_id`, seq).Scan(&accountID)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				continue
			case err != nil:
				return fmt.Errorf("sqlite: append epoch: %v", err)
			}
			if accountID == "" {
				deletion = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if deletion {
		s.checkpoint(context.WithoutCancel(ctx))
	}
	return nil
}

// epochCountQuery counts the stored epochs. They are numbered from 0 with
// no gap (AppendEpoch stores only the next one), so the count is the
// largest number plus one, which SQLite reads off the primary key, where
// COUNT(*) would scan the whole table (tens of milliseconds for a year of
// epochs), on every AppendEpoch, under the server's log lock.
const epochCountQuery = `SELECT COALESCE(MAX(number) + 1, 0) FROM kt_epochs`

// EpochCount implements store.Transparency.
func (s *Store) EpochCount(ctx context.Context) (uint64, error) {
	var n int64
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, epochCountQuery).Scan(&n)
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
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT number, timestamp, prefix_root, changes, checkpoint FROM kt_epochs
			WHERE number >= ? ORDER BY number LIMIT ?`, int64(from), limit)
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
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT number, timestamp, prefix_root FROM kt_epochs ORDER BY number`)
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
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT counter, commitment, opening, value FROM kt_entries WHERE vrf_index = ?`, index[:]).
			Scan(&counter, &commitment, &opening, &value)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: transparency entry: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("transparency entry", err)
	}
	l, err := store.LeafFromRow(index[:], counter, commitment)
	if err != nil || len(opening) != kt.OpeningSize {
		return nil, errors.New("sqlite: transparency entry: malformed row")
	}
	return &kt.Entry{Leaf: l, Opening: [kt.OpeningSize]byte(opening), Value: value}, nil
}

// TransparencyLeaves implements store.Transparency. The sequence holds a
// read connection while it runs.
func (s *Store) TransparencyLeaves(ctx context.Context) iter.Seq2[kt.Leaf, error] {
	return func(yield func(kt.Leaf, error) bool) {
		stopped := false
		err := s.read(func(db *reader) error {
			rows, err := db.QueryContext(ctx, `SELECT vrf_index, counter, commitment FROM kt_entries ORDER BY vrf_index`)
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
		return errors.New("sqlite: put cosignature: no auditor or checkpoint")
	}
	return s.write(ctx, func(tx *wtx) error {
		if _, err := tx.Exec(`INSERT INTO kt_cosignatures (auditor, size, checkpoint) VALUES (?, ?, ?)
			ON CONFLICT (auditor) DO UPDATE SET size = excluded.size, checkpoint = excluded.checkpoint
			WHERE excluded.size >= kt_cosignatures.size`, c.Auditor, int64(c.Size), c.Checkpoint); err != nil {
			return fmt.Errorf("sqlite: put cosignature: %v", err)
		}
		return nil
	})
}

// Cosignatures implements store.Transparency.
func (s *Store) Cosignatures(ctx context.Context) ([]store.Cosignature, error) {
	var out []store.Cosignature
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT auditor, size, checkpoint FROM kt_cosignatures ORDER BY auditor`)
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

// readErr wraps a read's error: store.ErrClosed as it is, the rest with %v.
func readErr(what string, err error) error {
	if errors.Is(err, store.ErrClosed) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %v", what, err)
}

// The sequencer lease: a SQLite database serves one process (doorlessd
// with --store a file is a single node), so the lease is kept in the
// process, by the database file's absolute path, and is never lost until
// released or its Store closed. Two processes over one file would each get
// it; AppendEpoch's epoch numbers would still keep the log from forking,
// and the loser catches up from the store, at the price of failed epochs.
var leases struct {
	mu   sync.Mutex
	held map[string]*sequencerLease // by path
}

// errLeaseReleased is Check's answer for a lease already released.
var errLeaseReleased = errors.New("sqlite: sequencer lease: released")

// sequencerLease is a held lease on one database file.
type sequencerLease struct {
	s *Store // nil once released (guarded by leases.mu)
}

// AcquireSequencer implements store.Transparency.
func (s *Store) AcquireSequencer(ctx context.Context) (store.SequencerLease, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	leases.mu.Lock()
	defer leases.mu.Unlock()
	if leases.held[s.path] != nil {
		return nil, fmt.Errorf("sqlite: acquire sequencer: %w", store.ErrSequencerTaken)
	}
	if leases.held == nil {
		leases.held = make(map[string]*sequencerLease)
	}
	l := &sequencerLease{s: s}
	leases.held[s.path] = l
	s.lease = l
	return l, nil
}

// Check implements store.SequencerLease.
func (l *sequencerLease) Check(ctx context.Context) error {
	leases.mu.Lock()
	defer leases.mu.Unlock()
	if l.s == nil {
		return errLeaseReleased
	}
	return nil
}

// Release implements store.SequencerLease.
func (l *sequencerLease) Release() error {
	leases.mu.Lock()
	defer leases.mu.Unlock()
	l.releaseLocked()
	return nil
}

func (l *sequencerLease) releaseLocked() {
	if l.s == nil {
		return
	}
	if leases.held[l.s.path] == l {
		delete(leases.held, l.s.path)
	}
	l.s.lease = nil
	l.s = nil
}

// releaseLease releases the lease the store holds, if any (Close).
func (s *Store) releaseLease() {
	leases.mu.Lock()
	defer leases.mu.Unlock()
	if s.lease != nil {
		s.lease.releaseLocked()
	}
}

// LastPendingSeq implements store.Transparency.
func (s *Store) LastPendingSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM kt_pending`).Scan(&seq)
	})
	if err != nil {
		return 0, readErr("last pending seq", err)
	}
	return seq, nil
}
