package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/storetest"
	"github.com/doorless/doorless/kt"
)

// dsnEnv names the environment variable that holds the test database's
// connection string, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. Every test
// works in a fresh schema of its own, dropped at its end.
const dsnEnv = "DOORLESS_TEST_POSTGRES"

// needDSN returns the test database's connection string, and skips tb
// when there is none.
func needDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		tb.Skipf("%s is not set: no PostgreSQL to test against (e.g. %s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable')", dsnEnv, dsnEnv)
	}
	return dsn
}

// testSchema creates a fresh, randomly named schema in the test database
// and returns a pool configuration whose search_path is it (a new one on
// every call: each Store takes its own). The schema is dropped when tb
// ends. Without DOORLESS_TEST_POSTGRES the test is skipped.
func testSchema(tb testing.TB) (config func() *pgxpool.Config, schema string) {
	tb.Helper()
	dsn := needDSN(tb)
	var b [8]byte
	rand.Read(b[:])
	schema = "doorless_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to %s: %v", dsnEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return func() *pgxpool.Config {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		return cfg
	}, schema
}

// openNode opens a Store on the schema config makes, closed at the end of
// tb (after any cleanup registered later, the schema's drop before it).
func openNode(tb testing.TB, config func() *pgxpool.Config) *Store {
	tb.Helper()
	s, err := OpenConfig(context.Background(), config())
	if err != nil {
		tb.Fatalf("OpenConfig: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// openTest opens a store in a fresh schema.
func openTest(tb testing.TB) *Store {
	tb.Helper()
	config, _ := testSchema(tb)
	return openNode(tb, config)
}

func TestConformance(t *testing.T) {
	needDSN(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		config, _ := testSchema(t)
		s := openNode(t, config)
		// Checked with a pool of its own: the suite closes some stores.
		t.Cleanup(func() { checkQueued(t, config) })
		return s
	})
}

// TestNodes: nodes over one schema share the sequencer lease.
func TestNodes(t *testing.T) {
	needDSN(t)
	storetest.RunNodes(t, func(t *testing.T) func() store.Store {
		config, _ := testSchema(t)
		return func() store.Store { return openNode(t, config) }
	})
}

// TestSequencerLeaseSessionEnd: when the session holding the lease ends
// (its node died, or the connection broke), the holder's Check fails and
// another node takes the lease.
func TestSequencerLeaseSessionEnd(t *testing.T) {
	config, _ := testSchema(t)
	a, b := openNode(t, config), openNode(t, config)
	ctx := t.Context()
	la, err := a.AcquireSequencer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Release()
	pid := la.(*sequencerLease).conn.PgConn().PID()
	// (With a timeout, pg_terminate_backend waits for the backend's end,
	// its locks' release included: PostgreSQL 14 and later.)
	var ended bool
	if err := b.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ended); err != nil || !ended {
		t.Fatalf("pg_terminate_backend = %v, %v", ended, err)
	}
	if err := la.Check(ctx); err == nil {
		t.Fatal("Check after the session's end = nil")
	}
	lb, err := b.AcquireSequencer(ctx)
	if err != nil {
		t.Fatalf("AcquireSequencer after the holder's session ended: %v", err)
	}
	if err := lb.Release(); err != nil {
		t.Fatal(err)
	}
}

// checkQueued checks that every device's queued count, which the triggers
// keep, is its number of envelopes.
func checkQueued(t *testing.T, config func() *pgxpool.Config) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, config())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `SELECT d.id, d.queued, (SELECT COUNT(*) FROM envelopes e WHERE e.account_id = d.account_id AND e.device_id = d.id) AS n
		FROM devices d WHERE d.queued <> (SELECT COUNT(*) FROM envelopes e WHERE e.account_id = d.account_id AND e.device_id = d.id)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, queued, n int64
		if err := rows.Scan(&id, &queued, &n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("device %d: queued %d, %d envelopes", id, queued, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func schemaVersion(t *testing.T, s *Store) int {
	t.Helper()
	var v int
	if err := s.pool.QueryRow(t.Context(), `SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMigrateFromEmpty: nodes starting at once on an empty schema migrate
// it once, to the current version, and a node starting later finds it
// current.
func TestMigrateFromEmpty(t *testing.T) {
	config, _ := testSchema(t)
	const nodes = 4
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = OpenConfig(context.Background(), config()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: OpenConfig: %v", i, err)
		}
		defer stores[i].Close()
	}
	s := stores[0]
	if v := schemaVersion(t, s); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	var rows int
	if err := s.pool.QueryRow(t.Context(), `SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("schema_version holds %d rows (%v), want 1", rows, err)
	}
	later := openNode(t, config)
	if v := schemaVersion(t, later); v != len(migrations) {
		t.Fatalf("schema version after a second open %d, want %d", v, len(migrations))
	}
	// The schema works: a write on one node is read on another.
	a := &store.Account{ID: newUUID(), Username: "alice", IdentityKey: []byte("ik"), Created: time.Now()}
	d := &store.Device{AccountID: a.ID, ID: 1, RegistrationID: 1, CredentialHash: []byte("h"), Created: time.Now()}
	if err := stores[1].CreateAccount(t.Context(), a, d, nil, &store.DeviceList{Version: 1, Signed: []byte("l")}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := later.AccountByUsername(t.Context(), "alice"); err != nil || got.ID != a.ID {
		t.Fatalf("AccountByUsername on another node = %v, %v", got, err)
	}
}

// TestRefuseNewerSchema: a schema a newer program made is left alone.
func TestRefuseNewerSchema(t *testing.T) {
	config, _ := testSchema(t)
	s := openNode(t, config)
	if _, err := s.pool.Exec(t.Context(), `UPDATE schema_version SET version = $1`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenConfig(t.Context(), config())
	if err == nil {
		s2.Close()
		t.Fatal("OpenConfig on a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("OpenConfig on a newer schema: %v, want ErrSchemaTooNew", err)
	}
	if v := schemaVersion(t, s); v != len(migrations)+1 {
		t.Fatalf("schema version %d after the refusal, want %d", v, len(migrations)+1)
	}
}

// TestOpenBadDSN: a malformed connection string is refused without
// echoing it (it may hold a password).
func TestOpenBadDSN(t *testing.T) {
	_, err := Open(t.Context(), "postgres://user:s3cret@[::1")
	if err == nil {
		t.Fatal("Open accepted a malformed DSN")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %q holds the password", err)
	}
}

// twoNodes opens two Stores (two pools, as two doorlessd nodes have) on
// one fresh schema.
func twoNodes(t *testing.T) [2]*Store {
	config, _ := testSchema(t)
	return [2]*Store{openNode(t, config), openNode(t, config)}
}

func register(t *testing.T, s *Store, username string, k *store.KeyUpload) *store.Device {
	t.Helper()
	id := newUUID()
	a := &store.Account{ID: id, Username: username, IdentityKey: []byte("ik-" + id), Created: time.Now()}
	d := &store.Device{AccountID: id, ID: 1, RegistrationID: 1, CredentialHash: []byte("hash-" + id), Created: time.Now()}
	if err := s.CreateAccount(t.Context(), a, d, k, &store.DeviceList{Version: 1, Signed: []byte("list-" + id)}, nil); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return d
}

func envelopeTo(from, to *store.Device, content string) *store.Send {
	return &store.Send{SourceAccount: from.AccountID, SourceDevice: from.ID, SendID: newUUID(), Envelopes: []store.Envelope{{
		ID: newUUID(), AccountID: to.AccountID, DeviceID: to.ID, Type: 1,
		SourceAccount: from.AccountID, SourceDevice: from.ID,
		ClientTimestamp: time.Now(), ServerTimestamp: time.Now(), Content: []byte(content),
	}}}
}

// TestTwoNodesTakeBundle: two nodes handing out one device's prekeys at
// once hand each one-time key out once.
func TestTwoNodesTakeBundle(t *testing.T) {
	n := twoNodes(t)
	const keys, takers = 40, 60
	k := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: []byte("spk"), Signature: []byte("sig")},
		LastResort:   &store.KyberPreKey{ID: 9999, PublicKey: []byte("lr"), Signature: []byte("sig")},
	}
	for i := range keys {
		k.PreKeys = append(k.PreKeys, store.PreKey{ID: uint32(i + 1), PublicKey: []byte("pk")})
		k.KyberPreKeys = append(k.KyberPreKeys, store.KyberPreKey{ID: uint32(i + 1), PublicKey: []byte("kpk"), Signature: []byte("sig")})
	}
	d := register(t, n[0], "alice", k)
	var mu sync.Mutex
	pre, kyber := map[uint32]int{}, map[uint32]int{}
	var noPre, lastResort int
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range takers {
		wg.Go(func() {
			<-start
			b, err := n[i%2].TakeBundle(t.Context(), d.AccountID, d.ID)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if b.PreKey == nil {
				noPre++
			} else {
				pre[b.PreKey.ID]++
			}
			if b.KyberLastResort {
				lastResort++
			} else {
				kyber[b.KyberPreKey.ID]++
			}
		})
	}
	close(start)
	wg.Wait()
	for id, c := range pre {
		if c != 1 {
			t.Errorf("prekey %d handed out %d times", id, c)
		}
	}
	for id, c := range kyber {
		if c != 1 {
			t.Errorf("Kyber prekey %d handed out %d times", id, c)
		}
	}
	if len(pre) != keys || noPre != takers-keys || len(kyber) != keys || lastResort != takers-keys {
		t.Errorf("handed out %d prekeys (%d without), %d Kyber prekeys (%d last resort); want %d of each and %d without",
			len(pre), noPre, len(kyber), lastResort, keys, takers-keys)
	}
}

// TestTwoNodesAppendEpoch: two sequencers on two nodes racing to append
// each epoch: exactly one appends each, the other gets ErrEpochConflict,
// and the log has no gap.
func TestTwoNodesAppendEpoch(t *testing.T) {
	n := twoNodes(t)
	const epochs = 10
	for e := range uint64(epochs) {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				ep := &store.Epoch{Number: e, Timestamp: int64(e), Changes: fmt.Appendf(nil, "node %d", i), Checkpoint: []byte("cp")}
				var idx kt.Index
				idx[0], idx[1] = byte(e), byte(i)
				errs[i] = n[i].AppendEpoch(t.Context(), ep, []kt.Entry{{Leaf: kt.Leaf{Index: idx}, Value: []byte("v")}}, nil)
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrEpochConflict):
				t.Fatalf("epoch %d, node %d: %v, want nil or ErrEpochConflict", e, i, err)
			}
		}
		if ok != 1 {
			t.Fatalf("epoch %d: %d nodes appended it, want 1 (%v)", e, ok, errs)
		}
	}
	heads, err := n[1].EpochHeads(t.Context())
	if err != nil || len(heads) != epochs {
		t.Fatalf("EpochHeads = %d epochs, %v; want %d", len(heads), err, epochs)
	}
	var leaves int
	for _, err := range n[0].TransparencyLeaves(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		leaves++
	}
	if leaves != epochs {
		t.Fatalf("%d entries stored, want the winners' %d", leaves, epochs)
	}
}

// TestTwoNodesNonceAndSendID: a legal request's nonce and a send id used
// on two nodes at once are recorded once.
func TestTwoNodesNonceAndSendID(t *testing.T) {
	n := twoNodes(t)
	from := register(t, n[0], "alice", nil)
	to := register(t, n[0], "bob", nil)
	for round := range 10 {
		var wg sync.WaitGroup
		legalErrs, sendErrs := make([]error, 2), make([]error, 2)
		nonce := fmt.Appendf(nil, "nonce %d", round)
		sn := envelopeTo(from, to, fmt.Sprint(round))
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				legalErrs[i] = n[i].AddLegalRequest(t.Context(), &store.LegalRequest{Request: []byte("r"), Salt: make([]byte, 32),
					Authority: "court", Nonce: nonce, Jurisdiction: "xx", Type: "t", Outcome: "accepted"})
			})
			wg.Go(func() {
				<-start
				c := *sn
				c.Envelopes = slices.Clone(sn.Envelopes)
				c.Envelopes[0].ID = newUUID()
				sendErrs[i] = n[i].Enqueue(t.Context(), &c, 1000)
			})
		}
		close(start)
		wg.Wait()
		if (legalErrs[0] == nil) == (legalErrs[1] == nil) {
			t.Fatalf("round %d: AddLegalRequest on two nodes: %v, %v; want one success", round, legalErrs[0], legalErrs[1])
		}
		for _, err := range legalErrs {
			if err != nil && !errors.Is(err, store.ErrNonceSeen) {
				t.Fatalf("round %d: AddLegalRequest: %v, want ErrNonceSeen", round, err)
			}
		}
		if (sendErrs[0] == nil) == (sendErrs[1] == nil) {
			t.Fatalf("round %d: Enqueue on two nodes: %v, %v; want one success", round, sendErrs[0], sendErrs[1])
		}
		for _, err := range sendErrs {
			if err != nil && !errors.Is(err, store.ErrDuplicate) {
				t.Fatalf("round %d: Enqueue: %v, want ErrDuplicate", round, err)
			}
		}
	}
	if q, err := n[1].QueueLen(t.Context(), to.AccountID, to.ID); err != nil || q != 10 {
		t.Fatalf("QueueLen = %d, %v; want 10", q, err)
	}
}

// TestTwoNodesQueue: senders on two nodes fill one device's queue while
// the device pages through it with "after", as a connected device does:
// it never skips an envelope (one committed later with a smaller seq
// would be skipped), and the queue never exceeds its limit.
func TestTwoNodesQueue(t *testing.T) {
	n := twoNodes(t)
	to := register(t, n[0], "bob", nil)
	const senders, sends = 8, 25
	const limit = senders*sends - 10 // some sends find the queue full
	from := make([]*store.Device, senders)
	for i := range from {
		from[i] = register(t, n[0], fmt.Sprint("sender", i), nil)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := map[string]bool{}
	full := 0
	for i := range senders {
		wg.Go(func() {
			for j := range sends {
				sn := envelopeTo(from[i], to, fmt.Sprintf("%d/%d", i, j))
				err := n[i%2].Enqueue(t.Context(), sn, limit)
				mu.Lock()
				switch {
				case err == nil:
					sent[sn.Envelopes[0].ID] = true
				case errors.Is(err, store.ErrQueueFull):
					full++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	seen := map[string]bool{}
	var after int64
	page := func() int {
		envs, err := n[1].Queue(t.Context(), to.AccountID, to.ID, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			if e.Seq <= after {
				t.Fatalf("Queue after %d returned seq %d", after, e.Seq)
			}
			after = e.Seq
			seen[e.ID] = true
		}
		return len(envs)
	}
	for done := false; !done; {
		select {
		case <-writersDone:
			done = true
		default:
			page()
		}
	}
	for page() > 0 {
	}
	if len(sent)+full != senders*sends || full != 10 {
		t.Errorf("%d sends landed and %d found the queue full; want %d and 10", len(sent), full, senders*sends-10)
	}
	for id := range sent {
		if !seen[id] {
			t.Errorf("envelope %s was skipped by a device paging with after", id)
		}
	}
	if q, err := n[0].QueueLen(t.Context(), to.AccountID, to.ID); err != nil || q != limit {
		t.Fatalf("QueueLen = %d, %v; want %d", q, err, limit)
	}
}

// TestTwoNodesLinkDevice: two nodes linking devices to one account at
// once with the same next version: one wins, the other conflicts, and the
// device ids the two nodes reserved differ.
func TestTwoNodesLinkDevice(t *testing.T) {
	n := twoNodes(t)
	d := register(t, n[0], "alice", nil)
	now := time.Now()
	for round := range 5 {
		toks := make([]*store.LinkToken, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				toks[i] = &store.LinkToken{TokenHash: fmt.Appendf(nil, "token %d %d", round, i), AccountID: d.AccountID, Expires: now.Add(time.Hour)}
				if err := n[i].CreateLinkToken(t.Context(), toks[i], now, 1000, 100); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if toks[0].DeviceID == toks[1].DeviceID {
			t.Fatalf("round %d: both nodes reserved device id %d", round, toks[0].DeviceID)
		}
		cur, err := n[0].DeviceList(t.Context(), d.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				nd := &store.Device{AccountID: d.AccountID, ID: toks[i].DeviceID, RegistrationID: 1, CredentialHash: []byte("h"), Created: now}
				errs[i] = n[i].LinkDevice(t.Context(), toks[i].TokenHash, nd, nil,
					&store.DeviceList{Version: cur.Version + 1, Signed: fmt.Appendf(nil, "list %d %d", round, i)}, nil)
			})
		}
		close(start)
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: LinkDevice on two nodes: %v, %v; want one success", round, errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, store.ErrVersionConflict) {
				t.Fatalf("round %d: LinkDevice: %v, want ErrVersionConflict", round, err)
			}
		}
	}
	ds, err := n[1].Devices(t.Context(), d.AccountID)
	if err != nil || len(ds) != 6 {
		t.Fatalf("Devices = %d, %v; want 6", len(ds), err)
	}
	ups, err := n[1].PendingUpdates(t.Context(), 100)
	if err != nil || len(ups) != 6 {
		t.Fatalf("%d pending updates (%v), want 6: one per list version", len(ups), err)
	}
}

// deadlockTracer counts the deadlocks (SQLSTATE 40P01) its connections'
// statements and batches meet, which the store retries out of sight.
type deadlockTracer struct{ n atomic.Int64 }

func (d *deadlockTracer) count(err error) {
	if pe := pgErr(err); pe != nil && pe.Code == "40P01" {
		d.n.Add(1)
	}
}

func (d *deadlockTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (d *deadlockTracer) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	d.count(data.Err)
}
func (d *deadlockTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (d *deadlockTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	d.count(data.Err)
}
func (d *deadlockTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestTwoNodesFanOut: multi-recipient sends on two nodes to overlapping
// devices, each send naming them in its own order (some twice), while an
// acker acknowledges what half of the devices get, several devices in one
// AckMany, as the server's acker does: no send or ack fails, none even
// deadlocks (sends, and the queue counter's trigger on acks, lock the
// devices in key order), and every device's queue counter matches the
// envelopes it holds.
func TestTwoNodesFanOut(t *testing.T) {
	config, _ := testSchema(t)
	tracer := &deadlockTracer{}
	traced := func() *pgxpool.Config {
		cfg := config()
		cfg.ConnConfig.Tracer = tracer
		return cfg
	}
	n := [2]*Store{openNode(t, traced), openNode(t, traced)}
	to := make([]*store.Device, 6)
	for i := range to {
		to[i] = register(t, n[0], fmt.Sprint("member", i), nil)
	}
	const senders, sends = 4, 15
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for j := range sends {
				sn := &store.Send{SendID: newUUID()}
				for k := range to {
					d := to[(i+j+k)%len(to)]
					if (i+j)%2 == 1 {
						d = to[len(to)-1-(i+j+k)%len(to)]
					}
					for range 1 + (j+k)%2 {
						sn.Envelopes = append(sn.Envelopes, store.Envelope{AccountID: d.AccountID, DeviceID: d.ID, Type: 6, Content: []byte("x")})
					}
				}
				if err := n[i%2].Enqueue(t.Context(), sn, 1000); err != nil {
					t.Errorf("sender %d, send %d: %v", i, j, err)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	acked := 0
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		var acks []store.AckRef
		for _, d := range []*store.Device{to[4], to[1], to[2]} {
			envs, err := n[1].Queue(t.Context(), d.AccountID, d.ID, 0, 5)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range envs {
				acks = append(acks, store.AckRef{AccountID: d.AccountID, DeviceID: d.ID, EnvelopeID: e.ID})
			}
		}
		k, err := n[1].AckMany(t.Context(), acks)
		if err != nil {
			t.Fatal(err)
		}
		acked += k
	}
	total := 0
	for i, d := range to {
		envs, err := n[0].Queue(t.Context(), d.AccountID, d.ID, 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		q, err := n[1].QueueLen(t.Context(), d.AccountID, d.ID)
		if err != nil || q != len(envs) {
			t.Errorf("member %d: QueueLen = %d, %v; holds %d envelopes", i, q, err, len(envs))
		}
		total += len(envs)
	}
	if d := tracer.n.Load(); d > 0 {
		t.Errorf("%d deadlocks (retried)", d)
	}
	// Each send gives every member one or two envelopes: 9 in all.
	if want := senders * sends * 9; total+acked != want {
		t.Errorf("%d envelopes queued and %d acknowledged, want %d in all", total, acked, want)
	}
}
