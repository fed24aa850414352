package profile

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"time"
)

// ---- message history ----

// HistoryItem is one message of the history. Data is the client's encoding
// of the message, secret.
type HistoryItem struct {
	ID           string
	Conversation string
	Received     time.Time
	Expires      time.Time // zero: never
	Data         []byte
	// Sent is a sent message's sender timestamp (receipts name it by it);
	// zero for a message received.
	Sent time.Time
	// Unread: a message received whose read receipt is still to go.
	Unread bool
}

// UserConversation and GroupConversation name conversations.
func UserConversation(username string) string { return "u:" + username }

// GroupConversation names a group's conversation.
func GroupConversation(groupID []byte) string { return "g:" + hex.EncodeToString(groupID) }

func historyLabel(id string) string { return "message/" + id }

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// PutHistory stores (or replaces) a message of the history.
func (tx *Tx) PutHistory(it *HistoryItem) error {
	_, err := tx.exec(`INSERT OR REPLACE INTO messages (id, conversation, received, expires, data, sent, unread) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		it.ID, it.Conversation, it.Received.UnixMilli(), msOrZero(it.Expires), tx.seal.seal(historyLabel(it.ID), it.Data),
		msOrZero(it.Sent), it.Unread)
	return err
}

// SentAt returns the messages sent with this sender timestamp: what a
// receipt names.
func (tx *Tx) SentAt(sent time.Time) ([]HistoryItem, error) {
	return tx.historyRows(`SELECT `+historyColumns+` FROM messages WHERE sent = ? AND sent > 0 ORDER BY id`, sent.UnixMilli())
}

// Unread returns a conversation's messages whose read receipts are still to
// go, oldest first.
func (tx *Tx) Unread(conversation string) ([]HistoryItem, error) {
	return tx.historyRows(`SELECT `+historyColumns+` FROM messages WHERE conversation = ? AND unread ORDER BY received, id`, conversation)
}

// History returns one message of the history, or nil.
func (tx *Tx) History(id string) (*HistoryItem, error) {
	items, err := tx.historyRows(`SELECT `+historyColumns+` FROM messages WHERE id = ?`, id)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	return &items[0], nil
}

const historyColumns = `id, conversation, received, expires, data, sent, unread`

// Conversation returns a conversation's messages, oldest first; the last
// limit of them when limit > 0.
func (tx *Tx) Conversation(conversation string, limit int) ([]HistoryItem, error) {
	q := `SELECT ` + historyColumns + ` FROM messages WHERE conversation = ? ORDER BY received, id`
	args := []any{conversation}
	if limit > 0 {
		q = `SELECT * FROM (SELECT ` + historyColumns + ` FROM messages WHERE conversation = ?
			ORDER BY received DESC, id DESC LIMIT ?) ORDER BY received, id`
		args = append(args, limit)
	}
	return tx.historyRows(q, args...)
}

func (tx *Tx) historyRows(q string, args ...any) ([]HistoryItem, error) {
	rows, err := tx.q.QueryContext(tx.ctx, q, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []HistoryItem
	for rows.Next() {
		var (
			it             HistoryItem
			rcv, exp, sent int64
			b              []byte
		)
		if err := rows.Scan(&it.ID, &it.Conversation, &rcv, &exp, &b, &sent, &it.Unread); err != nil {
			return nil, dbErr(err)
		}
		it.Received, it.Expires, it.Sent = time.UnixMilli(rcv), timeOrZero(exp), timeOrZero(sent)
		if it.Data, err = tx.seal.open(historyLabel(it.ID), b); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, dbErr(rows.Err())
}

// Expired returns the messages whose time ran out at now.
func (tx *Tx) Expired(now time.Time) ([]HistoryItem, error) {
	return tx.historyRows(`SELECT `+historyColumns+` FROM messages WHERE expires > 0 AND expires <= ? ORDER BY expires`,
		now.UnixMilli())
}

// NextExpiry returns when the next message disappears, or the zero time.
func (tx *Tx) NextExpiry() (time.Time, error) {
	var ms sql.NullInt64
	if err := tx.q.QueryRowContext(tx.ctx, `SELECT min(expires) FROM messages WHERE expires > 0`).Scan(&ms); err != nil {
		return time.Time{}, dbErr(err)
	}
	return timeOrZero(ms.Int64), nil
}

// DeleteHistory deletes one message of the history, and what reporting it
// would take.
func (tx *Tx) DeleteHistory(id string) error {
	if _, err := tx.exec(`DELETE FROM messages WHERE id = ?`, id); err != nil {
		return err
	}
	_, err := tx.exec(`DELETE FROM message_franking WHERE id = ?`, id)
	return err
}

// Timer returns a conversation's disappearing-message timer (0: off).
func (tx *Tx) Timer(conversation string) (time.Duration, error) {
	var s int64
	err := tx.q.QueryRowContext(tx.ctx, `SELECT timer FROM conversations WHERE id = ?`, conversation).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, dbErr(err)
	}
	return time.Duration(s) * time.Second, nil
}

// SetTimer sets a conversation's disappearing-message timer.
func (tx *Tx) SetTimer(conversation string, d time.Duration, now time.Time) error {
	_, err := tx.exec(`INSERT OR REPLACE INTO conversations (id, timer, updated) VALUES (?, ?, ?)`,
		conversation, int64(d/time.Second), now.UnixMilli())
	return err
}

// Checkpoint moves the write-ahead log into the database file and truncates
// it, so that what secure_delete zeroed in the database is not left in the
// log: called after messages disappear.
func (s *Store) Checkpoint() error {
	_, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return dbErr(err)
}
