package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/coder/websocket"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
)

func TestSendAndDeliver(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)

	for i := range 3 {
		e.sendOK(alice, bob, fmt.Sprintf("m%d", i))
	}
	c := e.dial(bob)
	for i := range 3 {
		f := readType(t, c, api.FrameEnvelope)
		env := f.Envelope
		if string(env.Content) != fmt.Sprintf("m%d", i) || env.SourceUsername != "alice" || env.SourceAccount != alice.id || env.SourceDevice != 1 {
			t.Fatalf("envelope %d: %+v", i, env)
		}
		ack(t, c, env.ID)
	}
	readType(t, c, api.FrameQueueEmpty)

	e.sendOK(alice, bob, "live")
	f := readType(t, c, api.FrameEnvelope)
	if string(f.Envelope.Content) != "live" {
		t.Fatalf("live envelope %+v", f.Envelope)
	}
	ack(t, c, f.Envelope.ID)
	c.Close(1000, "")

	// Everything acked: the queue is empty.
	c = e.dial(bob)
	readType(t, c, api.FrameQueueEmpty)
	n, err := e.st.QueueLen(context.Background(), bob.id, bob.device)
	if err != nil || n != 0 {
		t.Fatalf("queue len %d, %v", n, err)
	}
}

func TestRedeliverUnacked(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	for _, m := range []string{"a", "b", "c"} {
		e.sendOK(alice, bob, m)
	}
	c := e.dial(bob)
	var ids []string
	for range 3 {
		ids = append(ids, readType(t, c, api.FrameEnvelope).Envelope.ID)
	}
	readType(t, c, api.FrameQueueEmpty)
	ack(t, c, ids[1])
	e.sendOK(alice, bob, "d") // a sync point: the ack was read before
	readType(t, c, api.FrameEnvelope)
	c.Close(websocket.StatusNormalClosure, "")

	c = e.dial(bob)
	for i, want := range []string{"a", "c", "d"} {
		f := readType(t, c, api.FrameEnvelope)
		if string(f.Envelope.Content) != want {
			t.Fatalf("redelivery %d: %q, want %q", i, f.Envelope.Content, want)
		}
		if i < 2 && f.Envelope.ID != ids[i*2] {
			t.Fatalf("redelivered envelope has a new id")
		}
	}
	readType(t, c, api.FrameQueueEmpty)
}

// TestOfflineThenOnline queues more than a window while the device is away,
// then takes it all in order, with acks, and live messages after.
func TestOfflineThenOnline(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	const n = sendWindow*2 + 7
	for i := range n {
		e.sendOK(alice, bob, fmt.Sprint(i))
	}
	c := e.dial(bob)
	for i := range n {
		f := read(t, c)
		if f.Type != api.FrameEnvelope || string(f.Envelope.Content) != fmt.Sprint(i) {
			t.Fatalf("frame %d: %+v", i, f)
		}
		ack(t, c, f.Envelope.ID)
	}
	readType(t, c, api.FrameQueueEmpty)
	e.sendOK(alice, bob, "live")
	if f := readType(t, c, api.FrameEnvelope); string(f.Envelope.Content) != "live" {
		t.Fatalf("live: %+v", f.Envelope)
	}
}

// TestWindow: without acks, the server stops at sendWindow envelopes; each
// ack lets one more through. A refill frame, which the writer sends after any
// envelope it would have sent first, shows that nothing else went out.
func TestWindow(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", api.RefillThreshold, api.RefillThreshold)
	for i := range sendWindow + 2 {
		e.sendOK(alice, bob, fmt.Sprint(i))
	}
	c := e.dial(bob)
	var ids []string
	for range sendWindow {
		ids = append(ids, readType(t, c, api.FrameEnvelope).Envelope.ID)
	}
	e.sendOK(alice, bob, "later")
	e.bundle(alice, "/v1/keys/bob/1") // below the threshold: refill
	readType(t, c, api.FrameRefill)

	ack(t, c, ids[0])
	if f := readType(t, c, api.FrameEnvelope); string(f.Envelope.Content) != fmt.Sprint(sendWindow) {
		t.Fatalf("after one ack: %q", f.Envelope.Content)
	}
	e.bundle(alice, "/v1/keys/bob/1")
	readType(t, c, api.FrameRefill)
	for _, id := range ids[1:] {
		ack(t, c, id)
	}
	for _, want := range []string{fmt.Sprint(sendWindow + 1), "later"} {
		if f := readType(t, c, api.FrameEnvelope); string(f.Envelope.Content) != want {
			t.Fatalf("got %q, want %q", f.Envelope.Content, want)
		}
	}
	readType(t, c, api.FrameQueueEmpty)
}

// pageStore records the largest page the WebSocket asks the store for.
type pageStore struct {
	store.Store
	mu      sync.Mutex
	maxPage int
}

func (s *pageStore) Queue(ctx context.Context, accountID string, deviceID uint32, after int64, limit int) ([]store.Envelope, error) {
	s.mu.Lock()
	s.maxPage = max(s.maxPage, limit)
	s.mu.Unlock()
	return s.Store.Queue(ctx, accountID, deviceID, after, limit)
}

// TestQueuePages: a connection fills its window of sendWindow envelopes
// from the store a page of queuePage at a time, never the whole window at
// once.
func TestQueuePages(t *testing.T) {
	ps := &pageStore{}
	e := newEnv(t, func(c *Config) { ps.Store = c.Store; c.Store = ps })
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 20, 20)
	for i := range sendWindow + 1 {
		e.sendOK(alice, bob, fmt.Sprint(i))
	}
	c := e.dial(bob)
	var ids []string
	for i := range sendWindow {
		f := readType(t, c, api.FrameEnvelope)
		if string(f.Envelope.Content) != fmt.Sprint(i) {
			t.Fatalf("envelope %d: %q", i, f.Envelope.Content)
		}
		ids = append(ids, f.Envelope.ID)
	}
	for _, id := range ids {
		ack(t, c, id)
	}
	if f := readType(t, c, api.FrameEnvelope); string(f.Envelope.Content) != fmt.Sprint(sendWindow) {
		t.Fatalf("after the window: %q", f.Envelope.Content)
	}
	readType(t, c, api.FrameQueueEmpty)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.maxPage > queuePage {
		t.Fatalf("Queue asked for %d envelopes at once, want at most %d", ps.maxPage, queuePage)
	}
}

func TestQueueEmptyOnce(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	c := e.dial(bob)
	readType(t, c, api.FrameQueueEmpty)
	for i := range 3 {
		e.sendOK(alice, bob, fmt.Sprint(i))
		f := readType(t, c, api.FrameEnvelope)
		ack(t, c, f.Envelope.ID)
	}
}

func TestDisplace(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "first")
	c1 := e.dial(bob)
	readType(t, c1, api.FrameEnvelope)
	readType(t, c1, api.FrameQueueEmpty)

	c2 := e.dial(bob)
	if err := readClose(c1); websocket.CloseStatus(err) != api.CloseDisplaced {
		t.Fatalf("first connection: %v, want close %d", err, api.CloseDisplaced)
	}
	// The unacked envelope comes again on the new connection.
	f := readType(t, c2, api.FrameEnvelope)
	if string(f.Envelope.Content) != "first" {
		t.Fatalf("%+v", f.Envelope)
	}
	ack(t, c2, f.Envelope.ID)
	readType(t, c2, api.FrameQueueEmpty)
	e.sendOK(alice, bob, "second")
	readType(t, c2, api.FrameEnvelope)
}

// TestAckOthers: an ack for another device's envelope, or an unknown one,
// deletes nothing and is otherwise ignored.
func TestAckOthers(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "for bob")
	cb := e.dial(bob)
	bobs := readType(t, cb, api.FrameEnvelope).Envelope.ID
	cb.Close(websocket.StatusNormalClosure, "")

	ca := e.dial(alice)
	readType(t, ca, api.FrameQueueEmpty)
	ack(t, ca, bobs)
	ack(t, ca, api.NewUUID())
	e.sendOK(bob, alice, "still open")
	if f := readType(t, ca, api.FrameEnvelope); string(f.Envelope.Content) != "still open" {
		t.Fatalf("%+v", f)
	}
	if e.queueLen(bob) != 1 {
		t.Fatal("another device's ack deleted bob's envelope")
	}
	// Nor can another device read bob's queue: alice's socket never
	// carried it, and bob still gets it.
	cb = e.dial(bob)
	if f := readType(t, cb, api.FrameEnvelope); f.Envelope.ID != bobs {
		t.Fatalf("%+v", f)
	}
}

func TestBadFrames(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 20, 20)
	for name, tt := range map[string]struct {
		typ   websocket.MessageType
		frame string
		code  websocket.StatusCode
	}{
		"garbage":         {websocket.MessageText, "hello", websocket.StatusUnsupportedData},
		"binary":          {websocket.MessageBinary, `{"type":"ack","id":"` + api.NewUUID() + `"}`, websocket.StatusUnsupportedData},
		"server frame":    {websocket.MessageText, `{"type":"queue_empty"}`, websocket.StatusUnsupportedData},
		"ack without id":  {websocket.MessageText, `{"type":"ack"}`, websocket.StatusUnsupportedData},
		"unknown field":   {websocket.MessageText, `{"type":"ack","id":"` + api.NewUUID() + `","x":1}`, websocket.StatusUnsupportedData},
		"too big":         {websocket.MessageText, `{"type":"ack","id":"` + strings.Repeat(" ", api.MaxClientFrameSize) + `"}`, websocket.StatusMessageTooBig},
		"trailing frames": {websocket.MessageText, `{"type":"ack","id":"` + api.NewUUID() + `"}{}`, websocket.StatusUnsupportedData},
	} {
		t.Run(name, func(t *testing.T) {
			e.t = t
			c := e.dial(bob)
			readType(t, c, api.FrameQueueEmpty)
			if err := c.Write(context.Background(), tt.typ, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			if err := readClose(c); websocket.CloseStatus(err) != tt.code {
				t.Fatalf("%v, want close %d", err, tt.code)
			}
		})
	}
}

func TestWebSocketUnauthenticated(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 20, 20)
	url := "ws" + strings.TrimPrefix(e.hs.URL, "http") + api.PathWebSocket
	for _, h := range []http.Header{nil, {"Authorization": {(&user{id: bob.id, device: 1, password: "nope"}).auth()}}} {
		_, resp, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{HTTPHeader: h})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial: %v, %v", err, resp)
		}
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "unacked")
	c := e.dial(bob)
	readType(t, c, api.FrameEnvelope)

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	if err := readClose(c); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("websocket: %v, want going away", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.queueLen(bob) != 1 {
		t.Fatal("the unacked envelope did not stay queued")
	}
	e.fails(e.do(alice, "GET", api.PathDevices, nil), 503, api.CodeUnavailable)
}

// blockingStore holds Enqueue until released.
type blockingStore struct {
	store.Store
	entered, release chan struct{}
}

func (s *blockingStore) Enqueue(ctx context.Context, send *store.Send, maxQueue int) error {
	close(s.entered)
	<-s.release
	return s.Store.Enqueue(ctx, send, maxQueue)
}

// TestShutdownWaits: Shutdown refuses new requests at once, and returns
// only when the requests in flight have been answered.
func TestShutdownWaits(t *testing.T) {
	bs := &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, func(c *Config) { bs.Store = c.Store; c.Store = bs })
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)

	sent := make(chan *http.Response)
	go func() {
		req, _ := http.NewRequest("PUT", e.hs.URL+"/v1/messages/bob", bodyReader(t, newSend(api.NewUUID(), 1,
			api.OutgoingMessage{DeviceID: 1, RegistrationID: bob.regID, Type: api.EnvelopeWhisper, Content: []byte("x")})))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", alice.auth())
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Error(err)
		}
		sent <- resp
	}()
	<-bs.entered
	done := make(chan error)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	for {
		// Until Shutdown has begun, requests still succeed.
		resp := e.do(alice, "GET", api.PathDevices, nil)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(bs.release)
	resp := <-sent
	if resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the request in flight: %v", resp)
	}
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.queueLen(bob) != 1 {
		t.Fatal("the request in flight was not completed")
	}
}

// closeReasons makes the server report why each WebSocket ends, on the
// returned channel, and shortens its timers.
func closeReasons(ch chan string) func(*Server) {
	return func(s *Server) {
		s.onWSClose = func(reason string) { ch <- reason }
		s.pingInterval = 20 * time.Millisecond
		s.pongTimeout = 50 * time.Millisecond
		s.writeTimeout = 50 * time.Millisecond
	}
}

// TestDeadPeer: a client that stops answering pings is dropped, and what it
// did not acknowledge stays queued.
func TestDeadPeer(t *testing.T) {
	reasons := make(chan string, 4)
	e := newEnv(t, nil, closeReasons(reasons))
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "unacked")
	c := e.dial(bob)
	readType(t, c, api.FrameEnvelope)
	readType(t, c, api.FrameQueueEmpty)
	// No more reads: the client's pongs stop.
	if r := <-reasons; r != "no_pong" {
		t.Fatalf("closed for %q, want no_pong", r)
	}
	if e.queueLen(bob) != 1 {
		t.Fatal("the unacked envelope was lost")
	}
}

// TestSlowClient: a client that does not take its frames is disconnected,
// and loses nothing.
func TestSlowClient(t *testing.T) {
	reasons := make(chan string, 4)
	e := newEnv(t, nil, closeReasons(reasons), func(s *Server) { s.pingInterval = time.Hour })
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 20, 20)
	// More than the kernel buffers between the two (a 4 MiB send buffer
	// at most here; the client's receive buffer is made tiny).
	const n = 32
	content := make([]byte, DefaultMaxEnvelope)
	for range n {
		err := e.st.Enqueue(context.Background(), &store.Send{
			SourceAccount: alice.id, SourceDevice: 1, SendID: api.NewUUID(),
			Envelopes: []store.Envelope{{
				ID: api.NewUUID(), AccountID: bob.id, DeviceID: 1, Type: api.EnvelopeWhisper,
				SourceAccount: alice.id, SourceDevice: 1, ClientTimestamp: time.Now(), ServerTimestamp: time.Now(),
				Content: content,
			}},
		}, 100)
		if err != nil {
			t.Fatal(err)
		}
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := new(net.Dialer).DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(e.hs.URL, "http")+api.PathWebSocket, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dial}},
		HTTPHeader: http.Header{"Authorization": {bob.auth()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// The client never reads.
	if r := <-reasons; r != "write_failed" {
		t.Fatalf("closed for %q, want write_failed", r)
	}
	if got := e.queueLen(bob); got != n {
		t.Fatalf("%d envelopes queued after the disconnect, want %d", got, n)
	}
}

// heldAcks is a store whose AckMany waits, the first time, until release
// is closed, and records the size of every batch it is given.
type heldAcks struct {
	store.Store
	release chan struct{}
	mu      sync.Mutex
	batches []int
}

func (h *heldAcks) AckMany(ctx context.Context, acks []store.AckRef) (int, error) {
	h.mu.Lock()
	first := len(h.batches) == 0
	h.batches = append(h.batches, len(acks))
	h.mu.Unlock()
	if first {
		<-h.release
	}
	return h.Store.AckMany(ctx, acks)
}

// TestAcksBatched: the acks that arrive while a batch commits go in the
// next one, none is lost, and while the store is slow the connection
// holds at most maxPendingAcks of them (the reader waits).
func TestAcksBatched(t *testing.T) {
	held := &heldAcks{release: make(chan struct{})}
	e := newEnv(t, nil, func(s *Server) { held.Store = s.st; s.st = held })
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "one")
	c := e.dial(bob)
	f := readType(t, c, api.FrameEnvelope)
	readType(t, c, api.FrameQueueEmpty)

	ack(t, c, f.Envelope.ID) // the first batch, held
	const bogus = 3 * maxPendingAcks
	for range bogus {
		ack(t, c, api.NewUUID()) // unknown ids: skipped, never an error
	}
	waitFor(t, func() bool {
		held.mu.Lock()
		defer held.mu.Unlock()
		return len(held.batches) == 1
	})
	close(held.release)
	waitFor(t, func() bool {
		held.mu.Lock()
		defer held.mu.Unlock()
		n := 0
		for _, b := range held.batches {
			n += b
		}
		return n == 1+bogus
	})
	held.mu.Lock()
	batches := slices.Clone(held.batches)
	held.mu.Unlock()
	if len(batches) > bogus/8 {
		t.Errorf("%d acks applied in %d batches: not batched", 1+bogus, len(batches))
	}
	for _, b := range batches {
		if b > maxPendingAcks {
			t.Errorf("a batch of %d acks, more than the %d a connection may hold", b, maxPendingAcks)
		}
	}
	if n, err := e.st.QueueLen(t.Context(), bob.id, bob.device); err != nil || n != 0 {
		t.Fatalf("queue len %d, %v after the ack", n, err)
	}
	// Still connected and delivering.
	e.sendOK(alice, bob, "two")
	if f := readType(t, c, api.FrameEnvelope); string(f.Envelope.Content) != "two" {
		t.Fatalf("got %+v", f.Envelope)
	}
}

// waitFor polls cond until it holds, for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

// TestAcksBatchedAcrossConnections: acks of different devices that arrive
// while a write commits are applied together, in the next one.
func TestAcksBatchedAcrossConnections(t *testing.T) {
	held := &heldAcks{release: make(chan struct{})}
	e := newEnv(t, nil, func(s *Server) { held.Store = s.st; s.st = held })
	alice := e.register("alice", 20, 20)
	var ids []string
	var conns []*websocket.Conn
	for _, name := range []string{"bob", "carol", "dave"} {
		u := e.register(name, 20, 20)
		e.sendOK(alice, u, "hi "+name)
		c := e.dial(u)
		ids = append(ids, readType(t, c, api.FrameEnvelope).Envelope.ID)
		readType(t, c, api.FrameQueueEmpty)
		conns = append(conns, c)
	}
	ack(t, conns[0], ids[0]) // the first write, held
	waitFor(t, func() bool {
		held.mu.Lock()
		defer held.mu.Unlock()
		return len(held.batches) == 1
	})
	ack(t, conns[1], ids[1])
	ack(t, conns[2], ids[2])
	waitFor(t, func() bool {
		e.srv.acks.mu.Lock()
		defer e.srv.acks.mu.Unlock()
		return len(e.srv.acks.pending) == 2
	})
	close(held.release)
	waitFor(t, func() bool {
		held.mu.Lock()
		defer held.mu.Unlock()
		return len(held.batches) == 2
	})
	held.mu.Lock()
	batches := slices.Clone(held.batches)
	held.mu.Unlock()
	if !slices.Equal(batches, []int{1, 2}) {
		t.Fatalf("ack batches %v, want [1 2]", batches)
	}
	waitFor(t, func() bool { return metricValue(t, e.metrics(), `doorless_messages_acked_total`) == 3 })
}

// TestFramePipelinedWithUpgrade: a frame the client sends in the same
// write as its upgrade request, before the 101 answer, is read (here, a
// binary frame, which the server refuses with 1003): the bytes net/http
// read ahead survive the switch to the connection's own small buffers.
func TestFramePipelinedWithUpgrade(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 20, 20)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.hs.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + api.PathWebSocket + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: " + bob.auth() + "\r\n\r\n"
	payload := []byte(`{"type":"ack","id":"` + api.NewUUID() + `"}`)
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x82, 0x80 | byte(len(payload))}, mask[:]...) // FIN, binary; masked
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	// Server frames (unmasked, short): skip to the close frame.
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("reading frames: %v (no close frame)", err)
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			io.ReadFull(br, l[:])
			n = int(l[0])<<8 | int(l[1])
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		if h[0]&0x0f == 0x8 { // close
			if code := int(body[0])<<8 | int(body[1]); code != int(websocket.StatusUnsupportedData) {
				t.Fatalf("close code %d, want %d", code, websocket.StatusUnsupportedData)
			}
			return
		}
	}
}

// TestPushedInOrder: envelopes handed to a live connection as they are
// queued, read from the store when its window is full, and met again by
// the reads its pings make, all arrive once and in the order one sender
// sent them.
func TestPushedInOrder(t *testing.T) {
	e := newEnv(t, nil, func(s *Server) { s.pingInterval = 5 * time.Millisecond })
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	const n = 300
	for i := range 10 { // a backlog first
		e.sendOK(alice, bob, fmt.Sprint("m", i))
	}
	c := e.dial(bob)
	got := make(chan []string, 1)
	go func() {
		var contents, held []string
		defer func() { got <- contents }()
		for len(contents) < n {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, b, err := c.Read(ctx)
			cancel()
			if err != nil {
				return
			}
			var f api.Frame
			if err := json.Unmarshal(b, &f); err != nil || f.Type != api.FrameEnvelope {
				continue // queue_empty, refill
			}
			contents = append(contents, string(f.Envelope.Content))
			// Acks are held from the 100th to the 150th envelope, so that
			// the window fills while envelopes keep coming.
			held = append(held, f.Envelope.ID)
			if len(contents) >= 100 && len(contents) < 150 {
				continue
			}
			for _, id := range held {
				b, _ := json.Marshal(api.Frame{Type: api.FrameAck, ID: id})
				if c.Write(context.Background(), websocket.MessageText, b) != nil {
					return
				}
			}
			held = held[:0]
		}
	}()
	for i := 10; i < n; i++ {
		e.sendOK(alice, bob, fmt.Sprint("m", i))
	}
	contents := <-got
	if len(contents) != n {
		t.Fatalf("%d envelopes received, want %d", len(contents), n)
	}
	for i, m := range contents {
		if m != fmt.Sprint("m", i) {
			t.Fatalf("envelope %d is %q, want m%d (order or duplicate)", i, m, i)
		}
	}
	waitFor(t, func() bool {
		q, err := e.st.QueueLen(context.Background(), bob.id, bob.device)
		return err == nil && q == 0
	})
}

// TestReconnectFromDeadSocket: a device's new connection does not wait
// for its old one's close handshake, which a dead client never answers
// (5 s): only a short grace, then the acks the old one read.
func TestReconnectFromDeadSocket(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.dial(bob) // then never read again: a dead phone
	e.sendOK(alice, bob, "hello")
	c := e.dial(bob)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("no envelope on the new connection within 3 s: %v", err)
		}
		var f api.Frame
		if json.Unmarshal(b, &f) == nil && f.Type == api.FrameEnvelope {
			if string(f.Envelope.Content) != "hello" {
				t.Fatalf("got %q", f.Envelope.Content)
			}
			return
		}
	}
}

// TestWaitForPrevAfterMiddleLeft: when a device's connection ends while
// still waiting for its previous one, which has acks not yet applied, a
// next connection waits for that previous one in its stead, rather than
// send again what the device acknowledged there.
func TestWaitForPrevAfterMiddleLeft(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "acked on a")
	envs, err := e.st.Queue(t.Context(), bob.id, bob.device, 0, 10)
	if err != nil || len(envs) != 1 {
		t.Fatalf("queue: %v, %v", envs, err)
	}
	// Connection a read bob's ack of the envelope; the acker has not
	// applied it yet.
	a := &wsConn{s: e.srv, account: bob.id, device: bob.device, done: make(chan struct{}), wake: make(chan struct{}, 1), pending: 1}
	a.ackCond = sync.NewCond(&a.ackMu)
	a.acks.Add(1)
	if _, unsubscribe, ok, err := e.srv.addConn(a); !ok || err != nil {
		t.Fatal(ok, err)
	} else {
		defer unsubscribe()
	}
	defer func() { close(a.done); e.srv.removeConn(a) }()

	b := e.dial(bob) // waits for a, then leaves
	b.CloseNow()
	k := deviceKey{bob.id, bob.device}
	waitFor(t, func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return e.srv.latest[k] == a
	})

	c := e.dial(bob)
	frames := make(chan api.Frame, 4)
	go func() {
		for {
			_, p, err := c.Read(context.Background())
			if err != nil {
				close(frames)
				return
			}
			var f api.Frame
			if json.Unmarshal(p, &f) == nil && f.Type != api.FrameRefill {
				frames <- f
			}
		}
	}()
	select {
	case f := <-frames:
		t.Fatalf("connection c sent %s before a's ack was applied", f.Type)
	case <-time.After(2 * prevGrace):
	}
	// The acker applies a's ack: c then finds the queue empty.
	if err := e.st.Ack(t.Context(), bob.id, bob.device, envs[0].ID); err != nil {
		t.Fatal(err)
	}
	a.ackApplied(envs[0].ID)
	if f := <-frames; f.Type != api.FrameQueueEmpty {
		t.Fatalf("c sent %s, want queue_empty (the envelope was acknowledged on a)", f.Type)
	}
}
