package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/doorless/doorless/internal/store"
)

// CreateAccount implements store.Accounts. Zero Created times are set to the
// current time.
func (s *Store) CreateAccount(ctx context.Context, a *store.Account, d *store.Device, k *store.KeyUpload, list *store.DeviceList, inviteHash []byte) error {
	if a == nil || d == nil {
		return errors.New("sqlite: create account: nil account or device")
	}
	if list == nil || list.Version != 1 || len(list.Signed) == 0 {
		return errors.New("sqlite: create account: the first device list must have version 1")
	}
	if d.AccountID != "" && d.AccountID != a.ID {
		return errors.New("sqlite: create account: device belongs to another account")
	}
	created := orNow(a.Created)
	devCreated := orNow(d.Created)
	err := s.write(ctx, func(tx *wtx) error {
		var one int
		err := tx.QueryRow(`SELECT 1 FROM accounts WHERE username = ?`, a.Username).Scan(&one)
		switch {
		case err == nil:
			return fmt.Errorf("sqlite: create account: %w", store.ErrUsernameTaken)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: create account: %v", err)
		}
		if inviteHash != nil {
			res, err := tx.Exec(`DELETE FROM invites WHERE code_hash = ? AND expires > ?`, inviteHash, toMS(created))
			if err != nil {
				return fmt.Errorf("sqlite: create account: %v", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("sqlite: create account: %v", err)
			} else if n == 0 {
				return fmt.Errorf("sqlite: create account: %w", store.ErrInvalidInvite)
			}
		}
		if _, err := tx.Exec(`INSERT INTO accounts (id, username, identity_key, created, next_device_id) VALUES (?, ?, ?, ?, ?)`,
			a.ID, a.Username, blob(a.IdentityKey), toMS(created), int64(d.ID)+1); err != nil {
			return fmt.Errorf("sqlite: create account: %v", err)
		}
		if _, err := tx.Exec(`INSERT INTO devices (account_id, id, registration_id, credential_hash, created) VALUES (?, ?, ?, ?, ?)`,
			a.ID, d.ID, d.RegistrationID, blob(d.CredentialHash), toMS(devCreated)); err != nil {
			return fmt.Errorf("sqlite: create account: %v", err)
		}
		if err := storeKeys(tx, a.ID, d.ID, k); err != nil {
			return fmt.Errorf("sqlite: create account: %v", err)
		}
		if err := replaceList(tx, a.ID, list); err != nil {
			return fmt.Errorf("sqlite: create account: %w", err)
		}
		return nil
	})
	return err
}

// replaceList stores list as the account's device list, within tx, when its
// version is the current one + 1 (1 when the account has none):
// store.ErrVersionConflict otherwise. Errors other than the sentinel are
// wrapped with %v, so callers may wrap the result with %w.
func replaceList(tx *wtx, accountID string, list *store.DeviceList) error {
	if list == nil || len(list.Signed) == 0 {
		return errors.New("no device list")
	}
	var current int64
	err := tx.QueryRow(`SELECT version FROM device_lists WHERE account_id = ?`, accountID).Scan(&current)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		current = 0
	case err != nil:
		return fmt.Errorf("%v", err)
	}
	if current < 0 || list.Version != uint64(current)+1 || list.Version > math.MaxInt64 {
		return store.ErrVersionConflict
	}
	if _, err := tx.Exec(`INSERT INTO device_lists (account_id, version, signed) VALUES (?, ?, ?)
		ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, signed = excluded.signed`,
		accountID, int64(list.Version), list.Signed); err != nil {
		return fmt.Errorf("%v", err)
	}
	return nil
}

// DeviceList implements store.Accounts.
func (s *Store) DeviceList(ctx context.Context, accountID string) (*store.DeviceList, error) {
	var l store.DeviceList
	var version int64
	err := s.read(func(db *sql.DB) error {
		return db.QueryRowContext(ctx, `SELECT version, signed FROM device_lists WHERE account_id = ?`, accountID).Scan(&version, &l.Signed)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlite: device list: %w", store.ErrNotFound)
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: device list: %v", err)
	}
	l.Version = uint64(version)
	return &l, nil
}

// AccountByUsername implements store.Accounts.
func (s *Store) AccountByUsername(ctx context.Context, username string) (*store.Account, error) {
	return s.account(ctx, `SELECT id, username, identity_key, created FROM accounts WHERE username = ?`, username)
}

// AccountByID implements store.Accounts.
func (s *Store) AccountByID(ctx context.Context, id string) (*store.Account, error) {
	return s.account(ctx, `SELECT id, username, identity_key, created FROM accounts WHERE id = ?`, id)
}

func (s *Store) account(ctx context.Context, query, arg string) (*store.Account, error) {
	var a store.Account
	var created int64
	err := s.read(func(db *sql.DB) error {
		return db.QueryRowContext(ctx, query, arg).Scan(&a.ID, &a.Username, &a.IdentityKey, &created)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlite: account: %w", store.ErrNotFound)
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: account: %v", err)
	}
	a.Created = fromMS(created)
	return &a, nil
}

// Device implements store.Accounts.
func (s *Store) Device(ctx context.Context, accountID string, deviceID uint32) (*store.Device, error) {
	d := store.Device{AccountID: accountID, ID: deviceID}
	var created int64
	err := s.read(func(db *sql.DB) error {
		return db.QueryRowContext(ctx, `SELECT registration_id, credential_hash, created FROM devices WHERE account_id = ? AND id = ?`,
			accountID, deviceID).Scan(&d.RegistrationID, &d.CredentialHash, &created)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlite: device: %w", store.ErrNotFound)
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: device: %v", err)
	}
	d.Created = fromMS(created)
	return &d, nil
}

// Devices implements store.Accounts.
func (s *Store) Devices(ctx context.Context, accountID string) ([]store.Device, error) {
	var ds []store.Device
	err := s.read(func(db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT id, registration_id, credential_hash, created FROM devices WHERE account_id = ? ORDER BY id`, accountID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d := store.Device{AccountID: accountID}
			var created int64
			if err := rows.Scan(&d.ID, &d.RegistrationID, &d.CredentialHash, &created); err != nil {
				return err
			}
			d.Created = fromMS(created)
			ds = append(ds, d)
		}
		return rows.Err()
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: devices: %v", err)
	}
	return ds, nil
}

// RemoveDevice implements store.Accounts. The device's keys and queue go
// with it (foreign keys, ON DELETE CASCADE); the account's next_device_id is
// left as it is, so the id is never reused.
func (s *Store) RemoveDevice(ctx context.Context, accountID string, deviceID uint32, list *store.DeviceList) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM devices WHERE account_id = ? AND id = ?`, accountID, deviceID)
		if err != nil {
			return fmt.Errorf("sqlite: remove device: %v", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: remove device: %v", err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: remove device: %w", store.ErrNotFound)
		}
		if err := replaceList(tx, accountID, list); err != nil {
			return fmt.Errorf("sqlite: remove device: %w", err)
		}
		return nil
	})
}

// CreateInvite implements store.Accounts. A zero Created is set to the
// current time.
func (s *Store) CreateInvite(ctx context.Context, inv *store.Invite) error {
	if inv == nil || len(inv.CodeHash) == 0 {
		return errors.New("sqlite: create invite: no code hash")
	}
	created := orNow(inv.Created)
	return s.write(ctx, func(tx *wtx) error {
		if _, err := tx.Exec(`INSERT INTO invites (code_hash, created, expires) VALUES (?, ?, ?)`,
			inv.CodeHash, toMS(created), toMS(inv.Expires)); err != nil {
			return fmt.Errorf("sqlite: create invite: %v", err)
		}
		return nil
	})
}
