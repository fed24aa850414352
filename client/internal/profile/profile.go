// Package profile is the client's local store: one SQLite database per device
// profile, holding the account's credentials and identity, its own prekeys,
// the session records with other devices, contacts, the ids of the envelopes
// already processed, an inbox of events not yet handed to the application,
// the message history with its disappearing times and receipts,
// conversation timers, groups with their sender keys, the newest signed
// device list seen for each account, profile keys (this account's and its
// contacts'), the sealed-sender trust root and certificate, settings, and
// what key transparency needs: the log this device follows (its pinned keys,
// the last head verified, the auditors required), the entries last verified
// for each label, the owner monitor's state and its alerts; and what message
// franking needs: the account's franking key and, for each message received,
// what reporting it takes.
//
// Several processes may use one profile at once (a listener in one terminal,
// a sender in another). Every change happens inside Update, one SQLite write
// transaction begun with BEGIN IMMEDIATE, so a read-modify-write of a session
// record cannot interleave with another's; nothing is cached in memory across
// transactions.
//
// Secrets (private keys, the device password, session and sender-key
// records, inbox and history plaintext, the franking key and what reports
// take, group states and changes) are sealed with AES-256-GCM under a key
// derived with argon2id from a passphrase, when the profile has one; the
// additional data names the row, so a sealed value moved to another row
// does not open. Without a passphrase they are stored as they are,
// protected only by the file mode (0600) of the database in its 0700
// directory.
//
// A Store is safe for concurrent use.
package profile

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/argon2"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database's name inside the profile directory.
const FileName = "profile.db"

// Errors a caller branches on. Their messages are the client's: this package
// is the client's internals.
var (
	ErrNoProfile       = errors.New("client: no profile")
	ErrProfileExists   = errors.New("client: a profile already exists")
	ErrWrongPassphrase = errors.New("client: wrong passphrase")
)

// KDFParams are the argon2id parameters, stored in the profile.
type KDFParams struct {
	Time    uint32
	Memory  uint32 // KiB
	Threads uint8
}

// DefaultKDF is what a new profile uses: argon2id with t=3, 64 MiB, p=2.
var DefaultKDF = KDFParams{Time: 3, Memory: 64 * 1024, Threads: 2}

const (
	schemaVersion = 6
	saltSize      = 16
	keySize       = 32
	sealVersion   = 1
	// adPrefix starts the additional data of every sealed value.
	adPrefix = "doorless profile v1\x00"
	// checkLabel and checkPlaintext make the value that tells a wrong
	// passphrase from a right one.
	checkLabel     = "check"
	checkPlaintext = "doorless profile passphrase check"

	busyTimeoutMS = 10000
)

// Synchronous is SQLite's synchronous setting for new connections: FULL, so
// that a commit survives a power loss before the envelope it records is
// acknowledged to the server. Tests that do not need durability set OFF.
var Synchronous = "FULL"

// Store is an open profile database.
type Store struct {
	db   *sql.DB
	seal *sealer
}

// String hides whatever the store holds.
func (s *Store) String() string { return "profile.Store([redacted])" }

// GoString hides whatever the store holds from %#v.
func (s *Store) GoString() string { return s.String() }

func dsn(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	u := url.URL{Path: filepath.ToSlash(abs)}
	q := url.Values{}
	q.Set("mode", "rw") // never create: Create makes the file with its mode first
	q.Set("_txlock", "immediate")
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(busyTimeoutMS)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+Synchronous+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "secure_delete(1)")
	return "file:" + u.EscapedPath() + "?" + q.Encode()
}

func openDB(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("client: profile: %v", err)
	}
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("client: profile: %v", err)
	}
	return db, nil
}

// Create makes a new profile database at path, which must not exist, with
// mode 0600. With a passphrase, secrets are sealed under a key derived with
// kdf.
func Create(path, passphrase string, kdf KDFParams) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, ErrProfileExists
	}
	if err != nil {
		return nil, fmt.Errorf("client: profile: %v", err)
	}
	f.Close()
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, seal: &sealer{}}
	err = s.create(passphrase, kdf)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) create(passphrase string, kdf KDFParams) error {
	ctx := context.Background()
	meta := map[string][]byte{}
	if passphrase != "" {
		salt := make([]byte, saltSize)
		rand.Read(salt)
		sl, err := newSealer(passphrase, salt, kdf)
		if err != nil {
			return err
		}
		s.seal = sl
		meta["kdf_salt"] = salt
		meta["kdf_time"] = binary.BigEndian.AppendUint32(nil, kdf.Time)
		meta["kdf_memory"] = binary.BigEndian.AppendUint32(nil, kdf.Memory)
		meta["kdf_threads"] = []byte{kdf.Threads}
		meta["check"] = sl.seal(checkLabel, []byte(checkPlaintext))
	}
	return s.Update(ctx, func(tx *Tx) error {
		for _, stmts := range migrations {
			for _, stmt := range stmts {
				if _, err := tx.q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("client: profile: schema: %v", err)
				}
			}
		}
		for k, v := range meta {
			if _, err := tx.q.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
				return fmt.Errorf("client: profile: %v", err)
			}
		}
		_, err := tx.q.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion))
		return err
	})
}

// Open opens the profile database at path. ErrNoProfile when there is none;
// ErrWrongPassphrase when the passphrase does not open it, or when one is
// given for a profile without one, or none for a profile with one.
func Open(path, passphrase string) (*Store, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoProfile
	} else if err != nil {
		return nil, fmt.Errorf("client: profile: %v", err)
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, seal: &sealer{}}
	if err := s.open(passphrase); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(passphrase string) error {
	ctx := context.Background()
	var version int
	if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("client: profile: %v", err)
	}
	switch {
	case version == 0:
		return ErrNoProfile
	case version > schemaVersion:
		return fmt.Errorf("client: profile: schema version %d unknown", version)
	case version < schemaVersion:
		err := s.Update(ctx, func(tx *Tx) error {
			for _, stmts := range migrations[version:] {
				for _, stmt := range stmts {
					if _, err := tx.q.ExecContext(ctx, stmt); err != nil {
						return fmt.Errorf("client: profile: migrating: %v", err)
					}
				}
			}
			_, err := tx.q.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion))
			return err
		})
		if err != nil {
			return err
		}
	}
	meta := map[string][]byte{}
	rows, err := s.db.QueryContext(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return fmt.Errorf("client: profile: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return fmt.Errorf("client: profile: %v", err)
		}
		meta[k] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("client: profile: %v", err)
	}
	salt, sealed := meta["kdf_salt"]
	if !sealed {
		if passphrase != "" {
			return fmt.Errorf("%w: the profile has no passphrase", ErrWrongPassphrase)
		}
		return nil
	}
	if passphrase == "" {
		return fmt.Errorf("%w: the profile needs a passphrase", ErrWrongPassphrase)
	}
	if len(salt) != saltSize || len(meta["kdf_time"]) != 4 || len(meta["kdf_memory"]) != 4 || len(meta["kdf_threads"]) != 1 {
		return errors.New("client: profile: corrupt key derivation parameters")
	}
	kdf := KDFParams{
		Time:    binary.BigEndian.Uint32(meta["kdf_time"]),
		Memory:  binary.BigEndian.Uint32(meta["kdf_memory"]),
		Threads: meta["kdf_threads"][0],
	}
	sl, err := newSealer(passphrase, salt, kdf)
	if err != nil {
		return err
	}
	check, err := sl.open(checkLabel, meta["check"])
	if err != nil || subtle.ConstantTimeCompare(check, []byte(checkPlaintext)) != 1 {
		return ErrWrongPassphrase
	}
	s.seal = sl
	return nil
}

// Sealed reports whether secrets are sealed under a passphrase.
func (s *Store) Sealed() bool { return s.seal.aead != nil }

// Close closes the database; operations after it fail. It leaves the
// sealer alone: an operation running concurrently must never see a store
// that stores secrets as they are.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("client: profile: %v", err)
	}
	return nil
}

// Remove deletes a profile database and its journal files. It is for a
// registration that failed before the profile was complete.
func Remove(path string) error {
	var first error
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// Complete reports whether the profile at path holds a registered account,
// without needing its passphrase. A profile that exists but is not complete is
// what a registration interrupted before the server answered leaves behind.
func Complete(path string) (bool, error) {
	db, err := openDB(path)
	if err != nil {
		return false, err
	}
	defer db.Close()
	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return false, fmt.Errorf("client: profile: %v", err)
	}
	if version == 0 {
		return false, nil
	}
	var id string
	err = db.QueryRow(`SELECT account_id FROM account WHERE id = 1`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("client: profile: %v", err)
	}
	return id != "", nil
}

// ---- sealing ----

// sealer seals secret values; with a nil aead it stores them as they are.
type sealer struct {
	aead cipher.AEAD
}

func (s *sealer) String() string { return "[redacted]" }

func (s *sealer) GoString() string { return "[redacted]" }

func newSealer(passphrase string, salt []byte, kdf KDFParams) (*sealer, error) {
	if kdf.Time < 1 || kdf.Memory < 8*uint32(max(kdf.Threads, 1)) || kdf.Threads < 1 || kdf.Memory > 4<<20 || kdf.Time > 100 {
		return nil, errors.New("client: profile: key derivation parameters out of range")
	}
	key := argon2.IDKey([]byte(passphrase), salt, kdf.Time, kdf.Memory, kdf.Threads, keySize)
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("client: profile: %v", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("client: profile: %v", err)
	}
	return &sealer{aead: aead}, nil
}

var errUnseal = errors.New("client: profile: a sealed value does not open")

// seal returns the value to store for the secret pt of the row label.
func (s *sealer) seal(label string, pt []byte) []byte {
	if s.aead == nil {
		return append([]byte(nil), pt...)
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return s.aead.Seal(out, out[1:], pt, []byte(adPrefix+label))
}

// open returns the secret stored for the row label.
func (s *sealer) open(label string, b []byte) ([]byte, error) {
	if s.aead == nil {
		return append([]byte(nil), b...), nil
	}
	n := s.aead.NonceSize()
	if len(b) < 1+n+s.aead.Overhead() || b[0] != sealVersion {
		return nil, errUnseal
	}
	pt, err := s.aead.Open(nil, b[1:1+n], b[1+n:], []byte(adPrefix+label))
	if err != nil {
		return nil, errUnseal
	}
	return pt, nil
}

// ---- transactions ----

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is a transaction on the store, or a view of it for reads.
type Tx struct {
	ctx  context.Context
	q    querier
	seal *sealer
}

// Update runs fn in one write transaction (BEGIN IMMEDIATE), committed when fn
// returns nil and rolled back otherwise.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return dbErr(err)
	}
	if err := fn(&Tx{ctx: ctx, q: tx, seal: s.seal}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return dbErr(err)
	}
	return nil
}

// View runs fn in a read transaction: a consistent snapshot.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return dbErr(err)
	}
	defer tx.Rollback()
	return fn(&Tx{ctx: ctx, q: tx, seal: s.seal})
}

// dbErr wraps a database error (nil stays nil); a context's error stays
// visible to errors.Is.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("client: profile: %w", err)
	}
	return fmt.Errorf("client: profile: %v", err)
}

func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	r, err := tx.q.ExecContext(tx.ctx, query, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	return r, nil
}

// migrations[i] takes a profile from schema version i to i+1.
var migrations = [][]string{schema, schemaV2, schemaV3, schemaV4, schemaFranking, schemaLegal}

var schema = []string{
	`CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value BLOB NOT NULL
	) WITHOUT ROWID`,
	// The device's account. password and identity_private are secret.
	`CREATE TABLE account (
		id               INTEGER PRIMARY KEY CHECK (id = 1),
		server_url       TEXT NOT NULL DEFAULT '',
		account_id       TEXT NOT NULL DEFAULT '',
		username         TEXT NOT NULL DEFAULT '',
		device_id        INTEGER NOT NULL DEFAULT 0,
		password         BLOB,
		identity_public  BLOB NOT NULL,
		identity_private BLOB NOT NULL,
		registration_id  INTEGER NOT NULL,
		next_prekey_id   INTEGER NOT NULL,
		next_kyber_id    INTEGER NOT NULL,
		next_signed_id   INTEGER NOT NULL,
		created          INTEGER NOT NULL
	)`,
	// Own prekeys; private is secret.
	`CREATE TABLE prekeys (
		id      INTEGER PRIMARY KEY,
		private BLOB NOT NULL,
		created INTEGER NOT NULL
	)`,
	`CREATE TABLE signed_prekeys (
		id        INTEGER PRIMARY KEY,
		private   BLOB NOT NULL,
		signature BLOB NOT NULL,
		created   INTEGER NOT NULL
	)`,
	`CREATE TABLE kyber_prekeys (
		id          INTEGER PRIMARY KEY,
		private     BLOB NOT NULL,
		signature   BLOB NOT NULL,
		last_resort INTEGER NOT NULL,
		created     INTEGER NOT NULL
	)`,
	// Base keys of sessions made with a last-resort Kyber prekey: a first
	// message replayed after its session is gone is refused.
	`CREATE TABLE kyber_base_keys (
		kyber_id INTEGER NOT NULL,
		base_key BLOB NOT NULL,
		created  INTEGER NOT NULL,
		PRIMARY KEY (kyber_id, base_key)
	) WITHOUT ROWID`,
	// Session records (secret), by remote account and device.
	`CREATE TABLE sessions (
		account_id TEXT NOT NULL,
		device_id  INTEGER NOT NULL,
		record     BLOB NOT NULL,
		updated    INTEGER NOT NULL,
		PRIMARY KEY (account_id, device_id)
	) WITHOUT ROWID`,
	// Contacts: the identity key trusted for each user. pending_key is a
	// changed key (and pending_account a changed account id) the server
	// presented for a verified contact, not trusted until the user verifies
	// it.
	`CREATE TABLE contacts (
		username     TEXT PRIMARY KEY,
		account_id   TEXT NOT NULL,
		identity_key BLOB NOT NULL,
		verified     INTEGER NOT NULL,
		pending_account TEXT,
		pending_key  BLOB,
		updated      INTEGER NOT NULL
	)`,
	`CREATE INDEX contacts_account ON contacts (account_id)`,
	// Envelope ids already processed, for deduplication.
	`CREATE TABLE processed (
		envelope_id TEXT PRIMARY KEY,
		at          INTEGER NOT NULL
	) WITHOUT ROWID`,
	`CREATE INDEX processed_at ON processed (at)`,
	// Events decrypted and acknowledged but not yet handed to the
	// application; data is secret.
	`CREATE TABLE inbox (
		seq         INTEGER PRIMARY KEY AUTOINCREMENT,
		envelope_id TEXT NOT NULL,
		kind        INTEGER NOT NULL,
		data        BLOB NOT NULL,
		UNIQUE (envelope_id, kind)
	)`,
}

// schemaV2 adds what groups, linked devices and disappearing messages need.
var schemaV2 = []string{
	// The message history. data (secret) is the message's own encoding;
	// conversation is "u:" and a username or "g:" and a group id in hex;
	// expires is when the message disappears (Unix ms, 0 never).
	`CREATE TABLE messages (
		id           TEXT PRIMARY KEY,
		conversation TEXT NOT NULL,
		received     INTEGER NOT NULL,
		expires      INTEGER NOT NULL,
		data         BLOB NOT NULL
	)`,
	`CREATE INDEX messages_conversation ON messages (conversation, received)`,
	`CREATE INDEX messages_expires ON messages (expires) WHERE expires > 0`,
	// Per-conversation settings: the disappearing-message timer, seconds.
	`CREATE TABLE conversations (
		id      TEXT PRIMARY KEY,
		timer   INTEGER NOT NULL,
		updated INTEGER NOT NULL
	) WITHOUT ROWID`,
	// Groups this device knows: state is the group's encoding and change
	// the signed change that made it (both secret: they hold the title);
	// distribution_id is this device's current sender key for the group.
	`CREATE TABLE groups (
		id              BLOB PRIMARY KEY,
		state           BLOB NOT NULL,
		change          BLOB NOT NULL,
		distribution_id BLOB NOT NULL,
		updated         INTEGER NOT NULL
	) WITHOUT ROWID`,
	// Sender key records (secret), by sender device and distribution id,
	// with the group the sender distributed the key for.
	`CREATE TABLE sender_keys (
		account_id      TEXT NOT NULL,
		device_id       INTEGER NOT NULL,
		distribution_id BLOB NOT NULL,
		group_id        BLOB NOT NULL,
		record          BLOB NOT NULL,
		updated         INTEGER NOT NULL,
		PRIMARY KEY (account_id, device_id, distribution_id)
	) WITHOUT ROWID`,
	// The devices an own sender key was sent to.
	`CREATE TABLE sender_key_shared (
		distribution_id BLOB NOT NULL,
		account_id      TEXT NOT NULL,
		device_id       INTEGER NOT NULL,
		PRIMARY KEY (distribution_id, account_id, device_id)
	) WITHOUT ROWID`,
	// The newest signed device list seen for each account (own included).
	`CREATE TABLE device_lists (
		account_id TEXT PRIMARY KEY,
		version    INTEGER NOT NULL,
		list       BLOB NOT NULL
	) WITHOUT ROWID`,
}

// schemaV3 adds what sealed sender and receipts need.
var schemaV3 = []string{
	// Profile keys (secret), this account's own among them: a contact's
	// gives its unidentified access key. unrestricted: the account takes
	// sealed messages from anyone (the server said so).
	`CREATE TABLE profile_keys (
		account_id   TEXT PRIMARY KEY,
		profile_key  BLOB,
		unrestricted INTEGER NOT NULL DEFAULT 0,
		updated      INTEGER NOT NULL
	) WITHOUT ROWID`,
	// sent: for a message sent, its sender timestamp (Unix ms), which
	// receipts name it by; 0 for a message received. unread: a message
	// received whose read receipt is still to go.
	`ALTER TABLE messages ADD COLUMN sent INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE messages ADD COLUMN unread INTEGER NOT NULL DEFAULT 0`,
	`CREATE INDEX messages_by_sent ON messages (sent) WHERE sent > 0`,
	`CREATE INDEX messages_unread ON messages (conversation) WHERE unread`,
	// Small values: the sealed-sender trust root and certificate, settings.
	`CREATE TABLE settings (
		key   TEXT PRIMARY KEY,
		value BLOB NOT NULL
	) WITHOUT ROWID`,
}
