package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/doorless/doorless/internal/store"
)

// storeKeys writes k for a device that exists.
func storeKeys(tx *wtx, accountID string, deviceID uint32, k *store.KeyUpload) error {
	if k == nil {
		return nil
	}
	if sp := k.SignedPreKey; sp != nil {
		if _, err := tx.Exec(`INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
			accountID, deviceID, sp.ID, blob(sp.PublicKey), blob(sp.Signature)); err != nil {
			return err
		}
	}
	if lr := k.LastResort; lr != nil {
		if _, err := tx.Exec(`INSERT INTO last_resort_kyber_prekeys (account_id, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
			accountID, deviceID, lr.ID, blob(lr.PublicKey), blob(lr.Signature)); err != nil {
			return err
		}
	}
	for _, pk := range k.PreKeys {
		if _, err := tx.Exec(`INSERT INTO prekeys (account_id, device_id, key_id, public_key) VALUES (?, ?, ?, ?)
			ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key`,
			accountID, deviceID, pk.ID, blob(pk.PublicKey)); err != nil {
			return err
		}
	}
	for _, kp := range k.KyberPreKeys {
		if _, err := tx.Exec(`INSERT INTO kyber_prekeys (account_id, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature`,
			accountID, deviceID, kp.ID, blob(kp.PublicKey), blob(kp.Signature)); err != nil {
			return err
		}
	}
	return nil
}

// deviceExists reports whether the device exists, within tx.
func deviceExists(tx *wtx, accountID string, deviceID uint32) (bool, error) {
	var one int
	err := tx.QueryRow(`SELECT 1 FROM devices WHERE account_id = ? AND id = ?`, accountID, deviceID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// StoreKeys implements store.Keys.
func (s *Store) StoreKeys(ctx context.Context, accountID string, deviceID uint32, k *store.KeyUpload) error {
	return s.write(ctx, func(tx *wtx) error {
		ok, err := deviceExists(tx, accountID, deviceID)
		if err != nil {
			return fmt.Errorf("sqlite: store keys: %v", err)
		}
		if !ok {
			return fmt.Errorf("sqlite: store keys: %w", store.ErrNotFound)
		}
		if err := storeKeys(tx, accountID, deviceID, k); err != nil {
			return fmt.Errorf("sqlite: store keys: %v", err)
		}
		return nil
	})
}

// TakeBundle implements store.Keys. It hands out the one-time keys with the
// lowest ids first. It runs on the writer, so no two calls interleave: a
// one-time key is handed out at most once. A device without a signed prekey
// gives store.ErrNoSignedPreKey; without any Kyber prekey,
// store.ErrNoKyberPreKey; nothing is taken then.
func (s *Store) TakeBundle(ctx context.Context, accountID string, deviceID uint32) (*store.Bundle, error) {
	var b *store.Bundle
	err := s.write(ctx, func(tx *wtx) error {
		nb := &store.Bundle{DeviceID: deviceID}
		err := tx.QueryRow(`SELECT registration_id FROM devices WHERE account_id = ? AND id = ?`, accountID, deviceID).Scan(&nb.RegistrationID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: take bundle: %w", store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: take bundle: %v", err)
		}

		sp := &nb.SignedPreKey
		err = tx.QueryRow(`SELECT key_id, public_key, signature FROM signed_prekeys WHERE account_id = ? AND device_id = ?`,
			accountID, deviceID).Scan(&sp.ID, &sp.PublicKey, &sp.Signature)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: take bundle: %w", store.ErrNoSignedPreKey)
		case err != nil:
			return fmt.Errorf("sqlite: take bundle: %v", err)
		}

		var pk store.PreKey
		err = tx.QueryRow(`DELETE FROM prekeys WHERE account_id = ?1 AND device_id = ?2
			AND key_id = (SELECT MIN(key_id) FROM prekeys WHERE account_id = ?1 AND device_id = ?2)
			RETURNING key_id, public_key`, accountID, deviceID).Scan(&pk.ID, &pk.PublicKey)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("sqlite: take bundle: %v", err)
		default:
			nb.PreKey = &pk
		}

		kp := &nb.KyberPreKey
		err = tx.QueryRow(`DELETE FROM kyber_prekeys WHERE account_id = ?1 AND device_id = ?2
			AND key_id = (SELECT MIN(key_id) FROM kyber_prekeys WHERE account_id = ?1 AND device_id = ?2)
			RETURNING key_id, public_key, signature`, accountID, deviceID).Scan(&kp.ID, &kp.PublicKey, &kp.Signature)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err = tx.QueryRow(`SELECT key_id, public_key, signature FROM last_resort_kyber_prekeys WHERE account_id = ? AND device_id = ?`,
				accountID, deviceID).Scan(&kp.ID, &kp.PublicKey, &kp.Signature)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("sqlite: take bundle: %w", store.ErrNoKyberPreKey)
			case err != nil:
				return fmt.Errorf("sqlite: take bundle: %v", err)
			}
			nb.KyberLastResort = true
		case err != nil:
			return fmt.Errorf("sqlite: take bundle: %v", err)
		}
		b = nb
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// KeyCounts implements store.Keys. ErrNotFound for no device.
func (s *Store) KeyCounts(ctx context.Context, accountID string, deviceID uint32) (store.KeyCounts, error) {
	var c store.KeyCounts
	var exists bool
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT
			EXISTS (SELECT 1 FROM devices WHERE account_id = ?1 AND id = ?2),
			(SELECT COUNT(*) FROM prekeys WHERE account_id = ?1 AND device_id = ?2),
			(SELECT COUNT(*) FROM kyber_prekeys WHERE account_id = ?1 AND device_id = ?2)`,
			accountID, deviceID).Scan(&exists, &c.PreKeys, &c.KyberPreKeys)
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return store.KeyCounts{}, err
	case err != nil:
		return store.KeyCounts{}, fmt.Errorf("sqlite: key counts: %v", err)
	case !exists:
		return store.KeyCounts{}, fmt.Errorf("sqlite: key counts: %w", store.ErrNotFound)
	}
	return c, nil
}
