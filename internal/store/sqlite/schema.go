package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] takes the schema from version i to version i+1. Append only:
// a released migration is never edited. docs/data-inventory.md lists every
// table and column (TestDataInventoryCoversSchema keeps it true).
//
// Times are Unix milliseconds. Account and device ids, usernames and keys
// are as the server hands them over; the store does not interpret them.
var migrations = []string{
	// 1: everything.
	`
CREATE TABLE accounts (
	id             TEXT    NOT NULL PRIMARY KEY,
	username       TEXT    NOT NULL UNIQUE,
	identity_key   BLOB    NOT NULL,
	created        INTEGER NOT NULL,
	-- The id the account's next device gets. It only grows, so that the id
	-- of a removed device is never given to another device.
	next_device_id INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
	account_id      TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	id              INTEGER NOT NULL,
	registration_id INTEGER NOT NULL,
	credential_hash BLOB    NOT NULL,
	created         INTEGER NOT NULL,
	-- How many envelopes are queued for the device, kept by the triggers
	-- on envelopes: Enqueue checks the queue limit without counting.
	queued          INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (account_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE signed_prekeys (
	account_id TEXT    NOT NULL,
	device_id  INTEGER NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB    NOT NULL,
	signature  BLOB    NOT NULL,
	PRIMARY KEY (account_id, device_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE last_resort_kyber_prekeys (
	account_id TEXT    NOT NULL,
	device_id  INTEGER NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB    NOT NULL,
	signature  BLOB    NOT NULL,
	PRIMARY KEY (account_id, device_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE prekeys (
	account_id TEXT    NOT NULL,
	device_id  INTEGER NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB    NOT NULL,
	PRIMARY KEY (account_id, device_id, key_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE kyber_prekeys (
	account_id TEXT    NOT NULL,
	device_id  INTEGER NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB    NOT NULL,
	signature  BLOB    NOT NULL,
	PRIMARY KEY (account_id, device_id, key_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- seq is AUTOINCREMENT so that a seq is never reused, even after the
-- envelope holding the largest one is deleted: a device paging with
-- "after" never skips a new envelope.
CREATE TABLE envelopes (
	seq              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	id               TEXT    NOT NULL UNIQUE,
	account_id       TEXT    NOT NULL,
	device_id        INTEGER NOT NULL,
	type             INTEGER NOT NULL,
	source_account   TEXT    NOT NULL,
	source_device    INTEGER NOT NULL,
	client_timestamp INTEGER NOT NULL,
	server_timestamp INTEGER NOT NULL,
	content          BLOB    NOT NULL,
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX envelopes_by_device ON envelopes (account_id, device_id, seq);
CREATE INDEX envelopes_by_time ON envelopes (server_timestamp);
CREATE TRIGGER envelopes_queued_insert AFTER INSERT ON envelopes BEGIN
	UPDATE devices SET queued = queued + 1 WHERE account_id = NEW.account_id AND id = NEW.device_id;
END;
CREATE TRIGGER envelopes_queued_delete AFTER DELETE ON envelopes BEGIN
	UPDATE devices SET queued = queued - 1 WHERE account_id = OLD.account_id AND id = OLD.device_id;
END;

-- A send id is kept as a hash of (source account, source device, send id):
-- enough to refuse a replay, and it records neither the recipient nor, to
-- someone who does not know the send id, the sender.
CREATE TABLE send_ids (
	key     BLOB    NOT NULL PRIMARY KEY,
	created INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX send_ids_by_time ON send_ids (created);

-- An invite is deleted when it is used.
CREATE TABLE invites (
	code_hash BLOB    NOT NULL PRIMARY KEY,
	created   INTEGER NOT NULL,
	expires   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`,
	// 2: signed device lists, link tokens, provisioning mailboxes.
	`
-- The account's current device list as its identity key signed it. Accounts
-- created before this migration have no row until their first change.
CREATE TABLE device_lists (
	account_id TEXT    NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
	version    INTEGER NOT NULL,
	signed     BLOB    NOT NULL
) STRICT, WITHOUT ROWID;

-- device_id was taken from accounts.next_device_id when the token was made.
-- A token is deleted when it is used.
CREATE TABLE link_tokens (
	token_hash BLOB    NOT NULL PRIMARY KEY,
	account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	device_id  INTEGER NOT NULL,
	expires    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX link_tokens_by_account ON link_tokens (account_id, expires);
CREATE INDEX link_tokens_by_expiry ON link_tokens (expires);

-- message is NULL until a device puts one; the row is deleted when the
-- message is taken.
CREATE TABLE provisioning_mailboxes (
	address_hash BLOB    NOT NULL PRIMARY KEY,
	message      BLOB,
	expires      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX provisioning_mailboxes_by_expiry ON provisioning_mailboxes (expires);
`,
	// 3: unidentified (sealed-sender) access, and the day each device was
	// last seen.
	`
-- The account's unidentified access key (16 bytes, derived by its clients
-- from their profile key), NULL for none; and whether it accepts
-- sealed-sender messages whatever key they carry (0 or 1).
ALTER TABLE accounts ADD COLUMN unidentified_access_key BLOB;
ALTER TABLE accounts ADD COLUMN unrestricted_unidentified_access INTEGER NOT NULL DEFAULT 0;

-- The UTC day (days since 1970-01-01) the device was last seen: never a
-- finer time. 0 for a device from before this migration, until it is seen.
ALTER TABLE devices ADD COLUMN last_seen_day INTEGER NOT NULL DEFAULT 0;
`,
	// 4: key transparency (kt/).
	`
-- One row per epoch of the log: its timestamp and prefix-tree root (the
-- log tree's leaf), the leaves it changed as auditors get them (an encoded
-- kt.EpochChanges) and the signed checkpoint of the log ending with it.
-- Append only.
CREATE TABLE kt_epochs (
	number      INTEGER NOT NULL PRIMARY KEY,
	timestamp   INTEGER NOT NULL,
	prefix_root BLOB    NOT NULL,
	changes     BLOB    NOT NULL,
	checkpoint  BLOB    NOT NULL
) STRICT;

-- The newest entry of every label the log has published, by the label's
-- VRF index (never the label itself): its leaf's counter and commitment,
-- and the commitment's opening and value, which lookups hand out. Replaced
-- when a later epoch changes the label; never deleted (a deleted account's
-- username's entry holds an empty value).
CREATE TABLE kt_entries (
	vrf_index  BLOB    NOT NULL PRIMARY KEY,
	counter    INTEGER NOT NULL,
	commitment BLOB    NOT NULL,
	opening    BLOB    NOT NULL,
	value      BLOB    NOT NULL
) STRICT, WITHOUT ROWID;

-- The newest checkpoint each auditor cosigned, handed out with lookups.
CREATE TABLE kt_cosignatures (
	auditor    TEXT    NOT NULL PRIMARY KEY,
	size       INTEGER NOT NULL,
	checkpoint BLOB    NOT NULL
) STRICT, WITHOUT ROWID;

-- What the log must publish, in seq order: written in the transaction that
-- creates an account, changes its device list or deletes it, with the value
-- the username's entry then holds (the account id, identity key and signed
-- device list as that transaction left them); deleted in the transaction
-- that stores the epoch publishing it. A deletion holds the username alone:
-- account_id is empty, identity_key and device_list are empty blobs.
CREATE TABLE kt_pending (
	seq          INTEGER NOT NULL PRIMARY KEY,
	username     TEXT    NOT NULL,
	account_id   TEXT    NOT NULL,
	identity_key BLOB    NOT NULL,
	device_list  BLOB    NOT NULL
) STRICT;

-- Accounts from before the log are published by its first epochs, with the
-- device list they have (none for an account from before device lists).
INSERT INTO kt_pending (username, account_id, identity_key, device_list)
	SELECT a.username, a.id, a.identity_key, COALESCE(l.signed, X'')
	FROM accounts a LEFT JOIN device_lists l ON l.account_id = a.id
	ORDER BY a.created, a.id;
`,
	// 5: message franking and abuse reports (internal/franking).
	`
-- The send's franking commitment (32 bytes), bound to the delivery when the
-- envelope is handed out; empty for an envelope queued before this
-- migration (it is delivered unfranked, and its recipient drops it).
ALTER TABLE envelopes ADD COLUMN franking BLOB NOT NULL DEFAULT X'';

-- Verified abuse reports, for the operator's review. No key of any kind:
-- commitment_hash is a SHA-256 hash the server makes (with a label of its
-- own); to_many says the message was a group message, never which group;
-- sent is the content's timestamp (the sender's clock), queued the
-- envelope's server timestamp; attachment_* what the sender's client said
-- of an attachment, never its id or key. Deleted 90 days after reported.
CREATE TABLE reports (
	id                      TEXT    NOT NULL PRIMARY KEY,
	reporter                TEXT    NOT NULL,
	sender                  TEXT    NOT NULL,
	sealed                  INTEGER NOT NULL,
	commitment_hash         BLOB    NOT NULL,
	to_many                 INTEGER NOT NULL,
	sent                    INTEGER NOT NULL,
	queued                  INTEGER NOT NULL,
	reported                INTEGER NOT NULL,
	body                    TEXT    NOT NULL,
	attachment_content_type TEXT,
	attachment_file_name    TEXT,
	attachment_size         INTEGER,
	reason                  TEXT    NOT NULL,
	UNIQUE (reporter, commitment_hash)
) STRICT;
CREATE INDEX reports_by_time ON reports (reported);
CREATE INDEX reports_by_message ON reports (commitment_hash);
`,
	// 6: the front door: legal requests and transparency reports
	// (docs/legal-requests.md).
	`
-- Every legal request processed, accepted or refused, kept for good: its
-- salt opens its commitment in the public request log when it is
-- published. authority and nonce are set (and unique together) when the
-- request consumed its nonce; target_account is the account its one target
-- named, NULL for none or once that account is deleted; nondisclosure_until
-- is NULL for a request never to be published (its signature did not
-- verify). log_index is NULL until its entry is in the log; publication_index
-- and published until it is published.
CREATE TABLE legal_requests (
	id                  INTEGER NOT NULL PRIMARY KEY,
	received            INTEGER NOT NULL,
	request             BLOB    NOT NULL,
	salt                BLOB    NOT NULL,
	authority           TEXT,
	nonce               BLOB,
	jurisdiction        TEXT    NOT NULL,
	type                TEXT    NOT NULL,
	outcome             TEXT    NOT NULL,
	target_account      TEXT    REFERENCES accounts (id) ON DELETE SET NULL,
	nondisclosure_until INTEGER,
	log_index           INTEGER,
	publication_index   INTEGER,
	published           INTEGER
) STRICT;
CREATE UNIQUE INDEX legal_requests_by_nonce ON legal_requests (authority, nonce) WHERE nonce IS NOT NULL;
CREATE INDEX legal_requests_by_target ON legal_requests (target_account) WHERE target_account IS NOT NULL;

-- The signed transparency report of each period, and its log index.
CREATE TABLE transparency_reports (
	period    TEXT    NOT NULL PRIMARY KEY,
	generated INTEGER NOT NULL,
	log_index INTEGER NOT NULL,
	report    BLOB    NOT NULL
) STRICT, WITHOUT ROWID;
`,
}

// migrate brings the database's schema to len(migrations), in one
// transaction.
func migrate(db *sql.DB) error {
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT`); err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("sqlite: database schema version %d is newer than this program's (%d)", v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("sqlite: migration %d: %v", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, len(migrations)); err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate: %v", err)
	}
	return nil
}
