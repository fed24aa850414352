package profile

import (
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// MaxKeyID bounds prekey ids: 24 bits, as Signal's clients keep them
// (Medium.MAX_VALUE).
const MaxKeyID = 0xFFFFFF

// ---- account ----

// Account is the device's account and identity.
type Account struct {
	ServerURL      string
	AccountID      string
	Username       string
	DeviceID       uint32
	Password       string // secret
	RegistrationID uint32
	Identity       keys.KeyPair // secret
}

// String hides the secrets.
func (a *Account) String() string { return "profile.Account([redacted])" }

// GoString hides the secrets from %#v.
func (a *Account) GoString() string { return a.String() }

// LogValue hides the secrets from slog.
func (a *Account) LogValue() slog.Value { return slog.StringValue(a.String()) }

const (
	labelPassword = "account/password"
	labelIdentity = "account/identity"
)

func randomKeyID() int64 {
	var b [4]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint32(b[:])%(MaxKeyID-1)) + 1
}

// InitAccount stores a new identity: the first step of registration. The
// prekey id counters start at random points, as Signal's clients do.
func (tx *Tx) InitAccount(identity keys.KeyPair, registrationID uint32, now time.Time) error {
	_, err := tx.exec(`INSERT INTO account (id, identity_public, identity_private, registration_id,
		next_prekey_id, next_kyber_id, next_signed_id, created) VALUES (1, ?, ?, ?, ?, ?, ?, ?)`,
		identity.Public.Bytes(), tx.seal.seal(labelIdentity, identity.Private.Bytes()), registrationID,
		randomKeyID(), randomKeyID(), randomKeyID(), now.UnixMilli())
	return err
}

// ReplaceIdentity replaces the identity key pair of the account. Only tests
// use it: to simulate a device whose identity changed.
func (tx *Tx) ReplaceIdentity(identity keys.KeyPair) error {
	_, err := tx.exec(`UPDATE account SET identity_public = ?, identity_private = ? WHERE id = 1`,
		identity.Public.Bytes(), tx.seal.seal(labelIdentity, identity.Private.Bytes()))
	return err
}

// SetCredentials completes the account with what the server returned.
func (tx *Tx) SetCredentials(serverURL, accountID, username string, deviceID uint32, password string) error {
	r, err := tx.exec(`UPDATE account SET server_url = ?, account_id = ?, username = ?, device_id = ?, password = ? WHERE id = 1`,
		serverURL, accountID, username, deviceID, tx.seal.seal(labelPassword, []byte(password)))
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return errors.New("client: profile: no account to complete")
	}
	return nil
}

// Account returns the account; ErrNoProfile when it is not complete.
func (tx *Tx) Account() (*Account, error) {
	var (
		a           Account
		pw, pub, pr []byte
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT server_url, account_id, username, device_id, password,
		identity_public, identity_private, registration_id FROM account WHERE id = 1`).
		Scan(&a.ServerURL, &a.AccountID, &a.Username, &a.DeviceID, &pw, &pub, &pr, &a.RegistrationID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoProfile
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if a.AccountID == "" {
		return nil, ErrNoProfile
	}
	pwb, err := tx.seal.open(labelPassword, pw)
	if err != nil {
		return nil, err
	}
	a.Password = string(pwb)
	clear(pwb)
	if a.Identity.Public, err = keys.ParsePublicKey(pub); err != nil {
		return nil, errors.New("client: profile: corrupt identity key")
	}
	prb, err := tx.seal.open(labelIdentity, pr)
	if err != nil {
		return nil, err
	}
	defer clear(prb)
	if a.Identity.Private, err = keys.NewPrivateKey(prb); err != nil {
		return nil, errors.New("client: profile: corrupt identity key")
	}
	if !a.Identity.Private.PublicKey().Equal(a.Identity.Public) {
		return nil, errors.New("client: profile: identity key pair does not match")
	}
	return &a, nil
}

// ---- own prekeys ----

// AllocKeyIDs reserves n ids of one kind ("prekey", "kyber" or "signed"),
// counting on from where the last call stopped and wrapping within
// 1..MaxKeyID. Ids still held by a stored key are skipped, so that a wrap
// never reuses one: one-time and last-resort Kyber prekeys share one id
// space, and a last-resort key must not be overwritten.
func (tx *Tx) AllocKeyIDs(kind string, n int) ([]uint32, error) {
	col := map[string]string{"prekey": "next_prekey_id", "kyber": "next_kyber_id", "signed": "next_signed_id"}[kind]
	table := map[string]string{"prekey": "prekeys", "kyber": "kyber_prekeys", "signed": "signed_prekeys"}[kind]
	if col == "" {
		return nil, fmt.Errorf("client: profile: unknown key kind %q", kind)
	}
	var next int64
	if err := tx.q.QueryRowContext(tx.ctx, `SELECT `+col+` FROM account WHERE id = 1`).Scan(&next); err != nil {
		return nil, dbErr(err)
	}
	ids := make([]uint32, 0, n)
	for tried := 0; len(ids) < n; tried++ {
		if tried == MaxKeyID {
			return nil, fmt.Errorf("client: profile: no free %s ids", kind)
		}
		if next < 1 || next > MaxKeyID {
			next = 1
		}
		var one int
		err := tx.q.QueryRowContext(tx.ctx, `SELECT 1 FROM `+table+` WHERE id = ?`, next).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			ids = append(ids, uint32(next))
		case err != nil:
			return nil, dbErr(err)
		}
		next++
	}
	if next > MaxKeyID {
		next = 1
	}
	_, err := tx.exec(`UPDATE account SET `+col+` = ? WHERE id = 1`, next)
	return ids, err
}

func keyLabel(kind string, id uint32) string { return kind + "/" + strconv.FormatUint(uint64(id), 10) }

// AddPreKey stores a one-time prekey; its id must be free (AllocKeyIDs).
func (tx *Tx) AddPreKey(k *keys.PreKey, now time.Time) error {
	_, err := tx.exec(`INSERT INTO prekeys (id, private, created) VALUES (?, ?, ?)`,
		k.ID, tx.seal.seal(keyLabel("prekey", k.ID), k.KeyPair.Private.Bytes()), now.UnixMilli())
	return err
}

// AddSignedPreKey stores a signed prekey; its id must be free.
func (tx *Tx) AddSignedPreKey(k *keys.SignedPreKey) error {
	_, err := tx.exec(`INSERT INTO signed_prekeys (id, private, signature, created) VALUES (?, ?, ?, ?)`,
		k.ID, tx.seal.seal(keyLabel("signed", k.ID), k.KeyPair.Private.Bytes()), k.Signature, k.Timestamp.UnixMilli())
	return err
}

// AddKyberPreKey stores a Kyber prekey, one-time or last-resort; its id
// must be free.
func (tx *Tx) AddKyberPreKey(k *keys.KyberPreKey) error {
	_, err := tx.exec(`INSERT INTO kyber_prekeys (id, private, signature, last_resort, created) VALUES (?, ?, ?, ?, ?)`,
		k.ID, tx.seal.seal(keyLabel("kyber", k.ID), k.KeyPair.Private.Bytes()), k.Signature, k.LastResort, k.Timestamp.UnixMilli())
	return err
}

func missing(kind string, id uint32) error {
	return fmt.Errorf("client: profile: %s %d: %w", kind, id, session.ErrMissingPreKey)
}

// PreKey implements session.PreKeyStore.
func (tx *Tx) PreKey(id uint32) (*keys.PreKey, error) {
	var b []byte
	err := tx.q.QueryRowContext(tx.ctx, `SELECT private FROM prekeys WHERE id = ?`, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, missing("prekey", id)
	}
	if err != nil {
		return nil, dbErr(err)
	}
	pb, err := tx.seal.open(keyLabel("prekey", id), b)
	if err != nil {
		return nil, err
	}
	defer clear(pb)
	priv, err := keys.NewPrivateKey(pb)
	if err != nil {
		return nil, errors.New("client: profile: corrupt prekey")
	}
	return &keys.PreKey{ID: id, KeyPair: keys.KeyPair{Public: priv.PublicKey(), Private: priv}}, nil
}

// SignedPreKey implements session.PreKeyStore.
func (tx *Tx) SignedPreKey(id uint32) (*keys.SignedPreKey, error) {
	var (
		b, sig  []byte
		created int64
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT private, signature, created FROM signed_prekeys WHERE id = ?`, id).Scan(&b, &sig, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, missing("signed prekey", id)
	}
	if err != nil {
		return nil, dbErr(err)
	}
	pb, err := tx.seal.open(keyLabel("signed", id), b)
	if err != nil {
		return nil, err
	}
	defer clear(pb)
	priv, err := keys.NewPrivateKey(pb)
	if err != nil {
		return nil, errors.New("client: profile: corrupt signed prekey")
	}
	return &keys.SignedPreKey{ID: id, Timestamp: time.UnixMilli(created), Signature: sig,
		KeyPair: keys.KeyPair{Public: priv.PublicKey(), Private: priv}}, nil
}

// KyberPreKey implements session.PreKeyStore.
func (tx *Tx) KyberPreKey(id uint32) (*keys.KyberPreKey, error) {
	var (
		b, sig     []byte
		lastResort bool
		created    int64
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT private, signature, last_resort, created FROM kyber_prekeys WHERE id = ?`, id).
		Scan(&b, &sig, &lastResort, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, missing("kyber prekey", id)
	}
	if err != nil {
		return nil, dbErr(err)
	}
	pb, err := tx.seal.open(keyLabel("kyber", id), b)
	if err != nil {
		return nil, err
	}
	defer clear(pb)
	priv, err := keys.ParseKEMPrivateKey(pb)
	if err != nil {
		return nil, errors.New("client: profile: corrupt kyber prekey")
	}
	return &keys.KyberPreKey{ID: id, Timestamp: time.UnixMilli(created), Signature: sig, LastResort: lastResort,
		KeyPair: keys.KEMKeyPair{Public: priv.PublicKey(), Private: priv}}, nil
}

var _ session.PreKeyStore = (*Tx)(nil)

// RemovePreKey deletes a one-time prekey.
func (tx *Tx) RemovePreKey(id uint32) error {
	_, err := tx.exec(`DELETE FROM prekeys WHERE id = ?`, id)
	return err
}

// RemoveKyberPreKey deletes a one-time Kyber prekey; a last-resort one stays.
func (tx *Tx) RemoveKyberPreKey(id uint32) error {
	_, err := tx.exec(`DELETE FROM kyber_prekeys WHERE id = ? AND last_resort = 0`, id)
	return err
}

// UseLastResort records that a session was made with the last-resort Kyber
// prekey id and the initiator's base key. It reports whether that pair was
// recorded before: a replayed first message.
func (tx *Tx) UseLastResort(kyberID uint32, baseKey keys.PublicKey, now time.Time) (seen bool, err error) {
	r, err := tx.exec(`INSERT OR IGNORE INTO kyber_base_keys (kyber_id, base_key, created) VALUES (?, ?, ?)`,
		kyberID, baseKey.Bytes(), now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	if err != nil {
		return false, dbErr(err)
	}
	return n == 0, nil
}

// IsLastResort reports whether id names a stored last-resort Kyber prekey.
func (tx *Tx) IsLastResort(id uint32) (bool, error) {
	var lr bool
	err := tx.q.QueryRowContext(tx.ctx, `SELECT last_resort FROM kyber_prekeys WHERE id = ?`, id).Scan(&lr)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, dbErr(err)
	}
	return lr, nil
}

// KeyCounts returns how many one-time prekeys and one-time Kyber prekeys are
// stored.
func (tx *Tx) KeyCounts() (preKeys, kyberPreKeys int, err error) {
	err = tx.q.QueryRowContext(tx.ctx, `SELECT (SELECT count(*) FROM prekeys),
		(SELECT count(*) FROM kyber_prekeys WHERE last_resort = 0)`).Scan(&preKeys, &kyberPreKeys)
	if err != nil {
		return 0, 0, dbErr(err)
	}
	return preKeys, kyberPreKeys, nil
}

// ---- sessions ----

func sessionLabel(accountID string, deviceID uint32) string {
	return "session/" + accountID + "/" + strconv.FormatUint(uint64(deviceID), 10)
}

// Session returns the session record with a remote device, or nil.
func (tx *Tx) Session(accountID string, deviceID uint32) (*session.Record, error) {
	var b []byte
	err := tx.q.QueryRowContext(tx.ctx, `SELECT record FROM sessions WHERE account_id = ? AND device_id = ?`,
		accountID, deviceID).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	pt, err := tx.seal.open(sessionLabel(accountID, deviceID), b)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	r, err := session.ParseRecord(pt)
	if err != nil {
		return nil, fmt.Errorf("client: profile: session record: %v", err)
	}
	return r, nil
}

// PutSession stores a session record.
func (tx *Tx) PutSession(accountID string, deviceID uint32, r *session.Record, now time.Time) error {
	b, err := r.MarshalBinary()
	if err != nil {
		return fmt.Errorf("client: profile: session record: %v", err)
	}
	defer clear(b)
	_, err = tx.exec(`INSERT OR REPLACE INTO sessions (account_id, device_id, record, updated) VALUES (?, ?, ?, ?)`,
		accountID, deviceID, tx.seal.seal(sessionLabel(accountID, deviceID), b), now.UnixMilli())
	return err
}

// DeleteSession deletes the record with a remote device.
func (tx *Tx) DeleteSession(accountID string, deviceID uint32) error {
	_, err := tx.exec(`DELETE FROM sessions WHERE account_id = ? AND device_id = ?`, accountID, deviceID)
	return err
}

// SessionDevices returns the remote devices of an account that have a
// record, in order.
func (tx *Tx) SessionDevices(accountID string) ([]uint32, error) {
	rows, err := tx.q.QueryContext(tx.ctx, `SELECT device_id FROM sessions WHERE account_id = ? ORDER BY device_id`, accountID)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var d uint32
		if err := rows.Scan(&d); err != nil {
			return nil, dbErr(err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	return out, nil
}

// ---- contacts ----

// Contact is a user this device has talked to, with the identity key trusted
// for them.
type Contact struct {
	Username    string
	AccountID   string
	IdentityKey keys.PublicKey
	Verified    bool
	// PendingAccount and PendingKey are a different account id or identity
	// key the server presented for a verified contact: not trusted until
	// the user verifies them. Both are set or neither.
	PendingAccount string
	PendingKey     *keys.PublicKey
}

const contactColumns = `username, account_id, identity_key, verified, pending_account, pending_key`

func (tx *Tx) contact(where string, arg any) (*Contact, error) {
	var (
		c       Contact
		ik, pkb []byte
		pa      sql.NullString
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT `+contactColumns+` FROM contacts WHERE `+where, arg).
		Scan(&c.Username, &c.AccountID, &ik, &c.Verified, &pa, &pkb)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if c.IdentityKey, err = keys.ParsePublicKey(ik); err != nil {
		return nil, errors.New("client: profile: corrupt contact identity key")
	}
	if pkb != nil {
		pk, err := keys.ParsePublicKey(pkb)
		if err != nil {
			return nil, errors.New("client: profile: corrupt contact identity key")
		}
		c.PendingKey = &pk
		c.PendingAccount = pa.String
	}
	return &c, nil
}

// Contact returns the contact with this username, or nil.
func (tx *Tx) Contact(username string) (*Contact, error) {
	return tx.contact(`username = ?`, username)
}

// ContactByAccount returns the contact with this account id, or nil.
func (tx *Tx) ContactByAccount(accountID string) (*Contact, error) {
	return tx.contact(`account_id = ? ORDER BY updated DESC LIMIT 1`, accountID)
}

// ErrVerifiedContact: PutContact would remove a verified contact, whose
// account id is the one given for another username. The username comes from
// the server, which must not be able to drop a verified contact by
// relabelling one of its accounts.
var ErrVerifiedContact = errors.New("client: the account belongs to a verified contact under another username")

// PutContact stores a contact, replacing the one with its username. Another
// contact with the same account id (a user whose name changed) is removed,
// unless it is verified: then nothing changes and the error is
// ErrVerifiedContact.
func (tx *Tx) PutContact(c *Contact, now time.Time) error {
	var one int
	err := tx.q.QueryRowContext(tx.ctx, `SELECT 1 FROM contacts WHERE account_id = ? AND username <> ? AND verified LIMIT 1`,
		c.AccountID, c.Username).Scan(&one)
	switch {
	case err == nil:
		return ErrVerifiedContact
	case !errors.Is(err, sql.ErrNoRows):
		return dbErr(err)
	}
	if _, err := tx.exec(`DELETE FROM contacts WHERE account_id = ? AND username <> ?`, c.AccountID, c.Username); err != nil {
		return err
	}
	var (
		pk []byte
		pa any
	)
	if c.PendingKey != nil {
		pk, pa = c.PendingKey.Bytes(), c.PendingAccount
	}
	_, err = tx.exec(`INSERT OR REPLACE INTO contacts (`+contactColumns+`, updated) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.Username, c.AccountID, c.IdentityKey.Bytes(), c.Verified, pa, pk, now.UnixMilli())
	return err
}

// ---- processed envelopes ----

// Processed reports whether an envelope id was processed before.
func (tx *Tx) Processed(envelopeID string) (bool, error) {
	var one int
	err := tx.q.QueryRowContext(tx.ctx, `SELECT 1 FROM processed WHERE envelope_id = ?`, envelopeID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, dbErr(err)
	}
	return true, nil
}

// MarkProcessed records an envelope id as processed.
func (tx *Tx) MarkProcessed(envelopeID string, now time.Time) error {
	_, err := tx.exec(`INSERT OR IGNORE INTO processed (envelope_id, at) VALUES (?, ?)`, envelopeID, now.UnixMilli())
	return err
}

// PruneProcessed forgets envelope ids processed before cutoff.
func (tx *Tx) PruneProcessed(cutoff time.Time) (int64, error) {
	r, err := tx.exec(`DELETE FROM processed WHERE at < ?`, cutoff.UnixMilli())
	if err != nil {
		return 0, err
	}
	n, _ := r.RowsAffected()
	return n, nil
}

// ---- inbox ----

// InboxItem is one event waiting for the application. Data is the event's
// encoding, secret.
type InboxItem struct {
	Seq        int64
	EnvelopeID string
	Kind       int
	Data       []byte
}

func inboxLabel(envelopeID string, kind int) string {
	return "inbox/" + envelopeID + "/" + strconv.Itoa(kind)
}

// AddInbox appends an item to the inbox.
func (tx *Tx) AddInbox(it *InboxItem) error {
	_, err := tx.exec(`INSERT INTO inbox (envelope_id, kind, data) VALUES (?, ?, ?)`,
		it.EnvelopeID, it.Kind, tx.seal.seal(inboxLabel(it.EnvelopeID, it.Kind), it.Data))
	return err
}

// FirstInbox returns the oldest item in the inbox after seq, or nil.
func (tx *Tx) FirstInbox(after int64) (*InboxItem, error) {
	var (
		it InboxItem
		b  []byte
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT seq, envelope_id, kind, data FROM inbox WHERE seq > ? ORDER BY seq LIMIT 1`, after).
		Scan(&it.Seq, &it.EnvelopeID, &it.Kind, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if it.Data, err = tx.seal.open(inboxLabel(it.EnvelopeID, it.Kind), b); err != nil {
		return nil, err
	}
	return &it, nil
}

// DeleteInbox removes an item; it reports whether it was still there.
func (tx *Tx) DeleteInbox(seq int64) (bool, error) {
	r, err := tx.exec(`DELETE FROM inbox WHERE seq = ?`, seq)
	if err != nil {
		return false, err
	}
	n, _ := r.RowsAffected()
	return n == 1, nil
}

// UpdateInbox replaces the data of an item of the inbox, in its place.
func (tx *Tx) UpdateInbox(seq int64, data []byte) error {
	var (
		id   string
		kind int
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT envelope_id, kind FROM inbox WHERE seq = ?`, seq).Scan(&id, &kind)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return dbErr(err)
	}
	_, err = tx.exec(`UPDATE inbox SET data = ? WHERE seq = ?`, tx.seal.seal(inboxLabel(id, kind), data), seq)
	return err
}
