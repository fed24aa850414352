package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/doorless/doorless/internal/store"
)

// maxAckBatch bounds the acks one store write applies.
const maxAckBatch = 4096

// acker applies the acks of every WebSocket of this server. The acks that
// arrive while one store write commits all go in the next, whichever
// connection they came on, so that a thousand devices acknowledging one
// group message cost a few writes, not a thousand. It runs a goroutine
// only while there are acks to apply.
//
// Each ack deletes only its own device's envelope; an unknown id (acked
// already, expired, or never the device's) is skipped. The writes do not
// follow any request's context: an ack read before its connection ended
// still counts, and the connection waits for it (wsConn.acks).
type acker struct {
	s       *Server
	mu      sync.Mutex
	pending []pendingAck
	running bool
}

type pendingAck struct {
	c  *wsConn
	id string
}

// add queues c's ack of envelope id; c.ackApplied is called once it is
// applied or has failed.
func (a *acker) add(c *wsConn, id string) {
	a.mu.Lock()
	a.pending = append(a.pending, pendingAck{c, id})
	start := !a.running
	a.running = true
	a.mu.Unlock()
	if start {
		go a.run()
	}
}

// run applies what is pending, a batch at a time, until nothing is.
func (a *acker) run() {
	for {
		a.mu.Lock()
		batch := a.pending
		a.pending = nil
		if len(batch) == 0 {
			a.running = false
		}
		a.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for len(batch) > 0 {
			n := min(len(batch), maxAckBatch)
			a.apply(batch[:n])
			batch = batch[n:]
		}
	}
}

// apply applies one batch in one store write. Should the write fail, every
// connection with an ack in it ends: its acks stay unapplied, and their
// envelopes are delivered again on the next connection.
func (a *acker) apply(batch []pendingAck) {
	s := a.s
	refs := make([]store.AckRef, len(batch))
	for i, p := range batch {
		refs[i] = store.AckRef{AccountID: p.c.account, DeviceID: p.c.device, EnvelopeID: p.id}
	}
	n, err := s.st.AckMany(context.Background(), refs)
	if err == nil {
		s.met.acked.Add(float64(n))
	}
	now := s.now()
	for _, p := range batch {
		if err != nil {
			p.c.cancel(fmt.Errorf("server: ack: %w", err))
		} else if q, ok := p.c.queued.LoadAndDelete(p.id); ok {
			s.met.since(s.met.latAcked, q.(time.Time), now)
		}
		p.c.ackApplied(p.id)
	}
}
