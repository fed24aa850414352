package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Keys = (*Store)(nil)

// storeKeys writes k for a device that exists, within tx, in one round trip
// (a batch).
func storeKeys(ctx context.Context, tx pgx.Tx, accountID string, deviceID uint32, k *store.KeyUpload) error {
	if k == nil {
		return nil
	}
	var b pgx.Batch
	if sp := k.SignedPreKey; sp != nil {
		b.Queue(`INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
			accountID, deviceID, sp.ID, blob(sp.PublicKey), blob(sp.Signature))
	}
	if lr := k.LastResort; lr != nil {
		b.Queue(`INSERT INTO last_resort_kyber_prekeys (account_id, device_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
			accountID, deviceID, lr.ID, blob(lr.PublicKey), blob(lr.Signature))
	}
	for _, pk := range k.PreKeys {
		b.Queue(`INSERT INTO prekeys (account_id, device_id, key_id, public_key) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key`,
			accountID, deviceID, pk.ID, blob(pk.PublicKey))
	}
	for _, kp := range k.KyberPreKeys {
		b.Queue(`INSERT INTO kyber_prekeys (account_id, device_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature`,
			accountID, deviceID, kp.ID, blob(kp.PublicKey), blob(kp.Signature))
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, &b).Close()
}

// StoreKeys implements store.Keys. It locks the device's row (shared), so
// that the device is not removed under it.
func (s *Store) StoreKeys(ctx context.Context, accountID string, deviceID uint32, k *store.KeyUpload) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE account_id = $1 AND id = $2 FOR KEY SHARE`, accountID, deviceID).Scan(&one)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: store keys: %w", store.ErrNotFound)
		case err != nil:
			return wrap("store keys", err)
		}
		if err := storeKeys(ctx, tx, accountID, deviceID, k); err != nil {
			return wrap("store keys", err)
		}
		return nil
	})
}

// TakeBundle implements store.Keys. It hands out the one-time keys with the
// lowest ids first that no concurrent TakeBundle holds: each takes its key
// with FOR UPDATE SKIP LOCKED and deletes it, so a one-time key is handed
// out at most once, from any node, and takers do not queue behind one
// another. A device without a signed prekey gives store.ErrNoSignedPreKey;
// without any Kyber prekey, store.ErrNoKyberPreKey; nothing is taken then.
//
// Two round trips (pipelined): the reads and deletes in one batch, whose
// results decide between COMMIT and a rollback that puts the keys back.
func (s *Store) TakeBundle(ctx context.Context, accountID string, deviceID uint32) (*store.Bundle, error) {
	var b *store.Bundle
	err := s.pipelined(ctx, "take bundle", func(q *pgx.Batch) {
		b = nil
		nb := &store.Bundle{DeviceID: deviceID}
		q.Queue(`SELECT d.registration_id, s.key_id, s.public_key, s.signature
			FROM devices d LEFT JOIN signed_prekeys s ON s.account_id = d.account_id AND s.device_id = d.id
			WHERE d.account_id = $1 AND d.id = $2`, accountID, deviceID).QueryRow(func(row pgx.Row) error {
			var spID *uint32
			var spKey, spSig []byte
			err := row.Scan(&nb.RegistrationID, &spID, &spKey, &spSig)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("postgres: take bundle: %w", store.ErrNotFound)
			case err != nil:
				return err
			case spID == nil:
				return fmt.Errorf("postgres: take bundle: %w", store.ErrNoSignedPreKey)
			}
			nb.SignedPreKey = store.SignedPreKey{ID: *spID, PublicKey: spKey, Signature: spSig}
			return nil
		})
		q.Queue(`DELETE FROM prekeys WHERE (account_id, device_id, key_id) = (
				SELECT account_id, device_id, key_id FROM prekeys WHERE account_id = $1 AND device_id = $2
				ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING key_id, public_key`, accountID, deviceID).QueryRow(func(row pgx.Row) error {
			var pk store.PreKey
			err := row.Scan(&pk.ID, &pk.PublicKey)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			default:
				nb.PreKey = &pk
			}
			return nil
		})
		// The last-resort key is read whether or not a one-time Kyber
		// prekey is left: in the same round trip, it costs less than
		// asking again.
		kyberTaken := false
		q.Queue(`DELETE FROM kyber_prekeys WHERE (account_id, device_id, key_id) = (
				SELECT account_id, device_id, key_id FROM kyber_prekeys WHERE account_id = $1 AND device_id = $2
				ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING key_id, public_key, signature`, accountID, deviceID).QueryRow(func(row pgx.Row) error {
			kp := &nb.KyberPreKey
			err := row.Scan(&kp.ID, &kp.PublicKey, &kp.Signature)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			kyberTaken = err == nil
			return err
		})
		q.Queue(`SELECT key_id, public_key, signature FROM last_resort_kyber_prekeys WHERE account_id = $1 AND device_id = $2`,
			accountID, deviceID).QueryRow(func(row pgx.Row) error {
			var lr store.KyberPreKey
			err := row.Scan(&lr.ID, &lr.PublicKey, &lr.Signature)
			switch {
			case kyberTaken:
				// The one-time key taken above is handed out.
			case errors.Is(err, pgx.ErrNoRows):
				// Rolling back puts the one-time prekey taken above back.
				return fmt.Errorf("postgres: take bundle: %w", store.ErrNoKyberPreKey)
			case err != nil:
				return err
			default:
				nb.KyberPreKey, nb.KyberLastResort = lr, true
			}
			b = nb
			return nil
		})
	}, func(*pgx.Batch) {})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// KeyCounts implements store.Keys. ErrNotFound for no device.
func (s *Store) KeyCounts(ctx context.Context, accountID string, deviceID uint32) (store.KeyCounts, error) {
	var c store.KeyCounts
	var exists bool
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM devices WHERE account_id = $1 AND id = $2),
			(SELECT COUNT(*) FROM prekeys WHERE account_id = $1 AND device_id = $2),
			(SELECT COUNT(*) FROM kyber_prekeys WHERE account_id = $1 AND device_id = $2)`,
			accountID, deviceID).Scan(&exists, &c.PreKeys, &c.KyberPreKeys)
	})
	switch {
	case err != nil:
		return store.KeyCounts{}, readErr("key counts", err)
	case !exists:
		return store.KeyCounts{}, fmt.Errorf("postgres: key counts: %w", store.ErrNotFound)
	}
	return c, nil
}
