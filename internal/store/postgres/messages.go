package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Messages = (*Store)(nil)

// Enqueue implements store.Messages. It fills in each envelope's Seq and,
// when empty, its ID (a new UUID) and ServerTimestamp (the current time).
// The send id is recorded at the latest ServerTimestamp of the envelopes
// (the current time for a send without envelopes), and Expire forgets it
// from that time on.
//
// One transaction, sent in one round trip whatever the number of
// envelopes: record the send id (its primary key refuses a duplicate, from
// any node), lock the recipient devices' rows in key order (so two sends to
// overlapping devices cannot deadlock) and check their queues
// (enqueue_lock), insert the envelopes (one statement). The device locks,
// held to the commit, make a device's envelopes commit in Seq order.
// Concurrent Enqueue calls share WAL flushes in PostgreSQL's own group
// commit.
func (s *Store) Enqueue(ctx context.Context, send *store.Send, maxQueue int) error {
	if send == nil {
		return errors.New("postgres: enqueue: nil send")
	}
	envs := send.Envelopes
	n := len(envs)
	var (
		ids      = make([]string, n)
		stamps   = make([]time.Time, n)
		accounts = make([]string, n)
		devices  = make([]int64, n)
		types    = make([]int64, n)
		srcAccs  = make([]string, n)
		srcDevs  = make([]int64, n)
		clients  = make([]int64, n)
		servers  = make([]int64, n)
		contents = make([][]byte, n)
		franks   = make([][]byte, n)
	)
	var recorded time.Time
	now := time.Now()
	for i := range envs {
		e := &envs[i]
		ids[i] = e.ID
		if ids[i] == "" {
			ids[i] = newUUID()
		}
		stamps[i] = e.ServerTimestamp
		if stamps[i].IsZero() {
			stamps[i] = now
		}
		if stamps[i].After(recorded) {
			recorded = stamps[i]
		}
		accounts[i], devices[i], types[i] = e.AccountID, int64(e.DeviceID), int64(e.Type)
		srcAccs[i], srcDevs[i] = e.SourceAccount, int64(e.SourceDevice)
		clients[i], servers[i] = toMS(e.ClientTimestamp), toMS(stamps[i])
		contents[i], franks[i] = blob(e.Content), blob(e.Franking)
	}
	if recorded.IsZero() {
		recorded = now
	}
	var key []byte
	if send.Sealed() {
		if send.SourceDevice != 0 {
			return errors.New("postgres: enqueue: a sealed-sender send has no source device")
		}
		for i := range envs {
			if send.Recipient != "" && envs[i].AccountID != send.Recipient || envs[i].SourceAccount != "" || envs[i].SourceDevice != 0 {
				return errors.New("postgres: enqueue: a sealed-sender envelope must go to the send's recipient and name no source")
			}
		}
		key = store.SealedSendKey(send.Recipient, send.SendID)
	} else {
		key = store.SendKey(send.SourceAccount, send.SourceDevice, send.SendID)
	}

	// The recipient devices, each once, with how many envelopes each gets
	// (enqueue_lock locks them in key order).
	type target struct {
		account string
		device  int64
	}
	adding := make(map[target]int64, n)
	for i := range envs {
		adding[target{account: accounts[i], device: devices[i]}]++
	}
	tAccounts := make([]string, 0, len(adding))
	tDevices := make([]int64, 0, len(adding))
	tAdding := make([]int64, 0, len(adding))
	for t, c := range adding {
		tAccounts, tDevices, tAdding = append(tAccounts, t.account), append(tDevices, t.device), append(tAdding, c)
	}

	seqs := make([]int64, n)
	collect := func(rows pgx.Rows) error {
		got := make(map[string]int64, n)
		for rows.Next() {
			var id string
			var seq int64
			if err := rows.Scan(&id, &seq); err != nil {
				return err
			}
			got[id] = seq
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for i, id := range ids {
			seq, ok := got[id]
			if !ok {
				return fmt.Errorf("envelope %d not inserted", i)
			}
			seqs[i] = seq
		}
		return nil
	}
	// One batch, one round trip, one implicit transaction: an error in any
	// statement rolls back all of them, the send id's record included.
	err := s.batch(ctx, "enqueue", func(b *pgx.Batch) {
		// Recording the send id first finds a duplicate (send_ids_pkey). A
		// concurrent Enqueue with the same key waits here for this one to end.
		b.Queue(`INSERT INTO send_ids (key, created) VALUES ($1, $2)`, key, toMS(recorded))
		if n > 0 {
			b.Queue(`SELECT enqueue_lock($1::text[], $2::bigint[], $3::bigint[], $4)`, tAccounts, tDevices, tAdding, int64(maxQueue))
			// Envelopes go in in the send's order (WITH ORDINALITY), which
			// gives them increasing seqs in that order. The device locks,
			// held to the commit, make a device's envelopes commit in Seq
			// order.
			b.Queue(`INSERT INTO envelopes (id, account_id, device_id, type, source_account, source_device,
				client_timestamp, server_timestamp, content, franking)
			SELECT id, account_id, device_id, type, source_account, source_device, client_timestamp, server_timestamp, content, franking
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[], $10::bytea[])
				WITH ORDINALITY AS e (id, account_id, device_id, type, source_account, source_device, client_timestamp, server_timestamp, content, franking, i)
			ORDER BY i
			RETURNING id, seq`,
				ids, accounts, devices, types, srcAccs, srcDevs, clients, servers, contents, franks).Query(collect)
		}
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
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM send_ids WHERE key = $1)`, key).Scan(&used)
	})
	if err != nil {
		return false, readErr("send used", err)
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
	err := s.read(func(db *pgxpool.Pool) error {
		envs = nil
		rows, err := db.Query(ctx, `SELECT seq, id, type, source_account, source_device, client_timestamp, server_timestamp, content,
			franking FROM envelopes WHERE account_id = $1 AND device_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
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
	if err != nil {
		return nil, readErr("queue", err)
	}
	return envs, nil
}

// Ack implements store.Messages.
func (s *Store) Ack(ctx context.Context, accountID string, deviceID uint32, envelopeID string) error {
	n, err := s.AckMany(ctx, []store.AckRef{{AccountID: accountID, DeviceID: deviceID, EnvelopeID: envelopeID}})
	if err == nil && n == 0 {
		err = fmt.Errorf("postgres: ack: %w", store.ErrNotFound)
	}
	return err
}

// AckMany implements store.Messages: one statement, one commit, whatever
// the number of acks and devices. The acks go in as three parallel arrays.
func (s *Store) AckMany(ctx context.Context, acks []store.AckRef) (int, error) {
	if len(acks) == 0 {
		return 0, nil
	}
	accounts := make([]string, len(acks))
	devices := make([]int64, len(acks))
	ids := make([]string, len(acks))
	for i, a := range acks {
		accounts[i], devices[i], ids[i] = a.AccountID, int64(a.DeviceID), a.EnvelopeID
	}
	var n int64
	err := s.single(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `DELETE FROM envelopes e USING unnest($1::text[], $2::bigint[], $3::text[]) AS a (account_id, device_id, id)
			WHERE e.id = a.id AND e.account_id = a.account_id AND e.device_id = a.device_id`, accounts, devices, ids)
		if err != nil {
			return wrap("ack", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return int(n), err
}

// QueueLen implements store.Messages. A device that does not exist has an
// empty queue.
func (s *Store) QueueLen(ctx context.Context, accountID string, deviceID uint32) (int, error) {
	var n int
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT queued FROM devices WHERE account_id = $1 AND id = $2`, accountID, deviceID).Scan(&n)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, readErr("queue length", err)
	}
	return n, nil
}

// Expire implements store.Messages. It also deletes the invites that expired
// before cutoff, which no one can use any more. Its three deletions go in
// one batch: one round trip, one transaction.
func (s *Store) Expire(ctx context.Context, cutoff time.Time) (int, error) {
	var n int64
	c := toMS(cutoff)
	err := s.batch(ctx, "expire", func(b *pgx.Batch) {
		b.Queue(`DELETE FROM envelopes WHERE server_timestamp < $1`, c).Exec(func(tag pgconn.CommandTag) error {
			n = tag.RowsAffected()
			return nil
		})
		b.Queue(`DELETE FROM send_ids WHERE created < $1`, c)
		b.Queue(`DELETE FROM invites WHERE expires < $1`, c)
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
