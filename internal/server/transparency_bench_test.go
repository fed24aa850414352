package server

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/sqlite"
)

// BenchmarkPublishAccounts measures the sequencer publishing 1,000 new
// accounts (1,000 labels: their usernames' entries) in one epoch over
// SQLite: reading the pending updates, the VRF, the trees, the store's
// write. One op is one such epoch.
func BenchmarkPublishAccounts(b *testing.B) {
	const n = 1000
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "doorless.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv, err := New(Config{Store: st, Transparency: testTransparency(b)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := srv.startSequencer(ctx)
	defer func() { cancel(); <-done }()
	id := newIdentity(b)
	list := &store.DeviceList{Version: 1, Signed: signList(b, id, 1, 1)}
	round := 0
	for b.Loop() {
		b.StopTimer()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				a := &store.Account{ID: api.NewUUID(), Username: fmt.Sprintf("u%d_%d", round, i), IdentityKey: id.PublicKey().Bytes(), Created: time.Now()}
				d := &store.Device{AccountID: a.ID, ID: 1, RegistrationID: 1, CredentialHash: make([]byte, 32), Created: time.Now()}
				if err := st.CreateAccount(ctx, a, d, nil, list, nil); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		round++
		b.StartTimer()
		if err := srv.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/label")
}
