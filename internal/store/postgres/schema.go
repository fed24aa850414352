package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations[i] takes the schema from version i to version i+1. Append only:
// a released migration is never edited.
//
// Tables and columns have the names of the SQLite store's
// (internal/store/sqlite), so that docs/data-inventory.md describes both
// (TestDataInventoryCoversSchema keeps it true for this one too). The
// schema starts where SQLite's ended after its sixth migration: there was
// never an older PostgreSQL database to migrate.
//
// Times are Unix milliseconds (bigint), as in SQLite and the HTTP API;
// integers that hold a uint32 (device, registration and key ids) are bigint;
// keys, hashes and ciphertext are bytea; flags are boolean.
var migrations = []string{
	// 1: everything the SQLite store had at its version 6.
	`
CREATE TABLE accounts (
	id                               text    NOT NULL PRIMARY KEY,
	username                         text    NOT NULL,
	identity_key                     bytea   NOT NULL,
	created                          bigint  NOT NULL,
	-- The id the account's next device gets. It only grows, so that the id
	-- of a removed device is never given to another device.
	next_device_id                   bigint  NOT NULL,
	unidentified_access_key          bytea,
	unrestricted_unidentified_access boolean NOT NULL DEFAULT false,
	CONSTRAINT accounts_username_key UNIQUE (username)
);

CREATE TABLE devices (
	account_id      text   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	id              bigint NOT NULL,
	registration_id bigint NOT NULL,
	credential_hash bytea  NOT NULL,
	created         bigint NOT NULL,
	-- How many envelopes are queued for the device, kept by the triggers
	-- on envelopes: Enqueue checks the queue limit without counting.
	queued          bigint NOT NULL DEFAULT 0,
	last_seen_day   bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (account_id, id)
);

CREATE TABLE signed_prekeys (
	account_id text   NOT NULL,
	device_id  bigint NOT NULL,
	key_id     bigint NOT NULL,
	public_key bytea  NOT NULL,
	signature  bytea  NOT NULL,
	PRIMARY KEY (account_id, device_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

CREATE TABLE last_resort_kyber_prekeys (
	account_id text   NOT NULL,
	device_id  bigint NOT NULL,
	key_id     bigint NOT NULL,
	public_key bytea  NOT NULL,
	signature  bytea  NOT NULL,
	PRIMARY KEY (account_id, device_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

CREATE TABLE prekeys (
	account_id text   NOT NULL,
	device_id  bigint NOT NULL,
	key_id     bigint NOT NULL,
	public_key bytea  NOT NULL,
	PRIMARY KEY (account_id, device_id, key_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

CREATE TABLE kyber_prekeys (
	account_id text   NOT NULL,
	device_id  bigint NOT NULL,
	key_id     bigint NOT NULL,
	public_key bytea  NOT NULL,
	signature  bytea  NOT NULL,
	PRIMARY KEY (account_id, device_id, key_id),
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- seq comes from a sequence, so a seq is never reused. Enqueue locks every
-- recipient device's row before it takes seqs and keeps the lock until it
-- commits, so a device's envelopes become visible in seq order: a device
-- paging with "after" never skips one that commits later with a smaller seq.
CREATE TABLE envelopes (
	seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id               text   NOT NULL UNIQUE,
	account_id       text   NOT NULL,
	device_id        bigint NOT NULL,
	type             bigint NOT NULL,
	source_account   text   NOT NULL,
	source_device    bigint NOT NULL,
	client_timestamp bigint NOT NULL,
	server_timestamp bigint NOT NULL,
	content          bytea  NOT NULL,
	-- The send's franking commitment (32 bytes), empty for none.
	franking         bytea  NOT NULL DEFAULT '',
	FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);
CREATE INDEX envelopes_by_device ON envelopes (account_id, device_id, seq);
CREATE INDEX envelopes_by_time ON envelopes (server_timestamp);
-- DeleteAccount finds the envelopes an account sent in other queues.
CREATE INDEX envelopes_by_source ON envelopes (source_account);

-- devices.queued follows the envelopes inserted and deleted, cascades
-- included.
CREATE FUNCTION envelopes_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		UPDATE devices SET queued = queued + 1 WHERE account_id = NEW.account_id AND id = NEW.device_id;
	ELSE
		UPDATE devices SET queued = queued - 1 WHERE account_id = OLD.account_id AND id = OLD.device_id;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER envelopes_queued AFTER INSERT OR DELETE ON envelopes
	FOR EACH ROW EXECUTE FUNCTION envelopes_queued();

-- A send id is kept as a hash of (source account, source device, send id),
-- or of (recipient, send id) for a sealed-sender send.
CREATE TABLE send_ids (
	key     bytea  NOT NULL PRIMARY KEY,
	created bigint NOT NULL
);
CREATE INDEX send_ids_by_time ON send_ids (created);

-- An invite is deleted when it is used.
CREATE TABLE invites (
	code_hash bytea  NOT NULL PRIMARY KEY,
	created   bigint NOT NULL,
	expires   bigint NOT NULL
);

CREATE TABLE device_lists (
	account_id text   NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
	version    bigint NOT NULL,
	signed     bytea  NOT NULL
);

CREATE TABLE link_tokens (
	token_hash bytea  NOT NULL PRIMARY KEY,
	account_id text   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	device_id  bigint NOT NULL,
	expires    bigint NOT NULL
);
CREATE INDEX link_tokens_by_account ON link_tokens (account_id, expires);
CREATE INDEX link_tokens_by_expiry ON link_tokens (expires);

-- message is NULL until a device puts one; the row is deleted when the
-- message is taken.
CREATE TABLE provisioning_mailboxes (
	address_hash bytea  NOT NULL PRIMARY KEY,
	message      bytea,
	expires      bigint NOT NULL
);
CREATE INDEX provisioning_mailboxes_by_expiry ON provisioning_mailboxes (expires);

-- Key transparency (kt/). number is the primary key: of two nodes appending
-- the same epoch, the second fails on it (store.ErrEpochConflict).
CREATE TABLE kt_epochs (
	number      bigint NOT NULL PRIMARY KEY,
	timestamp   bigint NOT NULL,
	prefix_root bytea  NOT NULL,
	changes     bytea  NOT NULL,
	checkpoint  bytea  NOT NULL
);

CREATE TABLE kt_entries (
	vrf_index  bytea  NOT NULL PRIMARY KEY,
	counter    bigint NOT NULL,
	commitment bytea  NOT NULL,
	opening    bytea  NOT NULL,
	value      bytea  NOT NULL
);

CREATE TABLE kt_cosignatures (
	auditor    text   NOT NULL PRIMARY KEY,
	size       bigint NOT NULL,
	checkpoint bytea  NOT NULL
);

-- A deletion holds the username alone: account_id is empty, identity_key
-- and device_list are empty.
CREATE TABLE kt_pending (
	seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	username     text   NOT NULL,
	account_id   text   NOT NULL,
	identity_key bytea  NOT NULL,
	device_list  bytea  NOT NULL
);

-- Verified abuse reports (internal/franking).
CREATE TABLE reports (
	id                      text    NOT NULL PRIMARY KEY,
	reporter                text    NOT NULL,
	sender                  text    NOT NULL,
	sealed                  boolean NOT NULL,
	commitment_hash         bytea   NOT NULL,
	to_many                 boolean NOT NULL,
	sent                    bigint  NOT NULL,
	queued                  bigint  NOT NULL,
	reported                bigint  NOT NULL,
	body                    text    NOT NULL,
	attachment_content_type text,
	attachment_file_name    text,
	attachment_size         bigint,
	reason                  text    NOT NULL,
	CONSTRAINT reports_reporter_commitment_hash_key UNIQUE (reporter, commitment_hash)
);
CREATE INDEX reports_by_time ON reports (reported);
CREATE INDEX reports_by_message ON reports (commitment_hash);

-- The front door (docs/legal-requests.md). authority and nonce are unique
-- together when the request consumed its nonce: of two nodes recording one
-- nonce, the second fails on legal_requests_by_nonce (store.ErrNonceSeen).
CREATE TABLE legal_requests (
	id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	received            bigint NOT NULL,
	request             bytea  NOT NULL,
	salt                bytea  NOT NULL,
	authority           text,
	nonce               bytea,
	jurisdiction        text   NOT NULL,
	type                text   NOT NULL,
	outcome             text   NOT NULL,
	target_account      text   REFERENCES accounts (id) ON DELETE SET NULL,
	nondisclosure_until bigint,
	log_index           bigint,
	publication_index   bigint,
	published           bigint
);
CREATE UNIQUE INDEX legal_requests_by_nonce ON legal_requests (authority, nonce) WHERE nonce IS NOT NULL;
CREATE INDEX legal_requests_by_target ON legal_requests (target_account) WHERE target_account IS NOT NULL;

CREATE TABLE transparency_reports (
	period    text   NOT NULL PRIMARY KEY,
	generated bigint NOT NULL,
	log_index bigint NOT NULL,
	report    bytea  NOT NULL
);
`,
	// 2: Enqueue in one round trip. enqueue_lock checks a send's recipient
	// devices inside the batch that inserts its envelopes, and raises an
	// error (so that the batch's implicit transaction rolls back) where
	// Enqueue read rows and decided in Go between two round trips; the
	// queue counter's triggers run once per statement instead of once per
	// envelope, so a send to 999 devices updates them in one UPDATE, and
	// the one on deletions locks its devices in key order (an AckMany of
	// many devices no longer deadlocks with a send).
	`
DROP TRIGGER envelopes_queued ON envelopes;
DROP FUNCTION envelopes_queued();

-- devices.queued follows the envelopes inserted and deleted, cascades
-- included: each statement's rows (its transition table) counted per
-- device.
CREATE FUNCTION envelopes_queued_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE devices d SET queued = d.queued + a.n
	FROM (SELECT account_id, device_id, count(*) AS n FROM added GROUP BY account_id, device_id) a
	WHERE d.account_id = a.account_id AND d.id = a.device_id;
	RETURN NULL;
END $$;
CREATE FUNCTION envelopes_queued_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	-- The rows first locked in key order, as enqueue_lock locks them: an
	-- AckMany over many devices and a send to some of them then wait for
	-- each other instead of deadlocking (an UPDATE locks rows in no set
	-- order).
	PERFORM 1 FROM devices d WHERE (d.account_id, d.id) IN (SELECT account_id, device_id FROM removed)
		ORDER BY d.account_id, d.id FOR UPDATE OF d;
	UPDATE devices d SET queued = d.queued - r.n
	FROM (SELECT account_id, device_id, count(*) AS n FROM removed GROUP BY account_id, device_id) r
	WHERE d.account_id = r.account_id AND d.id = r.device_id;
	RETURN NULL;
END $$;
CREATE TRIGGER envelopes_queued_added AFTER INSERT ON envelopes
	REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION envelopes_queued_added();
CREATE TRIGGER envelopes_queued_removed AFTER DELETE ON envelopes
	REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION envelopes_queued_removed();

-- enqueue_lock locks the devices (want_accounts[i], want_devices[i]), each
-- named once, to the end of the transaction, in key order (ORDER BY under
-- FOR UPDATE), so that two sends to overlapping devices cannot deadlock.
-- It fails with SQLSTATE DL404 when one of them does not exist, else with
-- DL429 when one would hold more than max_queue envelopes with
-- want_adding[i] more (the codes batchErr maps to store sentinels).
CREATE FUNCTION enqueue_lock(want_accounts text[], want_devices bigint[], want_adding bigint[], max_queue bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	locked bigint;
	too_full boolean;
BEGIN
	SELECT count(*), coalesce(bool_or(l.queued + l.adding > max_queue), false) INTO locked, too_full
	FROM (SELECT d.queued, t.adding FROM devices d
		JOIN unnest(want_accounts, want_devices, want_adding) AS t (account_id, id, adding)
			ON d.account_id = t.account_id AND d.id = t.id
		ORDER BY d.account_id, d.id FOR UPDATE OF d) l;
	IF locked < cardinality(want_accounts) THEN
		RAISE EXCEPTION 'recipient device not found' USING ERRCODE = 'DL404';
	END IF;
	IF too_full THEN
		RAISE EXCEPTION 'recipient queue full' USING ERRCODE = 'DL429';
	END IF;
END $$;
`,
}

// ErrSchemaTooNew is returned by Open for a database whose schema a newer
// version of this program made.
var ErrSchemaTooNew = errors.New("postgres: database schema is newer than this program's")

// migrate brings the schema (the first schema on the search path) to
// len(migrations), one migration per transaction. Nodes starting at once
// take turns: each transaction holds an advisory lock on the schema's name.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	for {
		done, err := migrateStep(ctx, pool)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateStep applies the next migration, if any, in one transaction; done
// reports that the schema is current.
func migrateStep(ctx context.Context, pool *pgxpool.Pool) (done bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: migrate: %v", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('doorless migrate ' || current_schema()))`); err != nil {
		return false, fmt.Errorf("postgres: migrate: %v", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)`); err != nil {
		return false, fmt.Errorf("postgres: migrate: %v", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("postgres: migrate: %v", err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("%w: version %d, this program's %d", ErrSchemaTooNew, v, len(migrations))
	}
	if v == len(migrations) {
		return true, tx.Commit(ctx)
	}
	// The simple protocol runs a script of several statements.
	if _, err := tx.Exec(ctx, migrations[v], pgx.QueryExecModeSimpleProtocol); err != nil {
		return false, fmt.Errorf("postgres: migration %d: %v", v+1, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM schema_version`); err != nil {
		return false, fmt.Errorf("postgres: migrate: %v", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, v+1); err != nil {
		return false, fmt.Errorf("postgres: migrate: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: migration %d: commit: %v", v+1, err)
	}
	return false, nil
}
