package server

import "sync"

// callPoolSize is how many goroutines run WebSocket store calls.
const callPoolSize = 16

// callPool runs calls on a few long-lived goroutines and waits for them.
// A goroutine's stack keeps the size of its deepest call (until a garbage
// collection shrinks it, and the memory goes back to the system later
// still), and a store call goes deep, through database/sql into SQLite; so
// the goroutines every WebSocket keeps make their store calls here, and
// stay small. The goroutines start with the first call.
type callPool struct {
	calls chan func()
	start sync.Once
	stop  sync.Once
}

func newCallPool() *callPool {
	return &callPool{calls: make(chan func())}
}

// do runs fn on one of the pool's goroutines and returns when it has
// returned. fn must not call do.
func (p *callPool) do(fn func()) {
	p.start.Do(func() {
		for range callPoolSize {
			go func() {
				for fn := range p.calls {
					fn()
				}
			}()
		}
	})
	done := make(chan struct{})
	p.calls <- func() {
		defer close(done)
		fn()
	}
	<-done
}

// close ends the pool's goroutines once no call can come any more.
func (p *callPool) close() {
	p.stop.Do(func() { close(p.calls) })
}
