package profile

import (
	"database/sql"
	"errors"
	"math"
	"time"
)

// schemaLegal (version 6) adds what legal notices need (client/legal.go): the request
// log this device verifies, the notices it has reported, and when the
// account was registered (a username is matched to notices only for
// requests received after). Nothing here is secret: the log's key and
// checkpoints are public, a notice is a request the server published in
// its public log, and the server knows when the account was registered.
var schemaLegal = []string{
	// When the account was registered (Unix ms), as the device that
	// registered it recorded it, for a linked device (its provisioning
	// message carries it). The device that registered the account keeps
	// no row: its account row's created is that time.
	`CREATE TABLE registration (
		id         INTEGER PRIMARY KEY CHECK (id = 1),
		registered INTEGER NOT NULL
	)`,
	// The request log: its key (a note verifier key), pinned at the first
	// check; the last checkpoint verified, and its size (0: none); when
	// the last scheduled check (before a receive) ran, Unix ms (0: never).
	`CREATE TABLE legal_log (
		id         INTEGER PRIMARY KEY CHECK (id = 1),
		log_key    TEXT NOT NULL,
		checkpoint BLOB,
		size       INTEGER NOT NULL DEFAULT 0,
		pinned     INTEGER NOT NULL,
		checked    INTEGER NOT NULL DEFAULT 0
	)`,
	// Notices reported: the published request (the authority's signed
	// note), the log indexes of its commitment and publication, the
	// outcome and days the log gives (Unix ms), and when this device
	// first reported it.
	`CREATE TABLE legal_notices (
		publication_index INTEGER PRIMARY KEY,
		request_index     INTEGER NOT NULL,
		request           BLOB NOT NULL,
		outcome           TEXT NOT NULL,
		received          INTEGER NOT NULL,
		published         INTEGER NOT NULL,
		seen              INTEGER NOT NULL
	)`,
}

// Registered returns when the account was registered: what SetRegistered
// recorded (a linked device), else, on the device that registered it
// (device 1), when its account row was made, just before it registered.
// It is zero when unknown: a device linked by one that did not know.
func (tx *Tx) Registered() (time.Time, error) {
	var ms int64
	err := tx.q.QueryRowContext(tx.ctx, `SELECT registered FROM registration WHERE id = 1`).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		err = tx.q.QueryRowContext(tx.ctx, `SELECT created FROM account WHERE id = 1 AND device_id = 1`).Scan(&ms)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, dbErr(err)
	}
	if ms <= 0 {
		return time.Time{}, errors.New("client: profile: corrupt registration time")
	}
	return time.UnixMilli(ms), nil
}

// SetRegistered records when the account was registered, as a linked
// device learns it from the device that approved it.
func (tx *Tx) SetRegistered(at time.Time) error {
	if at.UnixMilli() <= 0 {
		return errors.New("client: profile: registration time out of range")
	}
	_, err := tx.exec(`INSERT INTO registration (id, registered) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET registered = excluded.registered`, at.UnixMilli())
	return err
}

// LegalLog is the request log a device verifies.
type LegalLog struct {
	Key        string // note verifier key
	Checkpoint []byte // the last verified, nil for none
	Size       uint64
	Pinned     time.Time
	Checked    time.Time // the last scheduled check; zero for none
}

// LegalLog returns the request log pinned, nil when none is.
func (tx *Tx) LegalLog() (*LegalLog, error) {
	var (
		l       LegalLog
		size    int64
		pinned  int64
		checked int64
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT log_key, checkpoint, size, pinned, checked FROM legal_log WHERE id = 1`).
		Scan(&l.Key, &l.Checkpoint, &size, &pinned, &checked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if size < 0 {
		return nil, errors.New("client: profile: corrupt legal log row")
	}
	l.Size = uint64(size)
	l.Pinned = time.UnixMilli(pinned)
	if checked != 0 {
		l.Checked = time.UnixMilli(checked)
	}
	return &l, nil
}

// SetLegalChecked records when the last scheduled check of the pinned
// log ran.
func (tx *Tx) SetLegalChecked(at time.Time) error {
	_, err := tx.exec(`UPDATE legal_log SET checked = ? WHERE id = 1`, at.UnixMilli())
	return err
}

// PinLegalLog pins the request log's key unless one is pinned: the first
// stays. It reports whether it pinned key.
func (tx *Tx) PinLegalLog(key string, now time.Time) (bool, error) {
	r, err := tx.exec(`INSERT OR IGNORE INTO legal_log (id, log_key, pinned) VALUES (1, ?, ?)`, key, now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	return n == 1, dbErr(err)
}

// SetLegalCheckpoint records a checkpoint verified for the pinned log,
// unless one at least as large is recorded (another process may have
// verified a newer one).
func (tx *Tx) SetLegalCheckpoint(checkpoint []byte, size uint64) error {
	if size > math.MaxInt64 {
		return errors.New("client: profile: log size out of range")
	}
	_, err := tx.exec(`UPDATE legal_log SET checkpoint = ?, size = ? WHERE id = 1 AND (checkpoint IS NULL OR size < ?)`,
		checkpoint, int64(size), int64(size))
	return err
}

// LegalNotice is a notice reported.
type LegalNotice struct {
	PublicationIndex, RequestIndex uint64
	Request                        []byte
	Outcome                        string
	Received, Published            time.Time
	Seen                           time.Time
}

// AddLegalNotice records a notice, unless it is recorded: it reports
// whether the notice is new.
func (tx *Tx) AddLegalNotice(n *LegalNotice) (bool, error) {
	if n.PublicationIndex > math.MaxInt64 || n.RequestIndex > math.MaxInt64 {
		return false, errors.New("client: profile: log index out of range")
	}
	r, err := tx.exec(`INSERT OR IGNORE INTO legal_notices (publication_index, request_index, request, outcome, received,
		published, seen) VALUES (?, ?, ?, ?, ?, ?, ?)`, int64(n.PublicationIndex), int64(n.RequestIndex), n.Request,
		n.Outcome, n.Received.UnixMilli(), n.Published.UnixMilli(), n.Seen.UnixMilli())
	if err != nil {
		return false, err
	}
	added, err := r.RowsAffected()
	return added == 1, dbErr(err)
}

// LegalNotices returns the notices recorded, by publication index.
func (tx *Tx) LegalNotices() ([]LegalNotice, error) {
	rows, err := tx.q.QueryContext(tx.ctx, `SELECT publication_index, request_index, request, outcome, received, published,
		seen FROM legal_notices ORDER BY publication_index`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []LegalNotice
	for rows.Next() {
		var (
			n                       LegalNotice
			pub, req                int64
			received, published, at int64
		)
		if err := rows.Scan(&pub, &req, &n.Request, &n.Outcome, &received, &published, &at); err != nil {
			return nil, dbErr(err)
		}
		if pub < 0 || req < 0 {
			return nil, errors.New("client: profile: corrupt legal notice row")
		}
		n.PublicationIndex, n.RequestIndex = uint64(pub), uint64(req)
		n.Received, n.Published, n.Seen = time.UnixMilli(received), time.UnixMilli(published), time.UnixMilli(at)
		out = append(out, n)
	}
	return out, dbErr(rows.Err())
}
