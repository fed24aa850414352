package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/storetest"
)

// openTemp opens a store in a fresh database file, closed at the end of t.
func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doorless.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		t.Cleanup(func() { checkQueued(t, s) }) // before the Close above
		return s
	})
}

// TestNodes: Stores over one file, in one process, share the sequencer
// lease.
func TestNodes(t *testing.T) {
	storetest.RunNodes(t, func(t *testing.T) func() store.Store {
		path := filepath.Join(t.TempDir(), "doorless.db")
		return func() store.Store {
			s, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			return s
		}
	})
}

// checkQueued checks that every device's queued count, which triggers keep,
// is its number of envelopes.
func checkQueued(t *testing.T, s *Store) {
	var bad []string
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(context.Background(), `SELECT d.id, d.queued, (SELECT COUNT(*) FROM envelopes e WHERE e.account_id = d.account_id AND e.device_id = d.id) AS n
			FROM devices d WHERE queued != n`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, queued, n int
			if err := rows.Scan(&id, &queued, &n); err != nil {
				return err
			}
			bad = append(bad, fmt.Sprintf("device %d: queued %d, %d envelopes", id, queued, n))
		}
		return rows.Err()
	})
	if errors.Is(err, store.ErrClosed) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// pauseWriter occupies the writer goroutine until the returned function is
// called, so that the writes queued meanwhile form the next batch.
func pauseWriter(t *testing.T, s *Store) (resume func()) {
	t.Helper()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.write(context.Background(), func(*wtx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	return func() {
		close(release)
		if err := <-done; err != nil {
			t.Errorf("paused write: %v", err)
		}
	}
}

// waitQueued waits until n writes wait for the writer. It waits on a
// condition, not for a time.
func waitQueued(s *Store, n int) {
	for len(s.ops) < n {
		runtime.Gosched()
	}
}

func register(t *testing.T, s *Store, username string) *store.Device {
	t.Helper()
	id := newUUID()
	a := &store.Account{ID: id, Username: username, IdentityKey: []byte("ik"), Created: time.Now()}
	d := &store.Device{AccountID: id, ID: 1, RegistrationID: 1, CredentialHash: []byte("hash"), Created: time.Now()}
	k := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: []byte("spk"), Signature: []byte("sig")},
		LastResort:   &store.KyberPreKey{ID: 2, PublicKey: []byte("lr"), Signature: []byte("sig")},
		PreKeys:      []store.PreKey{{ID: 1, PublicKey: []byte("pk1")}, {ID: 2, PublicKey: []byte("pk2")}},
	}
	if err := s.CreateAccount(t.Context(), a, d, k, listAt(1), nil); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return d
}

// listAt is a fake signed device list of the given version.
func listAt(version uint64) *store.DeviceList {
	return &store.DeviceList{Version: version, Signed: []byte(fmt.Sprint("list v", version))}
}

// linkDevice adds a device to the account through a link token, with the
// account's next device list l.
func linkDevice(t *testing.T, s *Store, accountID string, l *store.DeviceList) *store.Device {
	t.Helper()
	now := time.Now()
	tok := &store.LinkToken{TokenHash: []byte("token " + newUUID()), AccountID: accountID, Expires: now.Add(time.Hour)}
	if err := s.CreateLinkToken(t.Context(), tok, now, 127, 10); err != nil {
		t.Fatalf("CreateLinkToken: %v", err)
	}
	d := &store.Device{AccountID: accountID, ID: tok.DeviceID, RegistrationID: 2, CredentialHash: []byte("h"), Created: now}
	if err := s.LinkDevice(t.Context(), tok.TokenHash, d, nil, l, nil); err != nil {
		t.Fatalf("LinkDevice: %v", err)
	}
	return d
}

func envelopeTo(from, to *store.Device, content string) *store.Send {
	return &store.Send{
		SourceAccount: from.AccountID,
		SourceDevice:  from.ID,
		SendID:        newUUID(),
		Envelopes: []store.Envelope{{
			ID: newUUID(), AccountID: to.AccountID, DeviceID: to.ID, Type: 1,
			SourceAccount: from.AccountID, SourceDevice: from.ID,
			ClientTimestamp: time.Now(), ServerTimestamp: time.Now(), Content: []byte(content),
		}},
	}
}

// TestGroupCommit queues good and failing sends while the writer is busy:
// they commit as one transaction, each failing send fails alone with its own
// error, and the others land.
func TestGroupCommit(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	alice, bob, full, gone := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "full"), register(t, s, "gone")
	const max = 5
	for i := range max {
		if err := s.Enqueue(ctx, envelopeTo(alice, full, fmt.Sprint(i)), max); err != nil {
			t.Fatal(err)
		}
	}
	used := envelopeTo(alice, bob, "used")
	if err := s.Enqueue(ctx, used, max); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDevice(ctx, gone.AccountID, gone.ID, listAt(2)); err != nil {
		t.Fatal(err)
	}

	dup := envelopeTo(alice, bob, "dup")
	dup.SendID = used.SendID
	toFull := envelopeTo(alice, bob, "full")
	toFull.Envelopes = append(toFull.Envelopes, envelopeTo(alice, full, "full").Envelopes[0])
	toGone := envelopeTo(alice, bob, "gone")
	toGone.Envelopes = append(toGone.Envelopes, envelopeTo(alice, gone, "gone").Envelopes[0])
	sends := []struct {
		send *store.Send
		want error
	}{
		{envelopeTo(alice, bob, "good1"), nil},
		{dup, store.ErrDuplicate},
		{envelopeTo(alice, bob, "good2"), nil},
		{toFull, store.ErrQueueFull},
		{toGone, store.ErrNotFound},
		{envelopeTo(alice, bob, "good3"), nil},
	}

	resume := pauseWriter(t, s)
	before := s.commits.Load()
	errs := make([]error, len(sends))
	var wg sync.WaitGroup
	for i, sn := range sends {
		wg.Go(func() { errs[i] = s.Enqueue(ctx, sn.send, max) })
	}
	waitQueued(s, len(sends))
	resume()
	wg.Wait()

	if got := s.commits.Load() - before; got != 2 {
		t.Errorf("%d commits for the paused write and the batch behind it, want 2", got)
	}
	for i, sn := range sends {
		if sn.want == nil && errs[i] != nil || sn.want != nil && !errors.Is(errs[i], sn.want) {
			t.Errorf("send %d: %v, want %v", i, errs[i], sn.want)
		}
	}
	envs, err := s.Queue(ctx, bob.AccountID, bob.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range envs {
		got = append(got, string(e.Content))
	}
	slices.Sort(got)
	if want := []string{"good1", "good2", "good3", "used"}; !slices.Equal(got, want) {
		t.Errorf("bob's queue = %q, want %q", got, want)
	}
	if n, _ := s.QueueLen(ctx, full.AccountID, full.ID); n != max {
		t.Errorf("QueueLen(full) = %d, want %d", n, max)
	}
}

// TestCanceledWhileQueued: a write whose context ends before the writer
// reaches it is not run.
func TestCanceledWhileQueued(t *testing.T) {
	s, _ := openTemp(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	resume := pauseWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Enqueue(ctx, envelopeTo(alice, bob, "x"), 10) }()
	waitQueued(s, 1)
	cancel()
	resume()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue: %v, want context.Canceled", err)
	}
	if n, _ := s.QueueLen(t.Context(), bob.AccountID, bob.ID); n != 0 {
		t.Fatalf("QueueLen = %d after a canceled Enqueue, want 0", n)
	}
}

// TestCloseFlushes: writes queued when Close is called are committed before
// it returns, and are there after reopening.
func TestCloseFlushes(t *testing.T) {
	s, path := openTemp(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	const n = 20
	resume := pauseWriter(t, s)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.Enqueue(t.Context(), envelopeTo(alice, bob, fmt.Sprint(i)), 100) })
	}
	waitQueued(s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close is now waiting for the writer; let the writer go on.
	resume()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Enqueue %d: %v", i, err)
		}
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, _ := s2.QueueLen(t.Context(), bob.AccountID, bob.ID); got != n {
		t.Fatalf("QueueLen after reopening = %d, want %d", got, n)
	}
}

// TestCloseRacingEnqueue: an Enqueue racing with Close either returns nil
// and is durable, or returns ErrClosed and stored nothing.
func TestCloseRacingEnqueue(t *testing.T) {
	s, path := openTemp(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	const n = 40
	var wg sync.WaitGroup
	sends := make([]*store.Send, n)
	errs := make([]error, n)
	for i := range n {
		sends[i] = envelopeTo(alice, bob, fmt.Sprint(i))
		wg.Go(func() { errs[i] = s.Enqueue(context.Background(), sends[i], 1000) })
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	envs, err := s2.Queue(t.Context(), bob.AccountID, bob.ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, e := range envs {
		stored[e.ID] = true
	}
	for i, err := range errs {
		switch {
		case err == nil && !stored[sends[i].Envelopes[0].ID]:
			t.Errorf("Enqueue %d returned nil but is not stored", i)
		case errors.Is(err, store.ErrClosed) && stored[sends[i].Envelopes[0].ID]:
			t.Errorf("Enqueue %d returned ErrClosed but is stored", i)
		case err != nil && !errors.Is(err, store.ErrClosed):
			t.Errorf("Enqueue %d: %v", i, err)
		}
	}
}

// TestReopen: everything survives Close and Open, and sequence numbers and
// device ids keep increasing across it.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doorless.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	first := envelopeTo(alice, bob, "first")
	if err := s.Enqueue(ctx, first, 10); err != nil {
		t.Fatal(err)
	}
	second := envelopeTo(alice, bob, "second")
	if err := s.Enqueue(ctx, second, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, bob.AccountID, bob.ID, second.Envelopes[0].ID); err != nil {
		t.Fatal(err)
	}
	d2 := linkDevice(t, s, bob.AccountID, listAt(2))
	if err := s.RemoveDevice(ctx, bob.AccountID, d2.ID, listAt(3)); err != nil {
		t.Fatal(err)
	}
	inv := &store.Invite{CodeHash: []byte("invite"), Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	if err := s.CreateInvite(ctx, inv); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.AccountByUsername(ctx, "alice")
	if err != nil || a.ID != alice.AccountID {
		t.Fatalf("AccountByUsername after reopening = %v, %v", a, err)
	}
	if d, err := s.Device(ctx, bob.AccountID, 1); err != nil || string(d.CredentialHash) != "hash" {
		t.Fatalf("Device after reopening = %v, %v", d, err)
	}
	if c, err := s.KeyCounts(ctx, bob.AccountID, 1); err != nil || c.PreKeys != 2 {
		t.Fatalf("KeyCounts after reopening = %+v, %v", c, err)
	}
	envs, err := s.Queue(ctx, bob.AccountID, bob.ID, 0, 10)
	if err != nil || len(envs) != 1 || envs[0].ID != first.Envelopes[0].ID || string(envs[0].Content) != "first" {
		t.Fatalf("Queue after reopening = %+v, %v; want the first envelope", envs, err)
	}
	if err := s.Enqueue(ctx, first, 10); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("Enqueue of a send from before reopening: %v, want ErrDuplicate", err)
	}
	third := envelopeTo(alice, bob, "third")
	if err := s.Enqueue(ctx, third, 10); err != nil {
		t.Fatal(err)
	}
	if third.Envelopes[0].Seq <= second.Envelopes[0].Seq {
		t.Fatalf("seq after reopening = %d, not above the acknowledged %d", third.Envelopes[0].Seq, second.Envelopes[0].Seq)
	}
	if l, err := s.DeviceList(ctx, bob.AccountID); err != nil || l.Version != 3 || !bytes.Equal(l.Signed, listAt(3).Signed) {
		t.Fatalf("DeviceList after reopening = %+v, %v; want version 3", l, err)
	}
	if d3 := linkDevice(t, s, bob.AccountID, listAt(4)); d3.ID != 3 {
		t.Fatalf("linked device after reopening has id %d, want 3 (2 was used)", d3.ID)
	}
	a2 := &store.Account{ID: newUUID(), Username: "carol", IdentityKey: []byte("ik"), Created: time.Now()}
	if err := s.CreateAccount(ctx, a2, &store.Device{ID: 1, CredentialHash: []byte("h")}, nil, listAt(1), inv.CodeHash); err != nil {
		t.Fatalf("CreateAccount with an invite from before reopening: %v", err)
	}
}

// TestOpenSettings: the file is private to its owner, and the writing
// connection runs with the settings durability depends on.
func TestOpenSettings(t *testing.T) {
	s, path := openTemp(t)
	register(t, s, "alice") // makes the WAL file
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), m)
		}
	}
	var journal string
	var sync, fk, busy, secure, limit int
	err := s.write(t.Context(), func(tx *wtx) error {
		for q, v := range map[string]any{
			"PRAGMA journal_mode": &journal, "PRAGMA synchronous": &sync,
			"PRAGMA foreign_keys": &fk, "PRAGMA busy_timeout": &busy,
			"PRAGMA secure_delete": &secure, "PRAGMA journal_size_limit": &limit,
		} {
			if err := tx.QueryRow(q).Scan(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if journal != "wal" || sync != 2 || fk != 1 || busy != int(busyTimeout.Milliseconds()) || secure != 1 || limit != walSizeLimit {
		t.Errorf("journal_mode %s, synchronous %d, foreign_keys %d, busy_timeout %d, secure_delete %d, journal_size_limit %d; want wal, 2 (FULL), 1, %d, 1, %d",
			journal, sync, fk, busy, secure, limit, busyTimeout.Milliseconds(), walSizeLimit)
	}
	// The read pool cannot write.
	if _, err := s.rdb.Exec(`DELETE FROM accounts`); err == nil {
		t.Errorf("a read connection could write")
	}
}

// TestSchemaVersion: a new database is at the latest version; Open refuses a
// database from a newer program.
func TestSchemaVersion(t *testing.T) {
	s, path := openTemp(t)
	var v int
	if err := s.rdb.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	if err := s.write(t.Context(), func(tx *wtx) error {
		_, err := tx.Exec(`UPDATE schema_version SET version = ?`, len(migrations)+1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("Open accepted a database with a newer schema")
	}
}

// oldDatabase makes a database at schema version v (its first v
// migrations) holding one account with one device, and returns its path and
// the account's id.
func oldDatabase(t *testing.T, v int) (path, id string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "doorless.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id = newUUID()
	qs := append(slices.Clone(migrations[:v]),
		`CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT`,
		fmt.Sprintf(`INSERT INTO schema_version (version) VALUES (%d)`, v),
		`INSERT INTO accounts (id, username, identity_key, created, next_device_id) VALUES ('`+id+`', 'old', x'05', 0, 2)`,
		`INSERT INTO devices (account_id, id, registration_id, credential_hash, created) VALUES ('`+id+`', 1, 1, x'00', 0)`,
	)
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return path, id
}

// TestMigrateFromVersion1: a database made by the first schema opens, gains
// the device-list tables, and keeps its accounts, which have no device list
// until their first change (at version 1).
func TestMigrateFromVersion1(t *testing.T) {
	path, id := oldDatabase(t, 1)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.DeviceList(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeviceList of an account from before device lists: %v, want ErrNotFound", err)
	}
	now := time.Now()
	tok := &store.LinkToken{TokenHash: []byte("token"), AccountID: id, Expires: now.Add(time.Hour)}
	if err := s.CreateLinkToken(ctx, tok, now, 127, 10); err != nil || tok.DeviceID != 2 {
		t.Fatalf("CreateLinkToken = %d, %v; want device 2", tok.DeviceID, err)
	}
	d := &store.Device{AccountID: id, ID: 2, RegistrationID: 2, CredentialHash: []byte("h"), Created: now}
	if err := s.LinkDevice(ctx, tok.TokenHash, d, nil, listAt(2), nil); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("first list at version 2: %v, want ErrVersionConflict", err)
	}
	if err := s.LinkDevice(ctx, tok.TokenHash, d, nil, listAt(1), nil); err != nil {
		t.Fatalf("first list at version 1: %v", err)
	}
	if l, err := s.DeviceList(ctx, id); err != nil || l.Version != 1 {
		t.Fatalf("DeviceList = %+v, %v; want version 1", l, err)
	}
}

// TestCleanWrites: a write without a savepoint (writeClean) that refuses
// leaves the rest of its batch to commit; one that fails otherwise fails
// the whole batch, its own change and the others' undone.
func TestCleanWrites(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	invite := func(i int) func(tx *wtx) error {
		return func(tx *wtx) error {
			_, err := tx.Exec(`INSERT INTO invites (code_hash, created, expires) VALUES (?, 0, 1)`, []byte{byte(i)})
			return err
		}
	}
	count := func() int {
		var n int
		if err := s.rdb.QueryRow(`SELECT COUNT(*) FROM invites`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// batch holds the writer until every op of ops is queued, so that they
	// commit together, and returns their errors.
	batch := func(ops ...func() error) []error {
		hold := make(chan struct{})
		held := make(chan struct{})
		go s.write(ctx, func(*wtx) error { close(held); <-hold; return nil })
		<-held
		errs := make([]error, len(ops))
		var wg sync.WaitGroup
		for i, op := range ops {
			wg.Go(func() { errs[i] = op() })
		}
		for len(s.ops) < len(ops) {
			time.Sleep(time.Millisecond)
		}
		close(hold)
		wg.Wait()
		return errs
	}

	errs := batch(
		func() error { return s.write(ctx, invite(1)) },
		func() error {
			return s.writeClean(ctx, func(*wtx) error { return fmt.Errorf("x: %w", store.ErrDuplicate) })
		},
		func() error { return s.write(ctx, invite(2)) },
	)
	if errs[0] != nil || !errors.Is(errs[1], store.ErrDuplicate) || errs[2] != nil {
		t.Fatalf("a refusing clean write with two others: %v", errs)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d invites after the batch, want 2", n)
	}

	boom := errors.New("boom")
	errs = batch(
		func() error { return s.write(ctx, invite(3)) },
		func() error {
			return s.writeClean(ctx, func(tx *wtx) error {
				if err := invite(4)(tx); err != nil {
					return err
				}
				return boom
			})
		},
		func() error { return s.write(ctx, invite(5)) },
	)
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "boom") || errs[0] == nil || errs[2] == nil {
		t.Fatalf("a failing clean write with two others: %v, want all three to fail", errs)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d invites after the failed batch, want the 2 from before", n)
	}

	// A refusal in a batch that fails is not reported: it may rest on a
	// write the failure undid.
	errs = batch(
		func() error {
			return s.writeClean(ctx, func(*wtx) error { return fmt.Errorf("x: %w", store.ErrDuplicate) })
		},
		func() error { return s.writeClean(ctx, func(*wtx) error { return boom }) },
	)
	if errs[0] == nil || errors.Is(errs[0], store.ErrDuplicate) || errs[1] == nil {
		t.Fatalf("a refusal and a failure in one batch: %v, want both to fail with the batch", errs)
	}
}
