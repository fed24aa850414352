package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Accounts = (*Store)(nil)

// CreateAccount implements store.Accounts. Zero Created times are set to the
// current time.
func (s *Store) CreateAccount(ctx context.Context, a *store.Account, d *store.Device, k *store.KeyUpload, list *store.DeviceList, inviteHash []byte) error {
	if a == nil || d == nil {
		return errors.New("postgres: create account: nil account or device")
	}
	if list == nil || list.Version != 1 || len(list.Signed) == 0 {
		return errors.New("postgres: create account: the first device list must have version 1")
	}
	if d.AccountID != "" && d.AccountID != a.ID {
		return errors.New("postgres: create account: device belongs to another account")
	}
	created := orNow(a.Created)
	devCreated := orNow(d.Created)
	return s.write(ctx, func(tx pgx.Tx) error {
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE username = $1)`, a.Username).Scan(&taken); err != nil {
			return wrap("create account", err)
		}
		if taken {
			return fmt.Errorf("postgres: create account: %w", store.ErrUsernameTaken)
		}
		if inviteHash != nil {
			tag, err := tx.Exec(ctx, `DELETE FROM invites WHERE code_hash = $1 AND expires > $2`, inviteHash, toMS(created))
			if err != nil {
				return wrap("create account", err)
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("postgres: create account: %w", store.ErrInvalidInvite)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, username, identity_key, created, next_device_id,
			unidentified_access_key, unrestricted_unidentified_access) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			a.ID, a.Username, blob(a.IdentityKey), toMS(created), int64(d.ID)+1,
			nullBytes(a.UnidentifiedAccessKey), a.UnrestrictedUnidentifiedAccess); err != nil {
			// Another node registered the name since the check above.
			if uniqueViolation(err, "accounts_username_key") {
				return fmt.Errorf("postgres: create account: %w", store.ErrUsernameTaken)
			}
			return wrap("create account", err)
		}
		if err := insertDevice(ctx, tx, d, a.ID, devCreated); err != nil {
			return wrap("create account", err)
		}
		if err := storeKeys(ctx, tx, a.ID, d.ID, k); err != nil {
			return wrap("create account", err)
		}
		if err := replaceList(ctx, tx, a.ID, list); err != nil {
			return listErr("create account", err)
		}
		return nil
	})
}

// insertDevice adds device d to the account, within tx, created at
// created (and seen that day).
func insertDevice(ctx context.Context, tx pgx.Tx, d *store.Device, accountID string, created time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO devices (account_id, id, registration_id, credential_hash, created, last_seen_day)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		accountID, d.ID, d.RegistrationID, blob(d.CredentialHash), toMS(created), store.Day(created))
	return err
}

// lockAccount locks the account's row until tx ends, so that changes to
// its device list (and its device ids) are made one at a time, whichever
// node makes them. found is false for no account.
func lockAccount(ctx context.Context, tx pgx.Tx, accountID string) (found bool, err error) {
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE`, accountID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// replaceList stores list as the account's device list, within tx, when its
// version is the current one + 1 (1 when the account has none):
// store.ErrVersionConflict otherwise. It locks the account's row first
// (lockAccount), so that of two changes made at once with the same version
// one conflicts. It also records the pending update that publishes the list
// in the key-transparency log (queueUpdate).
func replaceList(ctx context.Context, tx pgx.Tx, accountID string, list *store.DeviceList) error {
	if list == nil || len(list.Signed) == 0 {
		return errors.New("no device list")
	}
	if found, err := lockAccount(ctx, tx, accountID); err != nil {
		return err
	} else if !found {
		return errors.New("no account")
	}
	var current int64
	err := tx.QueryRow(ctx, `SELECT version FROM device_lists WHERE account_id = $1`, accountID).Scan(&current)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		current = 0
	case err != nil:
		return err
	}
	if current < 0 || list.Version != uint64(current)+1 || list.Version > math.MaxInt64 {
		return store.ErrVersionConflict
	}
	if _, err := tx.Exec(ctx, `INSERT INTO device_lists (account_id, version, signed) VALUES ($1, $2, $3)
		ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, signed = excluded.signed`,
		accountID, int64(list.Version), list.Signed); err != nil {
		return err
	}
	return queueUpdate(ctx, tx, accountID, list.Signed)
}

// listErr wraps an error of replaceList for the method what: the sentinel
// with %w, the rest as wrap does.
func listErr(what string, err error) error {
	if errors.Is(err, store.ErrVersionConflict) {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	return wrap(what, err)
}

// DeviceList implements store.Accounts.
func (s *Store) DeviceList(ctx context.Context, accountID string) (*store.DeviceList, error) {
	var l store.DeviceList
	var version int64
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT version, signed FROM device_lists WHERE account_id = $1`, accountID).Scan(&version, &l.Signed)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: device list: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("device list", err)
	}
	l.Version = uint64(version)
	return &l, nil
}

// AccountByUsername implements store.Accounts.
func (s *Store) AccountByUsername(ctx context.Context, username string) (*store.Account, error) {
	return s.account(ctx, `SELECT `+store.AccountColumns+` FROM accounts WHERE username = $1`, username)
}

// AccountByID implements store.Accounts.
func (s *Store) AccountByID(ctx context.Context, id string) (*store.Account, error) {
	return s.account(ctx, `SELECT `+store.AccountColumns+` FROM accounts WHERE id = $1`, id)
}

func (s *Store) account(ctx context.Context, query, arg string) (*store.Account, error) {
	var a *store.Account
	err := s.read(func(db *pgxpool.Pool) error {
		var err error
		a, err = store.ScanAccount(db.QueryRow(ctx, query, arg))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: account: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("account", err)
	}
	return a, nil
}

// AccountsByID implements store.Accounts, in one statement and one round
// trip whatever the number of ids.
func (s *Store) AccountsByID(ctx context.Context, ids []string) ([]*store.Account, error) {
	byID := make(map[string]*store.Account, len(ids))
	err := s.read(func(db *pgxpool.Pool) error {
		rows, err := db.Query(ctx, `SELECT `+store.AccountColumns+` FROM accounts WHERE id = ANY($1)`, ids)
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
	if err != nil {
		return nil, readErr("accounts", err)
	}
	return store.InOrder(ids, byID), nil
}

// Device implements store.Accounts.
func (s *Store) Device(ctx context.Context, accountID string, deviceID uint32) (*store.Device, error) {
	d := store.Device{AccountID: accountID, ID: deviceID}
	var created int64
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT registration_id, credential_hash, created, last_seen_day FROM devices
			WHERE account_id = $1 AND id = $2`, accountID, deviceID).Scan(&d.RegistrationID, &d.CredentialHash, &created, &d.LastSeenDay)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: device: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("device", err)
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

// DevicesOf implements store.Accounts, in one statement and one round trip
// whatever the number of accounts.
func (s *Store) DevicesOf(ctx context.Context, accountIDs []string) ([][]store.Device, error) {
	byAccount := make(map[string][]store.Device, len(accountIDs))
	err := s.read(func(db *pgxpool.Pool) error {
		rows, err := db.Query(ctx, `SELECT `+store.DeviceColumns+` FROM devices
			WHERE account_id = ANY($1) ORDER BY account_id, id`, accountIDs)
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
	if err != nil {
		return nil, readErr("devices", err)
	}
	return store.InOrder(accountIDs, byAccount), nil
}

// RemoveDevice implements store.Accounts. The device's keys and queue go
// with it (foreign keys, ON DELETE CASCADE); the account's next_device_id is
// left as it is, so the id is never reused.
func (s *Store) RemoveDevice(ctx context.Context, accountID string, deviceID uint32, list *store.DeviceList) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		// The account first: every list change takes its lock before any
		// other, so two of them never wait for each other's.
		if found, err := lockAccount(ctx, tx, accountID); err != nil {
			return wrap("remove device", err)
		} else if !found {
			return fmt.Errorf("postgres: remove device: %w", store.ErrNotFound)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM devices WHERE account_id = $1 AND id = $2`, accountID, deviceID)
		if err != nil {
			return wrap("remove device", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: remove device: %w", store.ErrNotFound)
		}
		if err := replaceList(ctx, tx, accountID, list); err != nil {
			return listErr("remove device", err)
		}
		return nil
	})
}

// CreateInvite implements store.Accounts. A zero Created is set to the
// current time.
func (s *Store) CreateInvite(ctx context.Context, inv *store.Invite) error {
	if inv == nil || len(inv.CodeHash) == 0 {
		return errors.New("postgres: create invite: no code hash")
	}
	created := orNow(inv.Created)
	return s.single(ctx, func(q querier) error {
		if _, err := q.Exec(ctx, `INSERT INTO invites (code_hash, created, expires) VALUES ($1, $2, $3)`,
			inv.CodeHash, toMS(created), toMS(inv.Expires)); err != nil {
			return wrap("create invite", err)
		}
		return nil
	})
}

// SetUnidentifiedAccess implements store.Accounts.
func (s *Store) SetUnidentifiedAccess(ctx context.Context, accountID string, key []byte, unrestricted bool) error {
	return s.single(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `UPDATE accounts SET unidentified_access_key = COALESCE($1, unidentified_access_key),
			unrestricted_unidentified_access = $2 WHERE id = $3`, nullBytes(key), unrestricted, accountID)
		if err != nil {
			return wrap("set unidentified access", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: set unidentified access: %w", store.ErrNotFound)
		}
		return nil
	})
}

// SetLastSeenDay implements store.Accounts. The device row is written only
// when day is later than the one it holds.
func (s *Store) SetLastSeenDay(ctx context.Context, accountID string, deviceID uint32, day int64) error {
	return s.single(ctx, func(q querier) error {
		var exists bool
		err := q.QueryRow(ctx, `WITH moved AS (
				UPDATE devices SET last_seen_day = $3 WHERE account_id = $1 AND id = $2 AND last_seen_day < $3 RETURNING 1
			)
			SELECT EXISTS (SELECT 1 FROM moved) OR EXISTS (SELECT 1 FROM devices WHERE account_id = $1 AND id = $2)`,
			accountID, deviceID, day).Scan(&exists)
		if err != nil {
			return wrap("set last seen day", err)
		}
		if !exists {
			return fmt.Errorf("postgres: set last seen day: %w", store.ErrNotFound)
		}
		return nil
	})
}

// deleteAccountStatements erase an account, children first, so that the
// deletion does not depend on foreign-key cascades. The first also takes
// the envelopes the account sent that wait in other queues.
var deleteAccountStatements = []string{
	`DELETE FROM envelopes WHERE account_id = $1 OR source_account = $1`,
	`DELETE FROM prekeys WHERE account_id = $1`,
	`DELETE FROM kyber_prekeys WHERE account_id = $1`,
	`DELETE FROM signed_prekeys WHERE account_id = $1`,
	`DELETE FROM last_resort_kyber_prekeys WHERE account_id = $1`,
	`DELETE FROM link_tokens WHERE account_id = $1`,
	`DELETE FROM device_lists WHERE account_id = $1`,
	`DELETE FROM devices WHERE account_id = $1`,
}

// DeleteAccount implements store.Accounts. Unlike SQLite with
// secure_delete, PostgreSQL does not overwrite deleted rows: they stay in
// the table files as dead tuples until (auto)vacuum reclaims their space and
// it is reused, and in the WAL (and its archive, if any) until the segments
// are recycled.
func (s *Store) DeleteAccount(ctx context.Context, accountID string) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		var username string
		err := tx.QueryRow(ctx, `SELECT username FROM accounts WHERE id = $1 FOR UPDATE`, accountID).Scan(&username)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: delete account: %w", store.ErrNotFound)
		case err != nil:
			return wrap("delete account", err)
		}
		for _, q := range deleteAccountStatements {
			if _, err := tx.Exec(ctx, q, accountID); err != nil {
				return wrap("delete account", err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, accountID); err != nil {
			return wrap("delete account", err)
		}
		if err := queueDeletion(ctx, tx, username); err != nil {
			return wrap("delete account", err)
		}
		return nil
	})
}
