package postgres

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

// Benchmarks of the write path and the read path, as
// internal/store/sqlite's, against the database DOORLESS_TEST_POSTGRES
// names (each in a fresh schema). fsync costs what the database's disk
// makes it cost; "ops/sync" is how many operations shared a WAL sync, read
// from pg_stat_wal (server-wide: run nothing else against the server).
//
//	DOORLESS_TEST_POSTGRES=postgres://... go test -run '^$' -bench . -benchtime 2s ./internal/store/postgres/

// benchStore opens a store, with a pool of at most conns connections (0:
// pgx's default), a sender and n recipients.
func benchStore(b *testing.B, conns int32, n int) (*Store, *store.Device, []*store.Device) {
	b.Helper()
	config, _ := testSchema(b)
	cfg := config()
	if conns > 0 {
		cfg.MaxConns = conns
	}
	cfg.ConnConfig.DialFunc = countWrites
	s, err := OpenConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	from := benchRegister(b, s, "sender")
	to := make([]*store.Device, n)
	for i := range to {
		to[i] = benchRegister(b, s, fmt.Sprint("recipient", i))
	}
	return s, from, to
}

func benchRegister(b *testing.B, s *Store, username string) *store.Device {
	b.Helper()
	id := newUUID()
	a := &store.Account{ID: id, Username: username, IdentityKey: make([]byte, 33), Created: time.Now()}
	d := &store.Device{AccountID: id, ID: 1, RegistrationID: 1, CredentialHash: make([]byte, 32), Created: time.Now()}
	if err := s.CreateAccount(b.Context(), a, d, nil, &store.DeviceList{Version: 1, Signed: []byte("list")}, nil); err != nil {
		b.Fatal(err)
	}
	return d
}

// benchSend is a send of one 1 KiB envelope.
func benchSend(from, to *store.Device) *store.Send {
	sn := envelopeTo(from, to, "")
	sn.Envelopes[0].Content = make([]byte, 1024)
	return sn
}

// writes counts the writes on the benchmarks' connections to the server.
// pgx writes a statement, or a batch, at once and then waits for the
// results, so the count of an operation is its round trips (a batch or
// statement larger than a write buffer would count more than once).
var writes atomic.Int64

type countingConn struct{ net.Conn }

func (c countingConn) Write(p []byte) (int, error) {
	writes.Add(1)
	return c.Conn.Write(p)
}

// countWrites dials as pgconn does, and counts the connection's writes.
func countWrites(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{KeepAlive: 5 * time.Minute}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return countingConn{conn}, nil
}

// reportWrites reports the writes per operation since writes0.
func reportWrites(b *testing.B, writes0 int64) {
	b.ReportMetric(float64(writes.Load()-writes0)/float64(b.N), "writes/op")
}

// walSyncs returns the server's WAL syncs so far (pg_stat_wal).
func walSyncs(b *testing.B, pool *pgxpool.Pool) int64 {
	b.Helper()
	var n int64
	if err := pool.QueryRow(b.Context(), `SELECT wal_sync FROM pg_stat_wal`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// reportSyncs reports how many operations shared a WAL sync.
func reportSyncs(b *testing.B, s *Store, syncs0 int64) {
	if n := walSyncs(b, s.pool) - syncs0; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "ops/sync")
	}
}

// parallel runs fn from n goroutines in all (n a multiple of GOMAXPROCS).
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fn(int(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEnqueueSerial is one sender enqueueing one envelope at a time:
// every Enqueue waits for its own commit.
func BenchmarkEnqueueSerial(b *testing.B) {
	s, from, to := benchStore(b, 0, 1)
	w0 := walSyncs(b, s.pool)
	b.ResetTimer()
	writes0 := writes.Load()
	for range b.N {
		if err := s.Enqueue(b.Context(), benchSend(from, to[0]), 1<<30); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportWrites(b, writes0)
	reportSyncs(b, s, w0)
}

// BenchmarkEnqueueParallel is many senders enqueueing at once, each in its
// own transaction on its own connection: PostgreSQL's group commit shares
// WAL syncs among them.
func BenchmarkEnqueueParallel(b *testing.B) {
	for _, n := range []int{4, 32} {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			s, from, to := benchStore(b, int32(n), 16)
			w0 := walSyncs(b, s.pool)
			b.ResetTimer()
			parallel(b, n, func(i int) error {
				return s.Enqueue(b.Context(), benchSend(from, to[i%len(to)]), 1<<30)
			})
			b.StopTimer()
			reportSyncs(b, s, w0)
		})
	}
}

// BenchmarkAckParallel is many devices acknowledging at once (here all one
// device's envelopes: the queued counter's row is the point of contention).
func BenchmarkAckParallel(b *testing.B) {
	s, from, to := benchStore(b, 32, 1)
	ids := make([]string, b.N)
	const chunk = 500
	for i := 0; i < b.N; i += chunk {
		errs := make(chan error, chunk)
		for j := i; j < min(i+chunk, b.N); j++ {
			sn := benchSend(from, to[0])
			ids[j] = sn.Envelopes[0].ID
			go func() { errs <- s.Enqueue(b.Context(), sn, 1<<30) }()
		}
		for j := i; j < min(i+chunk, b.N); j++ {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	w0 := walSyncs(b, s.pool)
	b.ResetTimer()
	parallel(b, 32, func(i int) error {
		return s.Ack(b.Context(), to[0].AccountID, to[0].ID, ids[i-1])
	})
	b.StopTimer()
	reportSyncs(b, s, w0)
}

// BenchmarkQueueParallel reads a device's first 50 envelopes from 8
// goroutines, with a pool of 1, 2 and 4 connections.
func BenchmarkQueueParallel(b *testing.B) {
	for _, conns := range []int32{1, 2, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			s, from, to := benchStore(b, conns, 4)
			for i := range 100 {
				for _, d := range to {
					if err := s.Enqueue(b.Context(), benchSend(from, d), 1<<30); err != nil {
						b.Fatal(i, err)
					}
				}
			}
			b.ResetTimer()
			parallel(b, 8, func(i int) error {
				d := to[i%len(to)]
				envs, err := s.Queue(b.Context(), d.AccountID, d.ID, 0, 50)
				if err == nil && len(envs) != 50 {
					err = fmt.Errorf("%d envelopes", len(envs))
				}
				return err
			})
		})
	}
}

// BenchmarkTakeBundleParallel is many senders fetching bundles of one
// device at once: SKIP LOCKED lets them take different prekeys without
// waiting for one another.
func BenchmarkTakeBundleParallel(b *testing.B) {
	s, _, to := benchStore(b, 32, 1)
	d := to[0]
	k := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: make([]byte, 33), Signature: make([]byte, 64)},
		LastResort:   &store.KyberPreKey{ID: 1, PublicKey: make([]byte, 1569), Signature: make([]byte, 64)},
	}
	for i := range b.N {
		k.PreKeys = append(k.PreKeys, store.PreKey{ID: uint32(i), PublicKey: make([]byte, 33)})
	}
	if err := s.StoreKeys(b.Context(), d.AccountID, d.ID, k); err != nil {
		b.Fatal(err)
	}
	w0 := walSyncs(b, s.pool)
	b.ResetTimer()
	writes0 := writes.Load()
	parallel(b, 32, func(int) error {
		bd, err := s.TakeBundle(b.Context(), d.AccountID, d.ID)
		if err == nil && bd.PreKey == nil {
			err = fmt.Errorf("no prekey left")
		}
		return err
	})
	b.StopTimer()
	reportWrites(b, writes0)
	reportSyncs(b, s, w0)
}

// BenchmarkEnqueueFanOut is one Enqueue at a time of a send to 1 device
// and of a sealed multi-recipient send to 999 devices (one envelope of
// 1 KiB each, as a group send of sealed sender v2 makes): what a send
// costs in round trips and in work per envelope inside one transaction.
// With commit=async (synchronous_commit off for the store's connections)
// no commit waits for its WAL flush, which leaves out the disk's share.
func BenchmarkEnqueueFanOut(b *testing.B) {
	for _, commit := range []string{"durable", "async"} {
		for _, n := range []int{1, 999} {
			b.Run(fmt.Sprintf("commit=%s/devices=%d", commit, n), func(b *testing.B) {
				s, _, to := benchStore(b, 0, n)
				if commit == "async" {
					s = benchAsync(b, s)
				}
				b.ResetTimer()
				writes0 := writes.Load()
				for range b.N {
					sn := &store.Send{SendID: newUUID(), Envelopes: make([]store.Envelope, n)}
					for i, d := range to {
						sn.Envelopes[i] = store.Envelope{AccountID: d.AccountID, DeviceID: d.ID, Type: 6, Content: make([]byte, 1024)}
					}
					if err := s.Enqueue(b.Context(), sn, 1<<30); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				reportWrites(b, writes0)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/envelope")
			})
		}
	}
}

// benchAsync returns a store over s's schema whose connections commit
// with synchronous_commit off; s is closed.
func benchAsync(b *testing.B, s *Store) *Store {
	b.Helper()
	cfg := s.pool.Config()
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	s.Close()
	a, err := OpenConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a
}
