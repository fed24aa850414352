package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/doorless/doorless/internal/store"
)

type deviceKey struct {
	account string
	device  uint32
}

// Enqueue implements store.Messages. It fills in each envelope's Seq and,
// when empty, its ID (a new UUID) and ServerTimestamp (the current time).
// The send id is recorded at the latest ServerTimestamp of the envelopes
// (the current time for a send without envelopes), and Expire forgets it
// from that time on.
func (s *Store) Enqueue(ctx context.Context, send *store.Send, maxQueue int) error {
	if send == nil {
		return errors.New("sqlite: enqueue: nil send")
	}
	envs := send.Envelopes
	ids := make([]string, len(envs))
	stamps := make([]time.Time, len(envs))
	var recorded time.Time
	now := time.Now()
	for i := range envs {
		ids[i] = envs[i].ID
		if ids[i] == "" {
			ids[i] = newUUID()
		}
		stamps[i] = envs[i].ServerTimestamp
		if stamps[i].IsZero() {
			stamps[i] = now
		}
		if stamps[i].After(recorded) {
			recorded = stamps[i]
		}
	}
	if recorded.IsZero() {
		recorded = now
	}
	var key []byte
	if send.Sealed() {
		if send.SourceDevice != 0 {
			return errors.New("sqlite: enqueue: a sealed-sender send has no source device")
		}
		for i := range envs {
			if send.Recipient != "" && envs[i].AccountID != send.Recipient || envs[i].SourceAccount != "" || envs[i].SourceDevice != 0 {
				return errors.New("sqlite: enqueue: a sealed-sender envelope must go to the send's recipient and name no source")
			}
		}
		key = store.SealedSendKey(send.Recipient, send.SendID)
	} else {
		key = store.SendKey(send.SourceAccount, send.SourceDevice, send.SendID)
	}
	seqs := make([]int64, len(envs))

	// Every refusal comes before the first change, the duplicate first,
	// so the write needs no savepoint (writeClean).
	err := s.writeClean(ctx, func(tx *wtx) error {
		var used bool
		if err := tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM send_ids WHERE key = ?)`, key).Scan(&used); err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		} else if used {
			return fmt.Errorf("sqlite: enqueue: %w", store.ErrDuplicate)
		}
		if err := checkQueues(tx, envs, maxQueue); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO send_ids (key, created) VALUES (?, ?)`, key, toMS(recorded)); err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		}
		return insertEnvelopes(tx, envs, ids, stamps, seqs)
	})
	if err != nil {
		return err
	}
	for i := range envs {
		envs[i].Seq = seqs[i]
		envs[i].ID = ids[i]
		envs[i].ServerTimestamp = stamps[i]
	}
	return nil
}

// insertRows are the numbers of envelopes one INSERT statement writes:
// a send's envelopes go in as few statements as these sizes allow (a
// statement per size, each prepared once).
var insertRows = []int{64, 8, 1}

// insertEnvelopes inserts envs, with ids and server timestamps stamps, and
// sets seqs to the Seq each got.
func insertEnvelopes(tx *wtx, envs []store.Envelope, ids []string, stamps []time.Time, seqs []int64) error {
	const columns = 10
	args := make([]any, 0, insertRows[0]*columns)
	for i := 0; i < len(envs); {
		n := 1
		for _, size := range insertRows {
			if len(envs)-i >= size {
				n = size
				break
			}
		}
		args = args[:0]
		at := make(map[string]int, n) // id → index in envs
		for j := i; j < i+n; j++ {
			e := &envs[j]
			args = append(args, ids[j], e.AccountID, e.DeviceID, e.Type, e.SourceAccount, e.SourceDevice,
				toMS(e.ClientTimestamp), toMS(stamps[j]), blob(e.Content), blob(e.Franking))
			at[ids[j]] = j
		}
		st, err := tx.stmt(insertQueries[n])
		if err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		}
		rows, err := st.Query(args...)
		if err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		}
		got := 0
		for rows.Next() {
			var id string
			var seq int64
			if err := rows.Scan(&id, &seq); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: enqueue: %v", err)
			}
			j, ok := at[id]
			if !ok {
				rows.Close()
				return fmt.Errorf("sqlite: enqueue: an id not inserted came back")
			}
			seqs[j] = seq
			got++
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		}
		if got != n {
			return fmt.Errorf("sqlite: enqueue: %d of %d envelopes inserted", got, n)
		}
		i += n
	}
	return nil
}

// insertQueries holds the INSERT of n envelopes for each n of insertRows.
var insertQueries = func() map[int]string {
	m := make(map[int]string, len(insertRows))
	for _, n := range insertRows {
		m[n] = insertQuery(n)
	}
	return m
}()

// insertQuery is the INSERT of n envelopes.
func insertQuery(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO envelopes (id, account_id, device_id, type, source_account, source_device,
		client_timestamp, server_timestamp, content, franking) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(" RETURNING id, seq")
	return b.String()
}

// checkQueues checks, before an envelope is written, that every recipient
// device of envs exists and has room for its envelopes: one query for a
// send to one device, one for a send to many (the devices go in as one JSON
// array of [account, device] pairs).
func checkQueues(tx *wtx, envs []store.Envelope, maxQueue int) error {
	adding := make(map[deviceKey]int, len(envs))
	for i := range envs {
		adding[deviceKey{envs[i].AccountID, envs[i].DeviceID}]++
	}
	if len(adding) == 1 {
		for dk, n := range adding {
			var queued int
			err := tx.QueryRow(`SELECT queued FROM devices WHERE account_id = ? AND id = ?`, dk.account, dk.device).Scan(&queued)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("sqlite: enqueue: %w", store.ErrNotFound)
			case err != nil:
				return fmt.Errorf("sqlite: enqueue: %v", err)
			}
			if queued+n > maxQueue {
				return fmt.Errorf("sqlite: enqueue: %w", store.ErrQueueFull)
			}
		}
		return nil
	}
	pairs := make([][2]any, 0, len(adding))
	for dk := range adding {
		pairs = append(pairs, [2]any{dk.account, dk.device})
	}
	b, err := json.Marshal(pairs)
	if err != nil {
		return fmt.Errorf("sqlite: enqueue: %v", err)
	}
	st, err := tx.stmt(`SELECT d.account_id, d.id, d.queued FROM json_each(?) j
		JOIN devices d ON d.account_id = json_extract(j.value, '$[0]') AND d.id = json_extract(j.value, '$[1]')`)
	if err != nil {
		return fmt.Errorf("sqlite: enqueue: %v", err)
	}
	rows, err := st.Query(string(b))
	if err != nil {
		return fmt.Errorf("sqlite: enqueue: %v", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var dk deviceKey
		var queued int
		if err := rows.Scan(&dk.account, &dk.device, &queued); err != nil {
			return fmt.Errorf("sqlite: enqueue: %v", err)
		}
		found++
		if queued+adding[dk] > maxQueue {
			return fmt.Errorf("sqlite: enqueue: %w", store.ErrQueueFull)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: enqueue: %v", err)
	}
	if found != len(adding) {
		return fmt.Errorf("sqlite: enqueue: %w", store.ErrNotFound)
	}
	return nil
}

// SendUsed implements store.Messages. It looks the send id up by the same
// key Enqueue records.
func (s *Store) SendUsed(ctx context.Context, sourceAccount string, sourceDevice uint32, sendID string) (bool, error) {
	return s.sendUsed(ctx, store.SendKey(sourceAccount, sourceDevice, sendID))
}

// SealedSendUsed implements store.Messages.
func (s *Store) SealedSendUsed(ctx context.Context, recipient, sendID string) (bool, error) {
	return s.sendUsed(ctx, store.SealedSendKey(recipient, sendID))
}

func (s *Store) sendUsed(ctx context.Context, key []byte) (bool, error) {
	var used bool
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM send_ids WHERE key = ?)`, key).Scan(&used)
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return false, err
	case err != nil:
		return false, fmt.Errorf("sqlite: send used: %v", err)
	}
	return used, nil
}

// Queue implements store.Messages. A device that does not exist has an
// empty queue.
func (s *Store) Queue(ctx context.Context, accountID string, deviceID uint32, after int64, limit int) ([]store.Envelope, error) {
	if limit <= 0 {
		return nil, nil
	}
	var envs []store.Envelope
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT seq, id, type, source_account, source_device, client_timestamp, server_timestamp, content,
			franking FROM envelopes WHERE account_id = ? AND device_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
			accountID, deviceID, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e := store.Envelope{AccountID: accountID, DeviceID: deviceID}
			var client, server int64
			if err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.SourceAccount, &e.SourceDevice, &client, &server, &e.Content, &e.Franking); err != nil {
				return err
			}
			if len(e.Franking) == 0 {
				e.Franking = nil
			}
			e.ClientTimestamp = fromMS(client)
			e.ServerTimestamp = fromMS(server)
			envs = append(envs, e)
		}
		return rows.Err()
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: queue: %v", err)
	}
	return envs, nil
}

// Ack implements store.Messages.
func (s *Store) Ack(ctx context.Context, accountID string, deviceID uint32, envelopeID string) error {
	n, err := s.AckMany(ctx, []store.AckRef{{AccountID: accountID, DeviceID: deviceID, EnvelopeID: envelopeID}})
	if err == nil && n == 0 {
		err = fmt.Errorf("sqlite: ack: %w", store.ErrNotFound)
	}
	return err
}

// AckMany implements store.Messages, with one statement: the acks go in as
// one JSON array of [account, device, envelope] triples. It cannot be
// refused, so it runs without a savepoint (writeClean).
func (s *Store) AckMany(ctx context.Context, acks []store.AckRef) (int, error) {
	if len(acks) == 0 {
		return 0, nil
	}
	var n int64
	err := s.writeClean(ctx, func(tx *wtx) error {
		var res sql.Result
		var err error
		if len(acks) == 1 {
			a := acks[0]
			res, err = tx.Exec(`DELETE FROM envelopes WHERE id = ? AND account_id = ? AND device_id = ?`, a.EnvelopeID, a.AccountID, a.DeviceID)
		} else {
			triples := make([][3]any, len(acks))
			for i, a := range acks {
				triples[i] = [3]any{a.AccountID, a.DeviceID, a.EnvelopeID}
			}
			var b []byte
			if b, err = json.Marshal(triples); err != nil {
				return fmt.Errorf("sqlite: ack: %v", err)
			}
			res, err = tx.Exec(`DELETE FROM envelopes WHERE seq IN (SELECT e.seq FROM json_each(?) j
				JOIN envelopes e ON e.id = json_extract(j.value, '$[2]')
				WHERE e.account_id = json_extract(j.value, '$[0]') AND e.device_id = json_extract(j.value, '$[1]'))`, string(b))
		}
		if err != nil {
			return fmt.Errorf("sqlite: ack: %v", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: ack: %v", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// QueueLen implements store.Messages. A device that does not exist has an
// empty queue.
func (s *Store) QueueLen(ctx context.Context, accountID string, deviceID uint32) (int, error) {
	var n int
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT queued FROM devices WHERE account_id = ? AND id = ?`,
			accountID, deviceID).Scan(&n)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case errors.Is(err, store.ErrClosed):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("sqlite: queue length: %v", err)
	}
	return n, nil
}

// Expire implements store.Messages. It also deletes the invites that expired
// before cutoff, which no one can use any more.
func (s *Store) Expire(ctx context.Context, cutoff time.Time) (int, error) {
	var n int64
	c := toMS(cutoff)
	err := s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM envelopes WHERE server_timestamp < ?`, c)
		if err != nil {
			return fmt.Errorf("sqlite: expire: %v", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: expire: %v", err)
		}
		if _, err := tx.Exec(`DELETE FROM send_ids WHERE created < ?`, c); err != nil {
			return fmt.Errorf("sqlite: expire: %v", err)
		}
		if _, err := tx.Exec(`DELETE FROM invites WHERE expires < ?`, c); err != nil {
			return fmt.Errorf("sqlite: expire: %v", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
