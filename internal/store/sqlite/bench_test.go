package sqlite

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
)

// Benchmarks of the write path (one fsync per commit) and the read path.
// The database goes in b.TempDir(): set TMPDIR to a directory on the disk
// the server will use, since fsync costs what that disk makes it cost.
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/store/sqlite/

// benchStore opens a store with a sender and n recipients.
func benchStore(b *testing.B, opt options, n int) (*Store, *store.Device, []*store.Device) {
	b.Helper()
	s, err := open(filepath.Join(b.TempDir(), "doorless.db"), opt)
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

var defaults = options{maxBatch: maxBatch, secureDelete: true}

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

// reportCommits reports how many operations shared a commit.
func reportCommits(b *testing.B, s *Store, commits0 int64) {
	if n := s.commits.Load() - commits0; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "ops/commit")
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
// every Enqueue waits for its own commit, so each costs a full fsync.
func BenchmarkEnqueueSerial(b *testing.B) {
	s, from, to := benchStore(b, defaults, 1)
	c0 := s.commits.Load()
	b.ResetTimer()
	for range b.N {
		if err := s.Enqueue(b.Context(), benchSend(from, to[0]), 1<<30); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCommits(b, s, c0)
}

// BenchmarkEnqueueParallel is many senders enqueueing at once, with group
// commit on and, for comparison, off (one transaction, one fsync, per
// Enqueue).
func BenchmarkEnqueueParallel(b *testing.B) {
	for _, group := range []bool{true, false} {
		for _, n := range []int{4, 32} {
			b.Run(fmt.Sprintf("group=%v/goroutines=%d", group, n), func(b *testing.B) {
				opt := defaults
				if !group {
					opt.maxBatch = 1
				}
				s, from, to := benchStore(b, opt, 16)
				c0 := s.commits.Load()
				b.ResetTimer()
				parallel(b, n, func(i int) error {
					return s.Enqueue(b.Context(), benchSend(from, to[i%len(to)]), 1<<30)
				})
				b.StopTimer()
				reportCommits(b, s, c0)
			})
		}
	}
}

// BenchmarkAckParallel is many devices acknowledging at once: Ack goes
// through the same writer, so it is group-committed too. With
// secure_delete=false, for its cost.
func BenchmarkAckParallel(b *testing.B) {
	for _, secure := range []bool{true, false} {
		b.Run(fmt.Sprintf("secure_delete=%v", secure), func(b *testing.B) {
			opt := defaults
			opt.secureDelete = secure
			s, from, to := benchStore(b, opt, 1)
			ids := make([]string, b.N)
			const chunk = 500
			for i := 0; i < b.N; i += chunk {
				// Fill the queue in large transactions, outside the timer.
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
			c0 := s.commits.Load()
			b.ResetTimer()
			parallel(b, 32, func(i int) error {
				return s.Ack(b.Context(), to[0].AccountID, to[0].ID, ids[i-1])
			})
			b.StopTimer()
			reportCommits(b, s, c0)
		})
	}
}

// BenchmarkQueueParallel reads a device's first 50 envelopes from 8
// goroutines, with a pool of 1 and of 4 read connections.
func BenchmarkQueueParallel(b *testing.B) {
	for _, conns := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("readers=%d", conns), func(b *testing.B) {
			s, from, to := benchStore(b, defaults, 4)
			for i := range 100 {
				for _, d := range to {
					if err := s.Enqueue(b.Context(), benchSend(from, d), 1<<30); err != nil {
						b.Fatal(i, err)
					}
				}
			}
			s.rdb.SetMaxOpenConns(conns)
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
// device at once.
func BenchmarkTakeBundleParallel(b *testing.B) {
	s, _, to := benchStore(b, defaults, 1)
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
	c0 := s.commits.Load()
	b.ResetTimer()
	parallel(b, 32, func(int) error {
		bd, err := s.TakeBundle(b.Context(), d.AccountID, d.ID)
		if err == nil && bd.PreKey == nil {
			err = fmt.Errorf("no prekey left")
		}
		return err
	})
	b.StopTimer()
	reportCommits(b, s, c0)
}

// BenchmarkEnqueueFanOut is a group send: one Enqueue of an envelope for
// each of 999 recipients (613 bytes each, a sealed sender v2 message's
// share), as PUT /v1/messages/multi-recipient makes it.
func BenchmarkEnqueueFanOut(b *testing.B) {
	s, _, to := benchStore(b, defaults, 999)
	b.ResetTimer()
	for range b.N {
		sn := &store.Send{Recipient: "", SendID: newUUID()}
		for _, d := range to {
			sn.Envelopes = append(sn.Envelopes, store.Envelope{AccountID: d.AccountID, DeviceID: d.ID, Type: 6,
				ClientTimestamp: time.Now(), Content: make([]byte, 613), Franking: make([]byte, 32)})
		}
		if err := s.Enqueue(b.Context(), sn, 1<<30); err != nil {
			b.Fatal(err)
		}
	}
}
