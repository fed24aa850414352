package server

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
)

// Delivery WebSocket parameters.
const (
	// sendWindow bounds the envelopes sent and not yet acknowledged on one
	// connection; the rest wait in the store.
	sendWindow = 64
	// queuePage bounds the envelopes read from the store at once, so that
	// a connection holds at most this many (of up to 256 KiB each) in
	// memory while filling its window.
	queuePage = 8
	// pingInterval is how often the server pings (and, against a lost
	// signal, looks at the queue again); a peer that has not answered a
	// ping within pongTimeout is dropped.
	pingInterval = 30 * time.Second
	pongTimeout  = 15 * time.Second
	// writeTimeout bounds one frame's write: a client too slow to take it
	// is disconnected; what it did not acknowledge stays queued.
	writeTimeout = 10 * time.Second
	// maxPendingAcks bounds the acks read and not yet applied on one
	// connection; the reader waits for the store beyond it. An honest
	// client has at most sendWindow outstanding.
	maxPendingAcks = 4 * sendWindow
	// maxPushedBytes bounds the content of the envelopes pushed to one
	// connection and not yet taken by its writer; beyond it they are read
	// from the store in their turn.
	maxPushedBytes = 256 << 10
	// prevGrace is how long a device's new connection waits for its
	// previous one to finish (a live client's close handshake, with the
	// acks it sent before) before reading its queue; it waits in any case
	// for the acks the previous one has read to be applied.
	prevGrace = 250 * time.Millisecond
)

// Why a connection ends (the cause of its context).
var (
	errShutdown  = errors.New("server: shutting down")
	errDisplaced = errors.New("server: displaced by a newer connection")
	errRevoked   = errors.New("server: device removed")
	errBadFrame  = errors.New("server: bad frame from client")
	errWrite     = errors.New("server: write failed (client gone or too slow)")
	errNoPong    = errors.New("server: client did not answer a ping")
	errRead      = errors.New("server: read")
)

// wsConn is one device's delivery WebSocket. A reader goroutine reads the
// client's acks and hands them to the server's acker, which deletes them
// from the store in batches with those of every other connection. The
// writer (the handler's goroutine) sends the queue in Seq order, at most
// sendWindow envelopes ahead of the applied acks, then new envelopes as the
// broker signals them. Both run under one context whose cause says why the
// connection ends; the writer then closes the WebSocket, which ends the
// reader.
//
// States of the writer, in order: refill check → backlog (envelopes queued
// at connect, read queuePage at a time up to a window of sendWindow, each
// ack freeing a slot) → queue_empty
// sent once → live (look at the queue again on each Mail signal, and on each
// ping in case a signal was lost).
type wsConn struct {
	s       *Server
	ws      *websocket.Conn
	account string
	device  uint32
	cancel  context.CancelCauseFunc
	// opened is when the connection opened; queued holds, for the
	// envelopes sent whose latency is measured (metrics.live), their
	// server timestamps until acknowledged.
	opened time.Time
	queued sync.Map // id → time.Time

	// prev is the device's previous connection to this server, if any,
	// until this one's writer has waited for it (awaitPrev). done is
	// closed when this connection has finished, its acks applied.
	prev *wsConn
	done chan struct{}

	// pending counts the acks read and not yet answered by the acker,
	// answered those answered so far; applied holds the ids of the
	// answered ones the writer has not taken yet. The reader waits while
	// pending and applied hold maxPendingAcks together. pushed holds
	// envelopes just queued on this server for the device (Server.push),
	// at most sendWindow and maxPushedBytes of content. wake tells the
	// writer there is something to take.
	ackMu       sync.Mutex
	ackCond     *sync.Cond // signalled when an ack is answered or taken
	pending     int
	answered    uint64
	applied     []string
	pushed      []store.Envelope
	pushedBytes int
	spilled     bool          // pushes came while pushed was full
	wake        chan struct{} // capacity 1
	acks        sync.WaitGroup
}

// GET /v1/websocket
//
// The connection then runs on goroutines of its own (run and readLoop),
// not the request's: the handler returns at once, and net/http's state for
// the request and its connection goes with it, so that an idle WebSocket
// holds only what it needs.
func (s *Server) handleWebSocket(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	ws, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil // Accept has answered
	}
	ws.SetReadLimit(api.MaxClientFrameSize)
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &wsConn{s: s, ws: ws, account: dev.AccountID, device: dev.ID, cancel: cancel,
		opened: s.now(), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	c.ackCond = sync.NewCond(&c.ackMu)
	sigs, unsubscribe, ok, err := s.addConn(c)
	if !ok {
		cancel(nil)
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return nil
	}
	if err != nil {
		s.log.Error("broker subscribe failed", "err", err)
		ws.Close(websocket.StatusTryAgainLater, "try again later")
		close(c.done)
		s.removeConn(c)
		cancel(nil)
		return nil
	}
	go c.run(ctx, sigs, unsubscribe)
	return nil
}

// run is the connection's life: the writer, with the reader beside it,
// until either ends it; then the close, and the wait for its acks.
func (c *wsConn) run(ctx context.Context, sigs <-chan broker.Signal, unsubscribe func()) {
	s := c.s
	defer c.cancel(nil)
	defer s.removeConn(c)
	defer close(c.done)
	defer unsubscribe()

	s.met.websockets.Inc()
	defer s.met.websockets.Dec()
	var wg sync.WaitGroup
	wg.Go(func() { c.readLoop(ctx) })
	// The writer's answer is the reason: it is the connection's cause when
	// the writer stopped for it, and its own failure otherwise.
	cause := c.writeLoop(ctx, sigs)
	c.cancel(cause)
	reason := c.close(cause)
	wg.Wait()
	c.acks.Wait()
	s.met.wsClosed.WithLabelValues(reason).Inc()
	s.log.Debug("websocket closed", "reason", reason)
	if s.onWSClose != nil {
		s.onWSClose(reason)
	}
}

// Buffer sizes of a WebSocket's connection. net/http's are 4 KiB each (and
// a third for its own writes), kept for as long as the connection lives;
// the client sends only acks of under a hundred bytes, and a frame larger
// than the write buffer goes through it in one write.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 2048
)

// smallBuffers gives websocket.Accept the hijacked connection with buffers
// of wsReadBuffer and wsWriteBuffer bytes in place of net/http's.
type smallBuffers struct{ http.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent after its request, already read: they come
		// first.
		b, _ := brw.Reader.Peek(n)
		conn = &prefixedConn{Conn: conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn)}
	}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, wsReadBuffer), bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}

func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// prefixedConn is a connection whose reads start with bytes read before.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// addConn counts c in (false when draining), makes it its device's latest
// connection here, and subscribes it to the broker. With the in-process
// broker (which never blocks) it subscribes under s.mu, so that the
// connection envelopes are pushed to (the latest) is the one subscribed,
// whatever the order of two connects of one device; another broker is
// subscribed to after, since it may wait on the network, and is not
// pushed to. On a subscription error c is counted in all the same.
func (s *Server) addConn(c *wsConn) (<-chan broker.Signal, func(), bool, error) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil, nil, false, nil
	}
	s.active++ // a request in flight for Shutdown, until removeConn
	s.conns[c] = struct{}{}
	k := deviceKey{c.account, c.device}
	c.prev = s.latest[k]
	s.latest[k] = c
	if s.localOnly {
		defer s.mu.Unlock()
		sigs, unsubscribe, err := s.br.Subscribe(c.account, c.device)
		return sigs, unsubscribe, true, err
	}
	s.mu.Unlock()
	sigs, unsubscribe, err := s.br.Subscribe(c.account, c.device)
	return sigs, unsubscribe, true, err
}

// removeConn counts c out. When c was its device's latest connection and
// has not waited for its previous one, which has not finished, that one
// is the latest again: a next connection must wait for it in c's stead.
func (s *Server) removeConn(c *wsConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if k := (deviceKey{c.account, c.device}); s.latest[k] == c {
		if p := c.prev; p != nil && !finished(p) {
			s.latest[k] = p
		} else {
			delete(s.latest, k)
		}
	}
	s.endLocked()
}

func finished(c *wsConn) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// deviceKey names a device.
type deviceKey struct {
	account string
	device  uint32
}

// close ends the WebSocket as cause asks, with a close handshake when there
// is something to tell the client, and names the reason for metrics.
func (c *wsConn) close(cause error) string {
	var code websocket.StatusCode = -1 // -1: no handshake
	var reason string
	switch {
	case errors.Is(cause, errShutdown):
		code, reason = websocket.StatusGoingAway, "shutdown"
	case errors.Is(cause, errDisplaced):
		code, reason = api.CloseDisplaced, "displaced"
	case errors.Is(cause, errRevoked):
		code, reason = api.CloseRevoked, "revoked"
	case errors.Is(cause, errBadFrame):
		code, reason = websocket.StatusUnsupportedData, "bad_frame"
	case errors.Is(cause, errWrite):
		reason = "write_failed"
	case errors.Is(cause, errNoPong):
		reason = "no_pong"
	case websocket.CloseStatus(cause) == websocket.StatusMessageTooBig:
		reason = "too_big" // the library has closed the connection
	case websocket.CloseStatus(cause) != -1:
		reason = "client" // the client closed; the library answered
	case errors.Is(cause, errRead):
		reason = "gone"
	default:
		c.s.log.Error("websocket failed", "err", cause)
		code, reason = websocket.StatusInternalError, "error"
	}
	if code == -1 {
		c.ws.CloseNow()
	} else {
		c.ws.Close(code, strings.ReplaceAll(reason, "_", " "))
	}
	return reason
}

// readLoop reads the client's acks and hands them to the acker until the
// connection fails or is closed. It reads on past the end of ctx: acks
// sent during the close handshake still count, and a cancelled Read would
// drop the connection without a close frame. The writer's close ends it.
func (c *wsConn) readLoop(ctx context.Context) {
	rctx := context.WithoutCancel(ctx)
	for {
		typ, b, err := c.ws.Read(rctx)
		if err != nil {
			if websocket.CloseStatus(err) != -1 {
				c.cancel(err)
			} else {
				c.cancel(fmt.Errorf("%w: %v", errRead, err))
			}
			return
		}
		f, err := api.ParseFrame(b)
		if typ != websocket.MessageText || err != nil || f.Type != api.FrameAck {
			c.cancel(errBadFrame)
			return
		}
		c.ackMu.Lock()
		for c.pending+len(c.applied) >= maxPendingAcks {
			c.ackCond.Wait()
		}
		c.pending++
		c.ackMu.Unlock()
		c.acks.Add(1)
		c.s.acks.add(c, f.ID)
	}
}

// ackApplied is the acker's answer to one of c's acks: applied, or failed
// (the connection then ends). It frees the ack's slot in the window.
func (c *wsConn) ackApplied(id string) {
	c.ackMu.Lock()
	c.pending--
	c.answered++
	c.applied = append(c.applied, id)
	c.ackCond.Broadcast()
	c.ackMu.Unlock()
	c.wakeWriter()
	c.acks.Done()
}

// awaitAcks returns once the acker has answered every ack c had read when
// it was called.
func (c *wsConn) awaitAcks() {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	for target := c.answered + uint64(c.pending); c.answered < target; {
		c.ackCond.Wait()
	}
}

func (c *wsConn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take returns the ids of the acks applied and the envelopes pushed since
// the last call, and whether pushes were spilled meanwhile.
func (c *wsConn) take() (applied []string, pushed []store.Envelope, spilled bool) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	applied, pushed, spilled = c.applied, c.pushed, c.spilled
	c.applied, c.pushed, c.pushedBytes, c.spilled = nil, nil, 0, false
	if len(applied) > 0 {
		c.ackCond.Broadcast() // the reader may wait for room
	}
	return applied, pushed, spilled
}

// push hands the writer an envelope just queued for its device, so that
// it need not read it back from the store. Beyond sendWindow envelopes or
// maxPushedBytes of content waiting, the envelope is not kept: the writer
// is told to read the store instead.
func (c *wsConn) push(e *store.Envelope) {
	c.ackMu.Lock()
	if len(c.pushed) < sendWindow && c.pushedBytes+len(e.Content) <= maxPushedBytes {
		c.pushed = append(c.pushed, *e)
		c.pushedBytes += len(e.Content)
	} else {
		c.spilled = true
	}
	c.ackMu.Unlock()
	c.wakeWriter()
}

// connsOf returns the latest connection here of each envelope's device
// (nil for none), looked up under one hold of s.mu for a whole send.
func (s *Server) connsOf(envs []store.Envelope) []*wsConn {
	conns := make([]*wsConn, len(envs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range envs {
		conns[i] = s.latest[deviceKey{envs[i].AccountID, envs[i].DeviceID}]
	}
	return conns
}

// awaitPrev waits, before the queue is read, for the device's previous
// connection here, displaced by this one: up to prevGrace for it to finish
// (a live client closes it at once, after the acks it sent there), then
// for the acks it has read to be applied, so that this connection does not
// send again what the device acknowledged there. A dead client's socket
// costs prevGrace, not the close handshake's timeout.
func (c *wsConn) awaitPrev(ctx context.Context) error {
	p := c.prev
	if p == nil {
		return nil
	}
	t := time.NewTimer(prevGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	p.awaitAcks()
	c.prev = nil
	return nil
}

// writeLoop sends until ctx ends or the connection fails, and returns why.
func (c *wsConn) writeLoop(ctx context.Context, sigs <-chan broker.Signal) error {
	if err := c.awaitPrev(ctx); err != nil {
		return err
	}
	// The device may have been removed after authentication and before the
	// subscription that would have told: refill reads its key counts, and
	// answers errRevoked when it is gone.
	if err := c.refill(ctx); err != nil {
		return err
	}
	// The ids sent and not yet acknowledged: made when needed and let go
	// when empty, so that an idle connection holds none.
	var inflight map[string]bool
	// send writes e and counts it in flight; an envelope deleted with its
	// sender's account since it was read is not sent (false), and has no
	// ack.
	send := func(e *store.Envelope) (bool, error) {
		switch err := c.writeEnvelope(ctx, e); {
		case errors.Is(err, errWithdrawn):
			return false, nil
		case err != nil:
			return false, err
		}
		if inflight == nil {
			inflight = make(map[string]bool)
		}
		inflight[e.ID] = true
		return true, nil
	}
	var after int64 // Seq of the last envelope sent
	poll, emptySent := true, false
	backlog := 0 // envelopes sent before queue_empty
	ping := time.NewTicker(c.s.pingInterval)
	defer ping.Stop()
	for {
		for poll && len(inflight) < sendWindow {
			want := min(sendWindow-len(inflight), queuePage)
			var envs []store.Envelope
			var err error
			c.s.calls.do(func() { envs, err = c.s.st.Queue(ctx, c.account, c.device, after, want) })
			if err != nil {
				return stopped(ctx, err)
			}
			for i := range envs {
				if inflight[envs[i].ID] { // sent when it was pushed
					after = envs[i].Seq
					continue
				}
				switch sent, err := send(&envs[i]); {
				case err != nil:
					return err
				case sent:
					backlog++
				}
				after = envs[i].Seq
				envs[i].Content = nil // sent: let it go before the next page
			}
			if len(envs) < want {
				poll = false
				if !emptySent {
					c.s.met.backlog.Observe(float64(backlog))
					if err := c.writeFrame(ctx, &api.Frame{Type: api.FrameQueueEmpty}); err != nil {
						return err
					}
					emptySent = true
				}
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case sig := <-sigs:
			switch {
			case sig&broker.Displaced != 0:
				return errDisplaced
			case sig&broker.Revoked != 0:
				return errRevoked
			}
			if sig&broker.Keys != 0 {
				if err := c.refill(ctx); err != nil {
					return err
				}
			}
			if sig&broker.Mail != 0 {
				poll = true
			}
		case <-c.wake:
			applied, pushed, spilled := c.take()
			if spilled {
				poll = true // and so every envelope pushed is read in its turn
			}
			for _, id := range applied {
				delete(inflight, id)
			}
			if len(inflight) == 0 {
				inflight = nil
			}
			// A pushed envelope goes out at once when the connection is
			// live with nothing to read first and room in its window:
			// Seqs are given in commit order, so one above after was not
			// read yet. It stays in the store, and in inflight, for a
			// later read to pass over. Otherwise it is read in its turn,
			// in order.
			slices.SortFunc(pushed, func(a, b store.Envelope) int { return cmp.Compare(a.Seq, b.Seq) })
			for i := range pushed {
				e := &pushed[i]
				switch {
				case e.Seq <= after || inflight[e.ID]:
					// read already
				case !emptySent || poll || len(inflight) >= sendWindow:
					poll = true
				default:
					if _, err := send(e); err != nil {
						return err
					}
				}
				e.Content = nil
			}
		case <-ping.C:
			// The wait for the pong ends with the connection too (a
			// shutdown must not wait pongTimeout for a silent client).
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.pongTimeout)
			stop := context.AfterFunc(ctx, cancel)
			err := c.ws.Ping(pctx)
			stop()
			cancel()
			if err != nil {
				return stopped(ctx, errNoPong)
			}
			poll = true
		}
	}
}

// stopped prefers the connection's cause to the error it caused.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// refill sends a "refill" frame when the device is short of one-time keys.
func (c *wsConn) refill(ctx context.Context) error {
	var counts store.KeyCounts
	var err error
	c.s.calls.do(func() { counts, err = c.s.st.KeyCounts(ctx, c.account, c.device) })
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errRevoked
	case err != nil:
		return stopped(ctx, err)
	case !needsRefill(counts):
		return nil
	}
	return c.writeFrame(ctx, &api.Frame{Type: api.FrameRefill, Keys: &api.KeyStatus{PreKeys: counts.PreKeys, KyberPreKeys: counts.KyberPreKeys}})
}

// errWithdrawn: an envelope's sender no longer exists. DeleteAccount
// deletes the envelopes that name it in the same transaction, so the
// envelope was read just before; it is not sent.
var errWithdrawn = errors.New("server: the envelope's sender was deleted")

// writeEnvelope sends one envelope: with its source's account, username and
// device, or, for a sealed-sender envelope, with none; and with its
// franking commitment and the delivery tag binding it to this delivery.
func (c *wsConn) writeEnvelope(ctx context.Context, e *store.Envelope) error {
	env := &api.Envelope{
		ID:              e.ID,
		Type:            e.Type,
		ClientTimestamp: e.ClientTimestamp.UnixMilli(),
		ServerTimestamp: e.ServerTimestamp.UnixMilli(),
		Content:         e.Content,
	}
	env.Franking, env.FrankingTag = c.s.deliveryTag(e, c.account, c.device)
	if e.SourceAccount != "" {
		var name string
		var err error
		c.s.calls.do(func() { name, err = c.s.username(ctx, e.SourceAccount) })
		switch {
		case errors.Is(err, store.ErrNotFound):
			return errWithdrawn
		case err != nil:
			return stopped(ctx, fmt.Errorf("server: source of envelope: %w", err))
		}
		env.SourceAccount, env.SourceUsername, env.SourceDevice = e.SourceAccount, name, e.SourceDevice
	}
	live := c.s.met.live(e, c.opened)
	if live { // before the write: the ack may come before Store otherwise
		c.queued.Store(e.ID, e.ServerTimestamp)
	}
	err := c.writeFrame(ctx, &api.Frame{Type: api.FrameEnvelope, Envelope: env})
	switch {
	case err != nil && live:
		c.queued.Delete(e.ID)
	case err == nil:
		c.s.met.delivered.Inc()
		if live {
			c.s.met.since(c.s.met.latWritten, e.ServerTimestamp, c.s.now())
		}
	}
	return err
}

// writeFrame writes one frame within writeTimeout. The write does not follow
// ctx: a connection that ends must still be able to send its close frame.
func (c *wsConn) writeFrame(ctx context.Context, f *api.Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.writeTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageText, b); err != nil {
		err = fmt.Errorf("%w: %v", errWrite, err)
		if wctx.Err() != nil {
			return err // too slow, whatever else happened meanwhile
		}
		return stopped(ctx, err)
	}
	return nil
}
