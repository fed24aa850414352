package profile

import (
	"database/sql"
	"errors"
)

// schemaFranking adds what message franking needs (internal/franking).
var schemaFranking = []string{
	// franking_key (secret): the account's franking key, which the server
	// gave this device and with which it binds each message's franking
	// commitment to the account; NULL until first needed.
	`ALTER TABLE account ADD COLUMN franking_key BLOB`,
	// What reporting a message received takes (secret: its plaintext as
	// decrypted, and the envelope as delivered), by the message's id in
	// the history; deleted with the message (DeleteHistory).
	`CREATE TABLE message_franking (
		id   TEXT PRIMARY KEY,
		data BLOB NOT NULL
	) WITHOUT ROWID`,
}

// FrankingKeySize is the size of an account's franking key.
const FrankingKeySize = 32

const labelFrankingKey = "account/franking_key"

func reportableLabel(id string) string { return "franking/" + id }

// FrankingKey returns the account's franking key, nil when this device has
// none yet.
func (tx *Tx) FrankingKey() ([]byte, error) {
	var b []byte
	err := tx.q.QueryRowContext(tx.ctx, `SELECT franking_key FROM account WHERE id = 1`).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoProfile
	}
	if err != nil || b == nil {
		return nil, dbErr(err)
	}
	k, err := tx.seal.open(labelFrankingKey, b)
	if err != nil {
		return nil, err
	}
	if len(k) != FrankingKeySize {
		return nil, errors.New("client: profile: corrupt franking key")
	}
	return k, nil
}

// PutFrankingKey stores the account's franking key.
func (tx *Tx) PutFrankingKey(key []byte) error {
	if len(key) != FrankingKeySize {
		return errors.New("client: profile: franking key size")
	}
	r, err := tx.exec(`UPDATE account SET franking_key = ? WHERE id = 1`, tx.seal.seal(labelFrankingKey, key))
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return ErrNoProfile
	}
	return nil
}

// PutReportable stores what reporting a message of the history takes (the
// client's encoding, secret).
func (tx *Tx) PutReportable(id string, data []byte) error {
	_, err := tx.exec(`INSERT OR REPLACE INTO message_franking (id, data) VALUES (?, ?)`, id, tx.seal.seal(reportableLabel(id), data))
	return err
}

// Reportable returns what reporting a message of the history takes, nil
// when this device kept nothing for it.
func (tx *Tx) Reportable(id string) ([]byte, error) {
	var b []byte
	err := tx.q.QueryRowContext(tx.ctx, `SELECT data FROM message_franking WHERE id = ?`, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	return tx.seal.open(reportableLabel(id), b)
}
