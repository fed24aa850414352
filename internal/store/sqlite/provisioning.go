package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Provisioning = (*Store)(nil)

// CreateLinkToken implements store.Provisioning. The reserved id is taken
// from accounts.next_device_id, so it is spent even when the token is never
// used: that is what keeps ids from being reused.
func (s *Store) CreateLinkToken(ctx context.Context, t *store.LinkToken, now time.Time, maxDeviceID uint32, maxPending int) error {
	if t == nil || len(t.TokenHash) == 0 {
		return errors.New("sqlite: create link token: no token hash")
	}
	var id uint32
	err := s.write(ctx, func(tx *wtx) error {
		var next int64
		err := tx.QueryRow(`SELECT next_device_id FROM accounts WHERE id = ?`, t.AccountID).Scan(&next)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: create link token: %w", store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: create link token: %v", err)
		}
		if next > int64(maxDeviceID) {
			return fmt.Errorf("sqlite: create link token: %w", store.ErrTooManyDevices)
		}
		var pending int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM link_tokens WHERE account_id = ? AND expires > ?`,
			t.AccountID, toMS(now)).Scan(&pending); err != nil {
			return fmt.Errorf("sqlite: create link token: %v", err)
		}
		if pending >= maxPending {
			return fmt.Errorf("sqlite: create link token: %w", store.ErrTooManyLinkTokens)
		}
		if _, err := tx.Exec(`UPDATE accounts SET next_device_id = ? WHERE id = ?`, next+1, t.AccountID); err != nil {
			return fmt.Errorf("sqlite: create link token: %v", err)
		}
		if _, err := tx.Exec(`INSERT INTO link_tokens (token_hash, account_id, device_id, expires) VALUES (?, ?, ?, ?)`,
			t.TokenHash, t.AccountID, next, toMS(t.Expires)); err != nil {
			return fmt.Errorf("sqlite: create link token: %v", err)
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
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT account_id, device_id, expires FROM link_tokens WHERE token_hash = ? AND expires > ?`,
			tokenHash, toMS(now)).Scan(&t.AccountID, &t.DeviceID, &expires)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlite: link token: %w", store.ErrInvalidLinkToken)
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: link token: %v", err)
	}
	t.Expires = fromMS(expires)
	return &t, nil
}

// LinkDevice implements store.Provisioning. A zero d.Created is set to the
// current time in the store (not in d).
func (s *Store) LinkDevice(ctx context.Context, tokenHash []byte, d *store.Device, k *store.KeyUpload, list *store.DeviceList, accessKey []byte) error {
	if d == nil {
		return errors.New("sqlite: link device: nil device")
	}
	created := orNow(d.Created)
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM link_tokens WHERE token_hash = ? AND account_id = ? AND device_id = ? AND expires > ?`,
			tokenHash, d.AccountID, d.ID, toMS(created))
		if err != nil {
			return fmt.Errorf("sqlite: link device: %v", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: link device: %v", err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: link device: %w", store.ErrInvalidLinkToken)
		}
		if err := replaceList(tx, d.AccountID, list); err != nil {
			return fmt.Errorf("sqlite: link device: %w", err)
		}
		if err := insertDevice(tx, d, d.AccountID, created); err != nil {
			return fmt.Errorf("sqlite: link device: %v", err)
		}
		if accessKey != nil {
			if _, err := tx.Exec(`UPDATE accounts SET unidentified_access_key = ? WHERE id = ?`, accessKey, d.AccountID); err != nil {
				return fmt.Errorf("sqlite: link device: %v", err)
			}
		}
		if err := storeKeys(tx, d.AccountID, d.ID, k); err != nil {
			return fmt.Errorf("sqlite: link device: %v", err)
		}
		return nil
	})
}

// CreateMailbox implements store.Provisioning.
func (s *Store) CreateMailbox(ctx context.Context, m *store.Mailbox) error {
	if m == nil || len(m.AddressHash) == 0 {
		return errors.New("sqlite: create mailbox: no address hash")
	}
	return s.write(ctx, func(tx *wtx) error {
		if _, err := tx.Exec(`INSERT INTO provisioning_mailboxes (address_hash, expires) VALUES (?, ?)`,
			m.AddressHash, toMS(m.Expires)); err != nil {
			return fmt.Errorf("sqlite: create mailbox: %v", err)
		}
		return nil
	})
}

// PutMailbox implements store.Provisioning.
func (s *Store) PutMailbox(ctx context.Context, addressHash, message []byte, now time.Time) error {
	if len(message) == 0 {
		return errors.New("sqlite: put mailbox: empty message")
	}
	return s.write(ctx, func(tx *wtx) error {
		var full bool
		err := tx.QueryRow(`SELECT message IS NOT NULL FROM provisioning_mailboxes WHERE address_hash = ? AND expires > ?`,
			addressHash, toMS(now)).Scan(&full)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: put mailbox: %w", store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: put mailbox: %v", err)
		case full:
			return fmt.Errorf("sqlite: put mailbox: %w", store.ErrMailboxFull)
		}
		if _, err := tx.Exec(`UPDATE provisioning_mailboxes SET message = ? WHERE address_hash = ?`, message, addressHash); err != nil {
			return fmt.Errorf("sqlite: put mailbox: %v", err)
		}
		return nil
	})
}

// TakeMailbox implements store.Provisioning. It runs on the writer, so two
// takes never both see the message.
func (s *Store) TakeMailbox(ctx context.Context, addressHash []byte, now time.Time) ([]byte, error) {
	var msg []byte
	err := s.write(ctx, func(tx *wtx) error {
		var m []byte
		err := tx.QueryRow(`SELECT message FROM provisioning_mailboxes WHERE address_hash = ? AND expires > ?`,
			addressHash, toMS(now)).Scan(&m)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: take mailbox: %w", store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: take mailbox: %v", err)
		case m == nil:
			return fmt.Errorf("sqlite: take mailbox: %w", store.ErrMailboxEmpty)
		}
		if _, err := tx.Exec(`DELETE FROM provisioning_mailboxes WHERE address_hash = ?`, addressHash); err != nil {
			return fmt.Errorf("sqlite: take mailbox: %v", err)
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
	err := s.write(ctx, func(tx *wtx) error {
		n = 0
		for _, q := range []string{
			`DELETE FROM link_tokens WHERE expires <= ?`,
			`DELETE FROM provisioning_mailboxes WHERE expires <= ?`,
		} {
			res, err := tx.Exec(q, toMS(now))
			if err != nil {
				return fmt.Errorf("sqlite: expire provisioning: %v", err)
			}
			c, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("sqlite: expire provisioning: %v", err)
			}
			n += c
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
