package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Provisioning = (*Store)(nil)

// CreateLinkToken implements store.Provisioning. The reserved id is taken
// from accounts.next_device_id, under the account's row lock, so it is
// spent even when the token is never used: that is what keeps ids from being
// reused.
func (s *Store) CreateLinkToken(ctx context.Context, t *store.LinkToken, now time.Time, maxDeviceID uint32, maxPending int) error {
	if t == nil || len(t.TokenHash) == 0 {
		return errors.New("postgres: create link token: no token hash")
	}
	var id uint32
	err := s.write(ctx, func(tx pgx.Tx) error {
		var next int64
		err := tx.QueryRow(ctx, `SELECT next_device_id FROM accounts WHERE id = $1 FOR NO KEY UPDATE`, t.AccountID).Scan(&next)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: create link token: %w", store.ErrNotFound)
		case err != nil:
			return wrap("create link token", err)
		}
		if next > int64(maxDeviceID) {
			return fmt.Errorf("postgres: create link token: %w", store.ErrTooManyDevices)
		}
		var pending int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM link_tokens WHERE account_id = $1 AND expires > $2`,
			t.AccountID, toMS(now)).Scan(&pending); err != nil {
			return wrap("create link token", err)
		}
		if pending >= maxPending {
			return fmt.Errorf("postgres: create link token: %w", store.ErrTooManyLinkTokens)
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET next_device_id = $1 WHERE id = $2`, next+1, t.AccountID); err != nil {
			return wrap("create link token", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO link_tokens (token_hash, account_id, device_id, expires) VALUES ($1, $2, $3, $4)`,
			t.TokenHash, t.AccountID, next, toMS(t.Expires)); err != nil {
			return wrap("create link token", err)
		}
		id = uint32(next)
		return nil
	})
	if err != nil {
		return err
	}
	t.DeviceID = id
	return nil
}

// LinkToken implements store.Provisioning.
func (s *Store) LinkToken(ctx context.Context, tokenHash []byte, now time.Time) (*store.LinkToken, error) {
	t := store.LinkToken{TokenHash: tokenHash}
	var expires int64
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT account_id, device_id, expires FROM link_tokens WHERE token_hash = $1 AND expires > $2`,
			tokenHash, toMS(now)).Scan(&t.AccountID, &t.DeviceID, &expires)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: link token: %w", store.ErrInvalidLinkToken)
	}
	if err != nil {
		return nil, readErr("link token", err)
	}
	t.Expires = fromMS(expires)
	return &t, nil
}

// LinkDevice implements store.Provisioning. A zero d.Created is set to the
// current time in the store (not in d).
func (s *Store) LinkDevice(ctx context.Context, tokenHash []byte, d *store.Device, k *store.KeyUpload, list *store.DeviceList, accessKey []byte) error {
	if d == nil {
		return errors.New("postgres: link device: nil device")
	}
	created := orNow(d.Created)
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := lockAccount(ctx, tx, d.AccountID); err != nil {
			return wrap("link device", err)
		}
		// No account, no token: the DELETE finds none.
		tag, err := tx.Exec(ctx, `DELETE FROM link_tokens WHERE token_hash = $1 AND account_id = $2 AND device_id = $3 AND expires > $4`,
			tokenHash, d.AccountID, d.ID, toMS(created))
		if err != nil {
			return wrap("link device", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: link device: %w", store.ErrInvalidLinkToken)
		}
		if err := replaceList(ctx, tx, d.AccountID, list); err != nil {
			return listErr("link device", err)
		}
		if err := insertDevice(ctx, tx, d, d.AccountID, created); err != nil {
			return wrap("link device", err)
		}
		if accessKey != nil {
			if _, err := tx.Exec(ctx, `UPDATE accounts SET unidentified_access_key = $1 WHERE id = $2`, accessKey, d.AccountID); err != nil {
				return wrap("link device", err)
			}
		}
		if err := storeKeys(ctx, tx, d.AccountID, d.ID, k); err != nil {
			return wrap("link device", err)
		}
		return nil
	})
}

// CreateMailbox implements store.Provisioning.
func (s *Store) CreateMailbox(ctx context.Context, m *store.Mailbox) error {
	if m == nil || len(m.AddressHash) == 0 {
		return errors.New("postgres: create mailbox: no address hash")
	}
	return s.single(ctx, func(q querier) error {
		if _, err := q.Exec(ctx, `INSERT INTO provisioning_mailboxes (address_hash, expires) VALUES ($1, $2)`,
			m.AddressHash, toMS(m.Expires)); err != nil {
			return wrap("create mailbox", err)
		}
		return nil
	})
}

// PutMailbox implements store.Provisioning. The mailbox's row lock settles
// two puts at once: the second finds it full.
func (s *Store) PutMailbox(ctx context.Context, addressHash, message []byte, now time.Time) error {
	if len(message) == 0 {
		return errors.New("postgres: put mailbox: empty message")
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		var full bool
		err := tx.QueryRow(ctx, `SELECT message IS NOT NULL FROM provisioning_mailboxes WHERE address_hash = $1 AND expires > $2 FOR UPDATE`,
			addressHash, toMS(now)).Scan(&full)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: put mailbox: %w", store.ErrNotFound)
		case err != nil:
			return wrap("put mailbox", err)
		case full:
			return fmt.Errorf("postgres: put mailbox: %w", store.ErrMailboxFull)
		}
		if _, err := tx.Exec(ctx, `UPDATE provisioning_mailboxes SET message = $1 WHERE address_hash = $2`, message, addressHash); err != nil {
			return wrap("put mailbox", err)
		}
		return nil
	})
}

// TakeMailbox implements store.Provisioning. The row lock makes a take
// wait for one in flight, which then finds the mailbox gone.
func (s *Store) TakeMailbox(ctx context.Context, addressHash []byte, now time.Time) ([]byte, error) {
	var msg []byte
	err := s.write(ctx, func(tx pgx.Tx) error {
		msg = nil
		var m []byte
		err := tx.QueryRow(ctx, `SELECT message FROM provisioning_mailboxes WHERE address_hash = $1 AND expires > $2 FOR UPDATE`,
			addressHash, toMS(now)).Scan(&m)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: take mailbox: %w", store.ErrNotFound)
		case err != nil:
			return wrap("take mailbox", err)
		case m == nil:
			return fmt.Errorf("postgres: take mailbox: %w", store.ErrMailboxEmpty)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM provisioning_mailboxes WHERE address_hash = $1`, addressHash); err != nil {
			return wrap("take mailbox", err)
		}
		msg = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// ExpireProvisioning implements store.Provisioning.
func (s *Store) ExpireProvisioning(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx pgx.Tx) error {
		n = 0
		for _, q := range []string{
			`DELETE FROM link_tokens WHERE expires <= $1`,
			`DELETE FROM provisioning_mailboxes WHERE expires <= $1`,
		} {
			tag, err := tx.Exec(ctx, q, toMS(now))
			if err != nil {
				return wrap("expire provisioning", err)
			}
			n += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
