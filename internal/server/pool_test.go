package server

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestCallPool: do returns once its call has run, with its effects; the
// pool runs callPoolSize calls at once.
func TestCallPool(t *testing.T) {
	p := newCallPool()
	defer p.close()
	x := 0
	p.do(func() { x = 42 })
	if x != 42 {
		t.Fatalf("do returned before its call ran (x = %d)", x)
	}

	var running atomic.Int32
	all := make(chan struct{})
	var wg sync.WaitGroup
	for range callPoolSize {
		wg.Go(func() {
			p.do(func() {
				if running.Add(1) == callPoolSize {
					close(all)
				}
				<-all // every call waits for the others: they must run at once
			})
		})
	}
	wg.Wait()
}
