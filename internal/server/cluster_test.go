package server

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
)

// node starts a second server over e's store with broker br, as another
// node of a cluster; it stops before e's store closes.
func (e *env) node(br broker.Broker, srvMods ...func(*Server)) *env {
	e.t.Helper()
	srv, err := New(Config{Store: e.st, Broker: br, IPRate: RateLimit{Rate: -1}, AccountRate: RateLimit{Rate: -1}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range srvMods {
		m(srv)
	}
	hs := httptest.NewServer(srv.Handler())
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			e.t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return &env{t: e.t, st: e.st, srv: srv, hs: hs}
}

// TestNATSNodes: two servers over one store, each with its own NATS
// broker: a message accepted by one node reaches the device's WebSocket on
// the other, and a connection on one node displaces the device's
// connection on the other. The servers never ping, so only the broker can
// wake a connection.
func TestNATSNodes(t *testing.T) {
	url := os.Getenv("DOORLESS_TEST_NATS")
	if url == "" {
		t.Skip("DOORLESS_TEST_NATS is not set (e.g. nats://127.0.0.1:4222): skipping the two-node test")
	}
	prefix := "doorlesstest.server." + rand.Text()
	dialBroker := func() broker.Broker {
		b, err := broker.DialNATS(broker.NATSConfig{URL: url, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	noPing := func(s *Server) { s.pingInterval = time.Hour }
	a := newEnv(t, func(c *Config) { c.Broker = dialBroker() }, noPing)
	b := a.node(dialBroker(), noPing)
	alice := a.register("alice", 20, 20)
	bob := a.register("bob", 20, 20)

	onB := b.dial(bob)
	readType(t, onB, api.FrameQueueEmpty)
	a.sendOK(alice, bob, "accepted by a")
	f := readType(t, onB, api.FrameEnvelope)
	if string(f.Envelope.Content) != "accepted by a" {
		t.Fatalf("got %q", f.Envelope.Content)
	}
	ack(t, onB, f.Envelope.ID)

	onA := a.dial(bob)
	// The ack may not have landed before the new connection read the
	// queue: then the envelope comes again, and nothing else.
	if g := read(t, onA); g.Type == api.FrameEnvelope && g.Envelope.ID == f.Envelope.ID {
		ack(t, onA, g.Envelope.ID)
		readType(t, onA, api.FrameQueueEmpty)
	} else if g.Type != api.FrameQueueEmpty {
		t.Fatalf("frame %+v, want queue_empty", g)
	}
	if err := readClose(onB); websocket.CloseStatus(err) != api.CloseDisplaced {
		t.Fatalf("the connection on b ended with %v, want displaced (%d)", err, api.CloseDisplaced)
	}
	b.sendOK(alice, bob, "accepted by b")
	if f := readType(t, onA, api.FrameEnvelope); string(f.Envelope.Content) != "accepted by b" {
		t.Fatalf("got %q", f.Envelope.Content)
	}
}
