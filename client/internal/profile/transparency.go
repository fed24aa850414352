package profile

import (
	"database/sql"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// schemaV4 adds what key transparency needs (kt/, client/transparency.go).
// Nothing in these tables is secret: the log's keys and heads are public,
// and the values verified are account ids, identity keys and signed device
// lists, which the contacts and device_lists tables hold in the clear too.
// (Not released before this form; edited in place while key transparency
// was being built.)
var schemaV4 = []string{
	// The log this device follows: its origin, checkpoint key (a note
	// verifier key) and VRF key, pinned when the device joined (or, for a
	// profile older than key transparency, at its first lookup); the last
	// head verified (head_size 0: none); and the auditors whose
	// cosignatures the user requires (note verifier keys, one a line), how
	// many, and how old the newest may be (max_audit_lag, ms; 0: the
	// default).
	`CREATE TABLE kt_log (
		id            INTEGER PRIMARY KEY CHECK (id = 1),
		origin        TEXT NOT NULL,
		log_key       TEXT NOT NULL,
		vrf_key       BLOB NOT NULL,
		head_size     INTEGER NOT NULL DEFAULT 0,
		head_root     BLOB,
		auditors      TEXT NOT NULL DEFAULT '',
		cosignatures  INTEGER NOT NULL DEFAULT 0,
		max_audit_lag INTEGER NOT NULL DEFAULT 0,
		pinned        INTEGER NOT NULL
	)`,
	// Contact monitoring: per label (kt.UsernameLabel), what the last
	// proof verified showed: present or not, the leaf's counter, the value,
	// and when.
	`CREATE TABLE kt_labels (
		label    BLOB PRIMARY KEY,
		present  INTEGER NOT NULL,
		counter  INTEGER NOT NULL,
		value    BLOB NOT NULL,
		verified INTEGER NOT NULL
	) WITHOUT ROWID`,
	// Owner monitoring: when this account's entry was last checked; the
	// newest device list version seen in the log (0: the entry not seen
	// yet) and, once one was, base, the entry's counter minus its device
	// list's version plus one (the counter of version 1; negative for an
	// account whose first entry held a later version); and the oldest device-list change this device
	// made that the log has not been seen to hold yet (own_version 0:
	// none), with the signed list; the devices of the newest list judged
	// in the log (or of the list this device joined under), comma
	// separated (NULL: not known), and the devices this device added that
	// no list judged held yet; and whether the check right after this
	// device joined failed (its base, then, comes from a later check).
	`CREATE TABLE kt_owner (
		id             INTEGER PRIMARY KEY CHECK (id = 1),
		checked        INTEGER NOT NULL,
		base           INTEGER NOT NULL,
		list_version   INTEGER NOT NULL,
		own_version    INTEGER NOT NULL DEFAULT 0,
		own_list       BLOB,
		devices        TEXT,
		added          TEXT NOT NULL DEFAULT '',
		join_unchecked INTEGER NOT NULL DEFAULT 0
	)`,
	// Alerts raised, kept until the user clears them; device is the
	// device an alert is about (0: none).
	`CREATE TABLE kt_alerts (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,
		kind    TEXT NOT NULL,
		subject TEXT NOT NULL,
		detail  TEXT NOT NULL,
		device  INTEGER NOT NULL DEFAULT 0
	)`,
}

// TransparencyLog is the key transparency log a device follows.
type TransparencyLog struct {
	Origin string
	LogKey string // the checkpoint signer's note verifier key
	VRFKey []byte
	// HeadSize and HeadRoot are the last head verified (size 0: none).
	HeadSize uint64
	HeadRoot []byte
	// The user's policy: auditors (note verifier keys), how many must have
	// cosigned (0: the default), the largest age of their newest
	// cosignature (0: the default).
	Auditors     []string
	Cosignatures int
	MaxAuditLag  time.Duration
	Pinned       time.Time
}

// TransparencyLog returns the log this device follows, nil when none is
// pinned yet.
func (tx *Tx) TransparencyLog() (*TransparencyLog, error) {
	var (
		l        TransparencyLog
		auditors string
		lag      int64
		pinned   int64
		size     int64
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT origin, log_key, vrf_key, head_size, head_root, auditors, cosignatures,
		max_audit_lag, pinned FROM kt_log WHERE id = 1`).
		Scan(&l.Origin, &l.LogKey, &l.VRFKey, &size, &l.HeadRoot, &auditors, &l.Cosignatures, &lag, &pinned)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if size < 0 || lag < 0 || l.Cosignatures < 0 {
		return nil, errors.New("client: profile: corrupt transparency log row")
	}
	l.HeadSize = uint64(size)
	l.MaxAuditLag = time.Duration(lag) * time.Millisecond
	l.Pinned = time.UnixMilli(pinned)
	if auditors != "" {
		l.Auditors = strings.Split(auditors, "\n")
	}
	return &l, nil
}

// PinTransparencyLog pins a log, with its head and policy, unless one is
// pinned already: the first stays. It reports whether it pinned l.
func (tx *Tx) PinTransparencyLog(l *TransparencyLog, now time.Time) (bool, error) {
	if err := checkAuditors(l.Auditors); err != nil {
		return false, err
	}
	r, err := tx.exec(`INSERT OR IGNORE INTO kt_log (id, origin, log_key, vrf_key, head_size, head_root, auditors,
		cosignatures, max_audit_lag, pinned) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.Origin, l.LogKey, l.VRFKey, int64(l.HeadSize), l.HeadRoot, strings.Join(l.Auditors, "\n"),
		l.Cosignatures, l.MaxAuditLag.Milliseconds(), now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, _ := r.RowsAffected()
	return n == 1, nil
}

// PutTransparencyHead records the last head verified.
func (tx *Tx) PutTransparencyHead(size uint64, root []byte) error {
	_, err := tx.exec(`UPDATE kt_log SET head_size = ?, head_root = ? WHERE id = 1`, int64(size), root)
	return err
}

// PutTransparencyPolicy sets the auditors required, how many, and the
// largest lag.
func (tx *Tx) PutTransparencyPolicy(auditors []string, cosignatures int, maxLag time.Duration) error {
	if err := checkAuditors(auditors); err != nil {
		return err
	}
	if cosignatures < 0 || maxLag < 0 {
		return errors.New("client: profile: negative transparency policy")
	}
	r, err := tx.exec(`UPDATE kt_log SET auditors = ?, cosignatures = ?, max_audit_lag = ? WHERE id = 1`,
		strings.Join(auditors, "\n"), cosignatures, maxLag.Milliseconds())
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return errors.New("client: profile: no transparency log pinned")
	}
	return nil
}

func checkAuditors(auditors []string) error {
	for _, a := range auditors {
		if a == "" || strings.ContainsAny(a, "\n\r") {
			return errors.New("client: profile: malformed auditor key")
		}
	}
	return nil
}

// LabelState is what the last verified proof showed of a label.
type LabelState struct {
	Present  bool
	Counter  uint32
	Value    []byte
	Verified time.Time
}

// TransparencyLabel returns what was last verified of a label, or nil.
func (tx *Tx) TransparencyLabel(label []byte) (*LabelState, error) {
	var (
		s        LabelState
		counter  int64
		verified int64
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT present, counter, value, verified FROM kt_labels WHERE label = ?`, label).
		Scan(&s.Present, &counter, &s.Value, &verified)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if counter < 0 || counter > 1<<32-1 {
		return nil, errors.New("client: profile: corrupt transparency label row")
	}
	s.Counter = uint32(counter)
	s.Verified = time.UnixMilli(verified)
	return &s, nil
}

// PutTransparencyLabel records what a verified proof showed of a label.
func (tx *Tx) PutTransparencyLabel(label []byte, s *LabelState) error {
	v := s.Value
	if v == nil {
		v = []byte{}
	}
	_, err := tx.exec(`INSERT OR REPLACE INTO kt_labels (label, present, counter, value, verified) VALUES (?, ?, ?, ?, ?)`,
		label, s.Present, int64(s.Counter), v, s.Verified.UnixMilli())
	return err
}

// OwnerState is the owner monitor's memory of this account's entry.
type OwnerState struct {
	// Checked is when a check last completed (zero: never).
	Checked time.Time
	// ListVersion is the newest device list version seen in the log (0:
	// the entry not seen yet, see Baseline). Base is the entry's counter
	// minus (its device list's version - 1), the same for every version
	// when each one is published once and in order.
	ListVersion uint64
	Base        int64
	// OwnVersion and OwnList are the oldest device-list change this
	// device made that a check has not yet found in the log (OwnVersion
	// 0: none).
	OwnVersion uint64
	OwnList    []byte
	// Devices are the devices of the newest device list a check judged
	// in the log, or, before the first, of the list this device joined
	// under; nil when not known (a profile from before key transparency,
	// until its first check).
	Devices []uint32
	// Added are the devices this device added to the account (approving
	// a link) that no list a check judged has held yet.
	Added []uint32
	// JoinUnchecked: the check right after this device joined did not
	// complete, so the base comes from a later check.
	JoinUnchecked bool
}

// Baseline reports whether the entry was seen, so that Base and
// ListVersion hold (device list versions start at 1).
func (s *OwnerState) Baseline() bool { return s.ListVersion > 0 }

// OwnerState returns the owner monitor's state; the zero state when it has
// none.
func (tx *Tx) OwnerState() (*OwnerState, error) {
	var (
		s                OwnerState
		checked, v, ownV int64
		devices          sql.NullString
		added            string
	)
	err := tx.q.QueryRowContext(tx.ctx, `SELECT checked, base, list_version, own_version, own_list, devices, added,
		join_unchecked FROM kt_owner WHERE id = 1`).Scan(&checked, &s.Base, &v, &ownV, &s.OwnList, &devices, &added, &s.JoinUnchecked)
	if errors.Is(err, sql.ErrNoRows) {
		return &s, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	corrupt := errors.New("client: profile: corrupt owner monitoring row")
	if v < 0 || ownV < 0 || (ownV == 0) != (len(s.OwnList) == 0) {
		return nil, corrupt
	}
	if devices.Valid {
		if s.Devices, err = ParseDeviceSet(devices.String); err != nil {
			return nil, corrupt
		}
	}
	if added != "" {
		if s.Added, err = ParseDeviceSet(added); err != nil {
			return nil, corrupt
		}
	}
	if checked != 0 {
		s.Checked = time.UnixMilli(checked)
	}
	s.ListVersion, s.OwnVersion = uint64(v), uint64(ownV)
	return &s, nil
}

// PutOwnerState stores the owner monitor's state.
func (tx *Tx) PutOwnerState(s *OwnerState) error {
	var checked int64
	if !s.Checked.IsZero() {
		checked = s.Checked.UnixMilli()
	}
	if (s.OwnVersion == 0) != (len(s.OwnList) == 0) || s.ListVersion > math.MaxInt64 || s.OwnVersion > math.MaxInt64 ||
		slices.Contains(s.Devices, 0) || slices.Contains(s.Added, 0) {
		return errors.New("client: profile: malformed owner monitoring state")
	}
	var own []byte
	if s.OwnVersion != 0 {
		own = s.OwnList
	}
	var devices sql.NullString
	if s.Devices != nil {
		devices = sql.NullString{String: FormatDeviceSet(s.Devices), Valid: true}
	}
	_, err := tx.exec(`INSERT OR REPLACE INTO kt_owner (id, checked, base, list_version, own_version, own_list, devices,
		added, join_unchecked) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)`, checked, s.Base, int64(s.ListVersion),
		int64(s.OwnVersion), own, devices, FormatDeviceSet(s.Added), s.JoinUnchecked)
	return err
}

// FormatDeviceSet writes device ids as the owner monitoring row keeps
// them: sorted, without repeats, comma separated.
func FormatDeviceSet(ds []uint32) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	ds = slices.Compact(ds)
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(d), 10))
	}
	return b.String()
}

// ParseDeviceSet reads what FormatDeviceSet wrote: ids from 1 to 2^32-1,
// in increasing order (the empty string is the empty set).
func ParseDeviceSet(s string) ([]uint32, error) {
	out := []uint32{}
	if s == "" {
		return out, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		if f == "" || f[0] == '0' || f[0] == '+' {
			return nil, errors.New("client: profile: malformed device set")
		}
		d, err := strconv.ParseUint(f, 10, 32)
		if err != nil || len(out) > 0 && uint32(d) <= out[len(out)-1] {
			return nil, errors.New("client: profile: malformed device set")
		}
		out = append(out, uint32(d))
	}
	return out, nil
}

// PutOwnChange records a device-list change this device made (version and
// signed list) for the owner monitor to find in the log, unless an older
// one still waits: the oldest is checked first, and a log that moved past
// it without holding it raises the alert.
func (tx *Tx) PutOwnChange(version uint64, list []byte) error {
	s, err := tx.OwnerState()
	if err != nil {
		return err
	}
	if s.OwnVersion != 0 && s.OwnVersion <= version {
		return nil
	}
	s.OwnVersion, s.OwnList = version, list
	return tx.PutOwnerState(s)
}

// TransparencyAlert is an alert raised by the monitors.
type TransparencyAlert struct {
	ID      int64
	At      time.Time
	Kind    string
	Subject string
	Detail  string
	Device  uint32 // the device it is about (0: none)
}

// AddTransparencyAlert stores an alert, unless one of the same kind,
// subject and detail is stored already; it returns the new alert's id, or
// 0 when it was such a repeat.
func (tx *Tx) AddTransparencyAlert(a *TransparencyAlert) (int64, error) {
	var one int
	err := tx.q.QueryRowContext(tx.ctx, `SELECT 1 FROM kt_alerts WHERE kind = ? AND subject = ? AND detail = ? LIMIT 1`,
		a.Kind, a.Subject, a.Detail).Scan(&one)
	switch {
	case err == nil:
		return 0, nil
	case !errors.Is(err, sql.ErrNoRows):
		return 0, dbErr(err)
	}
	r, err := tx.exec(`INSERT INTO kt_alerts (at, kind, subject, detail, device) VALUES (?, ?, ?, ?, ?)`,
		a.At.UnixMilli(), a.Kind, a.Subject, a.Detail, int64(a.Device))
	if err != nil {
		return 0, err
	}
	id, err := r.LastInsertId()
	if err != nil {
		return 0, dbErr(err)
	}
	return id, nil
}

// TransparencyAlerts returns the alerts stored, oldest first.
func (tx *Tx) TransparencyAlerts() ([]TransparencyAlert, error) {
	rows, err := tx.q.QueryContext(tx.ctx, `SELECT id, at, kind, subject, detail, device FROM kt_alerts ORDER BY id`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []TransparencyAlert
	for rows.Next() {
		var (
			a          TransparencyAlert
			at, device int64
		)
		if err := rows.Scan(&a.ID, &at, &a.Kind, &a.Subject, &a.Detail, &device); err != nil {
			return nil, dbErr(err)
		}
		if device < 0 || device > math.MaxUint32 {
			return nil, errors.New("client: profile: corrupt transparency alert row")
		}
		a.Device = uint32(device)
		a.At = time.UnixMilli(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	return out, nil
}

// ClearTransparencyAlerts deletes the alerts with ids up to and including
// upTo, and returns how many it deleted.
func (tx *Tx) ClearTransparencyAlerts(upTo int64) (int64, error) {
	r, err := tx.exec(`DELETE FROM kt_alerts WHERE id <= ?`, upTo)
	if err != nil {
		return 0, err
	}
	n, _ := r.RowsAffected()
	return n, nil
}
