package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

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
		if _, err := tx.Exec(`INSERT INTO accounts (id, username, identity_key, created, next_device_id,
			unidentified_access_key, unrestricted_unidentified_access) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.Username, blob(a.IdentityKey), toMS(created), int64(d.ID)+1,
			accessKey(a.UnidentifiedAccessKey), a.UnrestrictedUnidentifiedAccess); err != nil {
			return fmt.Errorf("sqlite: create account: %v", err)
		}
		if err := insertDevice(tx, d, a.ID, devCreated); err != nil {
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

// insertDevice adds device d to the account, within tx, created at
// created (and seen that day).
func insertDevice(tx *wtx, d *store.Device, accountID string, created time.Time) error {
	_, err := tx.Exec(`INSERT INTO devices (account_id, id, registration_id, credential_hash, created, last_seen_day) VALUES (?, ?, ?, ?, ?, ?)`,
		accountID, d.ID, d.RegistrationID, blob(d.CredentialHash), toMS(created), store.Day(created))
	return err
}

// accessKey is an unidentified access key as stored: NULL for none.
func accessKey(k []byte) any {
	if k == nil {
		return nil
	}
	return k
}

// replaceList stores list as the account's device list, within tx, when its
// version is the current one + 1 (1 when the account has none):
// store.ErrVersionConflict otherwise. It also records the pending update
// that publishes the list in the key-transparency log (queueUpdate): the log
// publishes every version of every list. Errors other than the sentinel are
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
	if err := queueUpdate(tx, accountID, list.Signed); err != nil {
		return fmt.Errorf("%v", err)
	}
	return nil
}

// DeviceList implements store.Accounts.
func (s *Store) DeviceList(ctx context.Context, accountID string) (*store.DeviceList, error) {
	var l store.DeviceList
	var version int64
	err := s.read(func(db *reader) error {
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
	return s.account(ctx, `SELECT `+store.AccountColumns+` FROM accounts WHERE username = ?`, username)
}

// AccountByID implements store.Accounts.
func (s *Store) AccountByID(ctx context.Context, id string) (*store.Account, error) {
	return s.account(ctx, `SELECT `+store.AccountColumns+` FROM accounts WHERE id = ?`, id)
}

func (s *Store) account(ctx context.Context, query, arg string) (*store.Account, error) {
	var a *store.Account
	err := s.read(func(db *reader) error {
		var err error
		a, err = store.ScanAccount(db.QueryRowContext(ctx, query, arg))
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlite: account: %w", store.ErrNotFound)
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: account: %v", err)
	}
	return a, nil
}

// AccountsByID implements store.Accounts, with one query whatever the
// number of ids: they go in as one JSON array.
func (s *Store) AccountsByID(ctx context.Context, ids []string) ([]*store.Account, error) {
	byID := make(map[string]*store.Account, len(ids))
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT `+store.AccountColumns+` FROM accounts WHERE id IN (SELECT value FROM json_each(?))`, jsonArray(ids))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := store.ScanAccount(rows)
			if err != nil {
				return err
			}
			byID[a.ID] = a
		}
		return rows.Err()
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: accounts: %v", err)
	}
	return store.InOrder(ids, byID), nil
}

// jsonArray encodes strings as a JSON array, the form json_each reads.
func jsonArray(ss []string) string {
	if ss == nil {
		ss = []string{}
	}
	b, _ := json.Marshal(ss) // strings always encode
	return string(b)
}

// Device implements store.Accounts.
func (s *Store) Device(ctx context.Context, accountID string, deviceID uint32) (*store.Device, error) {
	d := store.Device{AccountID: accountID, ID: deviceID}
	var created int64
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT registration_id, credential_hash, created, last_seen_day FROM devices WHERE account_id = ? AND id = ?`,
			accountID, deviceID).Scan(&d.RegistrationID, &d.CredentialHash, &created, &d.LastSeenDay)
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
	ds, err := s.DevicesOf(ctx, []string{accountID})
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// DevicesOf implements store.Accounts, with one query whatever the number
// of accounts.
func (s *Store) DevicesOf(ctx context.Context, accountIDs []string) ([][]store.Device, error) {
	byAccount := make(map[string][]store.Device, len(accountIDs))
	err := s.read(func(db *reader) error {
		var rows *sql.Rows
		var err error
		if len(accountIDs) == 1 {
			rows, err = db.QueryContext(ctx, `SELECT `+store.DeviceColumns+`
				FROM devices WHERE account_id = ? ORDER BY id`, accountIDs[0])
		} else {
			rows, err = db.QueryContext(ctx, `SELECT `+store.DeviceColumns+`
				FROM devices WHERE account_id IN (SELECT value FROM json_each(?)) ORDER BY account_id, id`, jsonArray(accountIDs))
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := store.ScanDevice(rows)
			if err != nil {
				return err
			}
			byAccount[d.AccountID] = append(byAccount[d.AccountID], d)
		}
		return rows.Err()
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: devices: %v", err)
	}
	return store.InOrder(accountIDs, byAccount), nil
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

// SetUnidentifiedAccess implements store.Accounts.
func (s *Store) SetUnidentifiedAccess(ctx context.Context, accountID string, key []byte, unrestricted bool) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE accounts SET unidentified_access_key = COALESCE(?, unidentified_access_key),
			unrestricted_unidentified_access = ? WHERE id = ?`, accessKey(key), unrestricted, accountID)
		if err != nil {
			return fmt.Errorf("sqlite: set unidentified access: %v", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: set unidentified access: %v", err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: set unidentified access: %w", store.ErrNotFound)
		}
		return nil
	})
}

// SetLastSeenDay implements store.Accounts. The device row is written only
// when day is later than the one it holds.
func (s *Store) SetLastSeenDay(ctx context.Context, accountID string, deviceID uint32, day int64) error {
	return s.write(ctx, func(tx *wtx) error {
		var current int64
		err := tx.QueryRow(`SELECT last_seen_day FROM devices WHERE account_id = ? AND id = ?`, accountID, deviceID).Scan(&current)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: set last seen day: %w", store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: set last seen day: %v", err)
		case current >= day:
			return nil
		}
		if _, err := tx.Exec(`UPDATE devices SET last_seen_day = ? WHERE account_id = ? AND id = ?`, day, accountID, deviceID); err != nil {
			return fmt.Errorf("sqlite: set last seen day: %v", err)
		}
		return nil
	})
}

// deleteAccountStatements erase an account, children first, so that the
// deletion does not depend on foreign-key cascades. The first also takes
// the envelopes the account sent that wait in other queues.
var deleteAccountStatements = []string{
	`DELETE FROM envelopes WHERE account_id = ?1 OR source_account = ?1`,
	`DELETE FROM prekeys WHERE account_id = ?`,
	`DELETE FROM kyber_prekeys WHERE account_id = ?`,
	`DELETE FROM signed_prekeys WHERE account_id = ?`,
	`DELETE FROM last_resort_kyber_prekeys WHERE account_id = ?`,
	`DELETE FROM link_tokens WHERE account_id = ?`,
	`DELETE FROM device_lists WHERE account_id = ?`,
	`DELETE FROM devices WHERE account_id = ?`,
}

// DeleteAccount implements store.Accounts. With secure_delete on, the rows'
// content is overwritten in the database file; then the write-ahead log,
// which still holds copies of the pages as they were, is checkpointed and
// truncated (best effort: should readers keep it busy for longer than the
// busy timeout, the copies stay until the log is next reused). The pending
// update it records names the username until the deletion is published,
// and the account's earlier pending updates, if any are left, its keys;
// AppendEpoch then deletes and checkpoints them away likewise.
func (s *Store) DeleteAccount(ctx context.Context, accountID string) error {
	err := s.write(ctx, func(tx *wtx) error {
		var username string
		err := tx.QueryRow(`SELECT username FROM accounts WHERE id = ?`, accountID).Scan(&username)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: delete account: %w", store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: delete account: %v", err)
		}
		for _, q := range deleteAccountStatements {
			if _, err := tx.Exec(q, accountID); err != nil {
				return fmt.Errorf("sqlite: delete account: %v", err)
			}
		}
		if _, err := tx.Exec(`DELETE FROM accounts WHERE id = ?`, accountID); err != nil {
			return fmt.Errorf("sqlite: delete account: %v", err)
		}
		if err := queueDeletion(tx, username); err != nil {
			return fmt.Errorf("sqlite: delete account: %v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.checkpoint(context.WithoutCancel(ctx))
	return nil
}
