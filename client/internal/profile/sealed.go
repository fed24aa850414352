package profile

import (
	"database/sql"
	"errors"
	"time"
)

// ---- profile keys ----

// ProfileKeySize is the size of a profile key.
const ProfileKeySize = 32

func profileKeyLabel(accountID string) string { return "profilekey/" + accountID }

// ProfileKey is what this device knows of an account's profile key: the key
// itself (nil if unknown) and whether the account takes sealed messages from
// anyone.
type ProfileKey struct {
	Key          []byte
	Unrestricted bool
}

// ProfileKey returns what this device knows of an account's profile key, or
// nil.
func (tx *Tx) ProfileKey(accountID string) (*ProfileKey, error) {
	var (
		b []byte
		p ProfileKey
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT profile_key, unrestricted FROM profile_keys WHERE account_id = ?`, accountID).
		Scan(&b, &p.Unrestricted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if b != nil {
		if p.Key, err = tx.seal.open(profileKeyLabel(accountID), b); err != nil {
			return nil, err
		}
		if len(p.Key) != ProfileKeySize {
			return nil, errors.New("client: profile: corrupt profile key")
		}
	}
	return &p, nil
}

// PutProfileKey stores an account's profile key (nil: unknown) and whether
// it takes sealed messages from anyone.
func (tx *Tx) PutProfileKey(accountID string, p *ProfileKey, now time.Time) error {
	if p.Key != nil && len(p.Key) != ProfileKeySize {
		return errors.New("client: profile: profile key size")
	}
	var b []byte
	if p.Key != nil {
		b = tx.seal.seal(profileKeyLabel(accountID), p.Key)
	}
	_, err := tx.exec(`INSERT OR REPLACE INTO profile_keys (account_id, profile_key, unrestricted, updated) VALUES (?, ?, ?, ?)`,
		accountID, b, p.Unrestricted, now.UnixMilli())
	return err
}

// DeleteProfileKey forgets an account's profile key.
func (tx *Tx) DeleteProfileKey(accountID string) error {
	_, err := tx.exec(`DELETE FROM profile_keys WHERE account_id = ?`, accountID)
	return err
}

// ---- settings ----

// Setting returns a setting's value, nil when it is not set. Settings are not
// secret.
func (tx *Tx) Setting(key string) ([]byte, error) {
	var v []byte
	err := tx.q.QueryRowContext(tx.ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return v, dbErr(err)
}

// PutSetting sets a setting (nil value: unset it).
func (tx *Tx) PutSetting(key string, value []byte) error {
	if value == nil {
		_, err := tx.exec(`DELETE FROM settings WHERE key = ?`, key)
		return err
	}
	_, err := tx.exec(`INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)`, key, value)
	return err
}
