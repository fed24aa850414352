package store

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"
)

// Pieces both stores share, so that their tables read and hash alike.

// Row is a result row of either store's driver (database/sql or pgx).
type Row interface{ Scan(dest ...any) error }

// AccountColumns are the accounts table's columns ScanAccount reads, in
// its order.
const AccountColumns = `id, username, identity_key, created, unidentified_access_key, unrestricted_unidentified_access`

// ScanAccount reads a row of AccountColumns (created in Unix milliseconds).
func ScanAccount(row Row) (*Account, error) {
	var a Account
	var created int64
	if err := row.Scan(&a.ID, &a.Username, &a.IdentityKey, &created, &a.UnidentifiedAccessKey, &a.UnrestrictedUnidentifiedAccess); err != nil {
		return nil, err
	}
	a.Created = time.UnixMilli(created).UTC()
	return &a, nil
}

// DeviceColumns are the devices table's columns ScanDevice reads, in its
// order.
const DeviceColumns = `account_id, id, registration_id, credential_hash, created, last_seen_day`

// ScanDevice reads a row of DeviceColumns (created in Unix milliseconds).
func ScanDevice(row Row) (Device, error) {
	var d Device
	var created int64
	if err := row.Scan(&d.AccountID, &d.ID, &d.RegistrationID, &d.CredentialHash, &created, &d.LastSeenDay); err != nil {
		return Device{}, err
	}
	d.Created = time.UnixMilli(created).UTC()
	return d, nil
}

// sendKeyLabel and sealedSendKeyLabel separate send-id hashes from any
// other SHA-256 use, and those of sealed-sender sends from the others.
const (
	sendKeyLabel       = "doorless send id v1"
	sealedSendKeyLabel = "doorless sealed send id v1"
)

// SendKey is the key a store's send_ids table keeps for a send: SHA-256
// over a label, the source account, the send id (each length-prefixed) and
// the source device. The table so records no recipient, and no sender in
// the clear. Both stores use it, so that a database moved from one to the
// other keeps refusing replays.
func SendKey(sourceAccount string, sourceDevice uint32, sendID string) []byte {
	h := lengthPrefixed(sendKeyLabel, sourceAccount, sendID)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], sourceDevice)
	h.Write(n[:])
	return h.Sum(nil)
}

// SealedSendKey is SendKey for a sealed-sender send: SHA-256 over a label,
// the recipient account and the send id (each length-prefixed). Nothing
// of the sender goes in.
func SealedSendKey(recipient, sendID string) []byte {
	return lengthPrefixed(sealedSendKeyLabel, recipient, sendID).Sum(nil)
}

// lengthPrefixed is a SHA-256 over the fields, each after its length.
func lengthPrefixed(fields ...string) hash.Hash {
	h := sha256.New()
	var n [4]byte
	for _, f := range fields {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h
}
