package profile

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// ---- groups and sender keys ----

// Group is a group this device knows. State is the group's encoding,
// secret; DistributionID is this device's current sender key for it.
type Group struct {
	ID             []byte
	State          []byte
	Change         []byte // the signed change that made State
	DistributionID []byte
}

func groupLabel(id []byte) string { return "group/" + hex.EncodeToString(id) }

func groupChangeLabel(id []byte) string { return "groupchange/" + hex.EncodeToString(id) }

// PutGroup stores a group.
func (tx *Tx) PutGroup(g *Group, now time.Time) error {
	_, err := tx.exec(`INSERT OR REPLACE INTO groups (id, state, change, distribution_id, updated) VALUES (?, ?, ?, ?, ?)`,
		g.ID, tx.seal.seal(groupLabel(g.ID), g.State), tx.seal.seal(groupChangeLabel(g.ID), g.Change), g.DistributionID, now.UnixMilli())
	return err
}

// Group returns a group, or nil.
func (tx *Tx) Group(id []byte) (*Group, error) {
	gs, err := tx.groups(`WHERE id = ?`, id)
	if err != nil || len(gs) == 0 {
		return nil, err
	}
	return &gs[0], nil
}

// Groups returns every group.
func (tx *Tx) Groups() ([]Group, error) { return tx.groups(`ORDER BY updated`) }

func (tx *Tx) groups(where string, args ...any) ([]Group, error) {
	rows, err := tx.q.QueryContext(tx.ctx, `SELECT id, state, change, distribution_id FROM groups `+where, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var (
			g     Group
			b, ch []byte
		)
		if err := rows.Scan(&g.ID, &b, &ch, &g.DistributionID); err != nil {
			return nil, dbErr(err)
		}
		if g.State, err = tx.seal.open(groupLabel(g.ID), b); err != nil {
			return nil, err
		}
		if g.Change, err = tx.seal.open(groupChangeLabel(g.ID), ch); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, dbErr(rows.Err())
}

// DeleteGroup forgets a group and every sender key received for it.
func (tx *Tx) DeleteGroup(id []byte) error {
	if _, err := tx.exec(`DELETE FROM sender_keys WHERE group_id = ?`, id); err != nil {
		return err
	}
	_, err := tx.exec(`DELETE FROM groups WHERE id = ?`, id)
	return err
}

// SenderKey is a sender key record of one sender device.
type SenderKey struct {
	AccountID      string
	DeviceID       uint32
	DistributionID []byte
	GroupID        []byte
	Record         []byte // secret
}

func senderKeyLabel(accountID string, deviceID uint32, dist []byte) string {
	return "senderkey/" + accountID + "/" + strconv.FormatUint(uint64(deviceID), 10) + "/" + hex.EncodeToString(dist)
}

// PutSenderKey stores a sender key record.
func (tx *Tx) PutSenderKey(k *SenderKey, now time.Time) error {
	_, err := tx.exec(`INSERT OR REPLACE INTO sender_keys (account_id, device_id, distribution_id, group_id, record, updated) VALUES (?, ?, ?, ?, ?, ?)`,
		k.AccountID, k.DeviceID, k.DistributionID, k.GroupID,
		tx.seal.seal(senderKeyLabel(k.AccountID, k.DeviceID, k.DistributionID), k.Record), now.UnixMilli())
	return err
}

// SenderKey returns a sender key record, or nil.
func (tx *Tx) SenderKey(accountID string, deviceID uint32, dist []byte) (*SenderKey, error) {
	k := SenderKey{AccountID: accountID, DeviceID: deviceID, DistributionID: dist}
	var b []byte
	err := tx.q.QueryRowContext(tx.ctx, `SELECT group_id, record FROM sender_keys WHERE account_id = ? AND device_id = ? AND distribution_id = ?`,
		accountID, deviceID, dist).Scan(&k.GroupID, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if k.Record, err = tx.seal.open(senderKeyLabel(accountID, deviceID, dist), b); err != nil {
		return nil, err
	}
	return &k, nil
}

// DeleteSenderKeys forgets the sender keys a member's devices sent for a
// group: called when the member leaves it.
func (tx *Tx) DeleteSenderKeys(groupID []byte, accountID string) error {
	_, err := tx.exec(`DELETE FROM sender_keys WHERE group_id = ? AND account_id = ?`, groupID, accountID)
	return err
}

// DeleteSenderKey forgets one sender key record.
func (tx *Tx) DeleteSenderKey(accountID string, deviceID uint32, dist []byte) error {
	_, err := tx.exec(`DELETE FROM sender_keys WHERE account_id = ? AND device_id = ? AND distribution_id = ?`, accountID, deviceID, dist)
	return err
}

// UnmarkSenderKeyShared records that a device no longer holds this
// device's sender key dist (its session was made anew).
func (tx *Tx) UnmarkSenderKeyShared(dist []byte, accountID string, deviceID uint32) error {
	_, err := tx.exec(`DELETE FROM sender_key_shared WHERE distribution_id = ? AND account_id = ? AND device_id = ?`, dist, accountID, deviceID)
	return err
}

// SenderKeyShared reports whether this device's sender key dist was sent to
// a device.
func (tx *Tx) SenderKeyShared(dist []byte, accountID string, deviceID uint32) (bool, error) {
	var one int
	err := tx.q.QueryRowContext(tx.ctx, `SELECT 1 FROM sender_key_shared WHERE distribution_id = ? AND account_id = ? AND device_id = ?`,
		dist, accountID, deviceID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, dbErr(err)
}

// MarkSenderKeyShared records that this device's sender key dist was sent to
// a device.
func (tx *Tx) MarkSenderKeyShared(dist []byte, accountID string, deviceID uint32) error {
	_, err := tx.exec(`INSERT OR IGNORE INTO sender_key_shared (distribution_id, account_id, device_id) VALUES (?, ?, ?)`,
		dist, accountID, deviceID)
	return err
}

// ForgetSenderKeyShared forgets where a retired sender key went.
func (tx *Tx) ForgetSenderKeyShared(dist []byte) error {
	_, err := tx.exec(`DELETE FROM sender_key_shared WHERE distribution_id = ?`, dist)
	return err
}

// ---- device lists ----

// DeviceList returns the newest signed device list seen for an account and
// its version, or nil.
func (tx *Tx) DeviceList(accountID string) (list []byte, version uint64, err error) {
	var v int64
	err = tx.q.QueryRowContext(tx.ctx, `SELECT version, list FROM device_lists WHERE account_id = ?`, accountID).Scan(&v, &list)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, dbErr(err)
	}
	return list, uint64(v), nil
}

// PutDeviceList stores an account's signed device list.
func (tx *Tx) PutDeviceList(accountID string, version uint64, list []byte) error {
	_, err := tx.exec(`INSERT OR REPLACE INTO device_lists (account_id, version, list) VALUES (?, ?, ?)`,
		accountID, int64(version), list)
	return err
}
