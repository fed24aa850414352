package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// NATS is a Broker between nodes over a NATS server (or cluster): any node
// may signal a device whose subscriber is on any node, and a subscription on
// one node displaces the device's subscriber on every other.
//
// # Subjects
//
// Each device has its own subject, Prefix + "." + a hash of its account and
// device id, and each subscription is one NATS subscription on it. NATS
// routes by interest, so a signal crosses the network only to the node that
// holds the device's subscriber, and a signal for an offline device goes no
// further than the NATS server. A fixed, hashed set of shared subjects would
// hold fewer NATS subscriptions, but every node with a connection on a
// shared subject would receive (and discard) the signals of all its
// devices: with many devices per node, every node would hear nearly every
// signal. The hash keeps account ids (and provisioning mailboxes) out of
// subjects, where a NATS server's monitoring would list them, and makes any
// account string a valid subject token.
//
// All of a broker's NATS subscriptions deliver into one channel read by one
// goroutine, so a subscription costs no goroutine of its own.
//
// # Displacement
//
// Every subscription has a token: the broker's random node id and a counter.
// Subscribe subscribes, then publishes Displaced with the new token on the
// device's subject. A subscriber that receives a Displaced whose token is
// not its own is displaced. A NATS subscription only receives what the
// server handles after it subscribed, so the newest subscriber wins. Two
// subscriptions for one device made at the same moment on two nodes may
// displace each other (each hears the other's token); one never outlives
// the other's. Subscribe waits (briefly) until the server has its
// subscription, so that a signal sent after Subscribe returns reaches it.
//
// # Losing the NATS server
//
// The connection reconnects without limit and then subscribes again; the
// signals sent meanwhile are lost. So after each reconnection every
// subscriber receives Mail|Keys|Provisioned, to look at the store again:
// what was queued during the outage is delivered then. (doorless's
// delivery WebSockets also look at their queue on every ping, so even a
// signal lost otherwise only delays a delivery.) A Displaced lost in an
// outage leaves the old connection open until its own end, which for a
// client that moved to another node is its next unanswered ping.
//
// NATS is safe for concurrent use; use DialNATS and end with Close.
type NATS struct {
	nc     *nats.Conn
	prefix string
	node   [8]byte
	msgs   chan *nats.Msg
	done   chan struct{} // closed by Close: ends the dispatcher
	ended  chan struct{} // closed when the dispatcher has ended
	notify func(up bool, err error)

	mu      sync.Mutex
	closed  bool
	seq     uint64
	devices map[deviceKey]*natsSub
	subs    map[*nats.Subscription]*natsSub
	markers map[*nats.Msg]chan struct{} // Flush's markers in msgs
}

var _ Broker = (*NATS)(nil)

// ErrClosed: the broker was closed.
var ErrClosed = errors.New("broker: closed")

// DefaultNATSPrefix starts the subjects of a NATSConfig without a Prefix.
const DefaultNATSPrefix = "doorless.signal"

// Tuning of the NATS broker.
const (
	// natsPending bounds the messages received and not yet dispatched. A
	// message that finds it full is dropped (NATS calls that a slow
	// consumer) and its subscriber told to look again.
	natsPending = 1 << 16
	// subscribeWait bounds how long Subscribe waits for the NATS server
	// to confirm the subscription; past it (NATS is unreachable, say) it
	// returns anyway and the subscriber catches up on reconnection.
	subscribeWait = 2 * time.Second
	// flushWait bounds Flush when its context has no deadline.
	flushWait = 30 * time.Second
	// tokenSize is the size of a displacement token: node id and counter.
	tokenSize = 16
	// lookAgain is what a subscriber receives when signals may have been
	// lost: every reason to read the store again, none to end.
	lookAgain = Mail | Keys | Provisioned
)

// NATSConfig configures DialNATS.
type NATSConfig struct {
	// URL is the NATS server's address, or several separated by commas
	// (nats://host:4222; tls:// for TLS). It may carry credentials: do not
	// log it.
	URL string
	// Prefix starts every subject (default DefaultNATSPrefix): brokers
	// with the same prefix on one NATS signal each other, and only they.
	Prefix string
	// Name names the connection in the NATS server's monitoring (default
	// "doorlessd").
	Name string
	// Options are further NATS options (credentials, TLS roots), applied
	// before the broker's own reconnection settings and handlers.
	Options []nats.Option
	// OnConnection, if set, is called on NATS's callback goroutine when
	// the connection is lost (up false, with the cause when there is one)
	// and when it is back (up true). The broker handles both; this is for
	// logs and alerts.
	OnConnection func(up bool, err error)
}

// DialNATS connects to NATS and returns a broker on the connection. The
// first connection must succeed; after it, the broker reconnects for as
// long as it is open.
func DialNATS(cfg NATSConfig) (*NATS, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultNATSPrefix
	}
	if !ValidPrefix(cfg.Prefix) {
		return nil, fmt.Errorf("broker: invalid subject prefix %q", cfg.Prefix)
	}
	if cfg.Name == "" {
		cfg.Name = "doorlessd"
	}
	b := &NATS{
		prefix:  cfg.Prefix,
		msgs:    make(chan *nats.Msg, natsPending),
		done:    make(chan struct{}),
		ended:   make(chan struct{}),
		notify:  cfg.OnConnection,
		devices: make(map[deviceKey]*natsSub),
		subs:    make(map[*nats.Subscription]*natsSub),
		markers: make(map[*nats.Msg]chan struct{}),
	}
	rand.Read(b.node[:]) // never fails (crypto/rand)
	opts := append(append([]nats.Option(nil), cfg.Options...),
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.notify != nil && !b.isClosed() {
				b.notify(false, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			go b.recheck(nc)
			if b.notify != nil {
				b.notify(true, nil)
			}
		}),
		nats.ErrorHandler(b.asyncError),
	)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		// NATS's errors do not repeat the URL's credentials.
		return nil, fmt.Errorf("broker: connect to nats: %v", err)
	}
	b.nc = nc
	go b.dispatch()
	return b, nil
}

// ValidPrefix reports whether p may be a NATSConfig's Prefix: one or more
// NATS subject tokens, without wildcards or spaces. It is exported so that
// a command can refuse a bad prefix before it connects.
func ValidPrefix(p string) bool {
	if p == "" || p[0] == '.' || p[len(p)-1] == '.' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '*' || c == '>' || c <= ' ' || c == 0x7f:
			return false
		case c == '.' && p[i+1] == '.':
			return false
		}
	}
	return true
}

type natsSub struct {
	subscription
	key   deviceKey
	ns    *nats.Subscription
	token [tokenSize]byte
}

// subject is the device's subject: the prefix and the first 16 bytes of
// SHA-256(account, 0, device), in hex.
func (b *NATS) subject(accountID string, deviceID uint32) string {
	h := sha256.New()
	h.Write([]byte(accountID))
	var d [5]byte
	binary.BigEndian.PutUint32(d[1:], deviceID)
	h.Write(d[:])
	return b.prefix + "." + hex.EncodeToString(h.Sum(nil)[:16])
}

// Notify implements Broker: it publishes s on the device's subject. With
// NATS unreachable the signal waits in the connection's reconnection
// buffer, and is dropped when that is full.
func (b *NATS) Notify(accountID string, deviceID uint32, s Signal) {
	// Publish fails only on a closed connection or a full buffer: both
	// drop the signal, as Broker allows.
	_ = b.nc.Publish(b.subject(accountID, deviceID), encodeSignal(s, nil))
}

// Subscribe implements Broker. It fails with ErrClosed after Close, and when
// NATS refuses the subscription.
func (b *NATS) Subscribe(accountID string, deviceID uint32) (<-chan Signal, func(), error) {
	k := deviceKey{accountID, deviceID}
	subj := b.subject(accountID, deviceID)
	sub := &natsSub{subscription: subscription{ch: make(chan Signal, 1)}, key: k}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, ErrClosed
	}
	b.seq++
	copy(sub.token[:], b.node[:])
	binary.BigEndian.PutUint64(sub.token[8:], b.seq)
	ns, err := b.nc.ChanSubscribe(subj, b.msgs)
	if err != nil {
		b.mu.Unlock()
		return nil, nil, fmt.Errorf("broker: subscribe: %v", err)
	}
	sub.ns = ns
	if old := b.devices[k]; old != nil {
		b.displaceLocked(old)
	}
	b.devices[k] = sub
	b.subs[ns] = sub
	// Subscribed first, so that no signal sent after this falls between.
	err = b.nc.Publish(subj, encodeSignal(Displaced, &sub.token))
	if err != nil {
		b.removeLocked(sub)
		b.mu.Unlock()
		return nil, nil, fmt.Errorf("broker: publish displacement: %v", err)
	}
	b.mu.Unlock()

	// Wait until the server has the subscription (and the displacement),
	// so that a signal sent after Subscribe returns reaches it. Without
	// NATS, the reconnection's look-again covers what this misses.
	if b.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), subscribeWait)
		_ = b.nc.FlushWithContext(ctx)
		cancel()
	}
	cancel := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.subs[sub.ns] == sub {
			b.removeLocked(sub)
		}
	}
	return sub.ch, cancel, nil
}

// displaceLocked sends the subscriber its last signal and forgets it.
func (b *NATS) displaceLocked(sub *natsSub) {
	sub.send(Displaced)
	b.removeLocked(sub)
}

func (b *NATS) removeLocked(sub *natsSub) {
	if b.devices[sub.key] == sub {
		delete(b.devices, sub.key)
	}
	delete(b.subs, sub.ns)
	// Fails only on a closed connection, which has no subscription left.
	_ = sub.ns.Unsubscribe()
}

// dispatch hands received signals to their subscribers until Close.
func (b *NATS) dispatch() {
	defer close(b.ended)
	for {
		select {
		case <-b.done:
			return
		case m := <-b.msgs:
			b.deliver(m)
		}
	}
}

func (b *NATS) deliver(m *nats.Msg) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if done, ok := b.markers[m]; ok {
		delete(b.markers, m)
		close(done)
		return
	}
	sub := b.subs[m.Sub]
	if sub == nil {
		return // unsubscribed or displaced since
	}
	s, token, err := decodeSignal(m.Data)
	switch {
	case err != nil:
		// Not from a broker of this version: nothing to act on.
	case s&Displaced != 0 && token != nil && *token == sub.token:
		// Our own displacement, back from the server.
		if s &^= Displaced; s != 0 {
			sub.send(s)
		}
	case s&Displaced != 0:
		b.displaceLocked(sub)
	case s != 0:
		sub.send(s)
	}
}

// recheck tells every subscriber to look again after a reconnection, once
// the server has the subscriptions again (so that nothing sent after the
// look is lost either).
func (b *NATS) recheck(nc *nats.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), subscribeWait)
	_ = nc.FlushWithContext(ctx)
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, sub := range b.subs {
		sub.send(lookAgain)
	}
}

// asyncError handles NATS's asynchronous errors: a message dropped because
// the dispatcher fell natsPending behind makes its subscriber look again.
func (b *NATS) asyncError(_ *nats.Conn, ns *nats.Subscription, err error) {
	if ns == nil || !errors.Is(err, nats.ErrSlowConsumer) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if sub := b.subs[ns]; sub != nil {
		sub.send(lookAgain)
	}
}

// Flush waits until the NATS server has every signal this broker sent
// before the call, and until every signal the server had then for this
// broker's subscribers is on their channels. Flushing each of several
// brokers on one NATS server, in turn and twice, settles all of them:
// tests use it instead of waiting for a signal that must not come. Without
// a deadline in ctx, it waits at most flushWait for the server.
func (b *NATS) Flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushWait)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("broker: flush: %v", err)
	}
	// The server wrote what it had for us before its answer to the
	// flush, and the connection queued it in msgs before reading that
	// answer: a marker queued now comes after all of it.
	marker := new(nats.Msg)
	done := make(chan struct{})
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.markers[marker] = done
	b.mu.Unlock()
	select {
	case b.msgs <- marker:
	case <-b.ended:
		return ErrClosed
	case <-ctx.Done():
		b.forgetMarker(marker)
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-b.ended:
		return ErrClosed
	case <-ctx.Done():
		b.forgetMarker(marker)
		return ctx.Err()
	}
}

func (b *NATS) forgetMarker(m *nats.Msg) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.markers, m)
}

func (b *NATS) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close ends the broker: it closes the NATS connection, after which
// subscribers receive nothing and Subscribe fails with ErrClosed. It is
// idempotent.
func (b *NATS) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.nc.Close()
	close(b.done)
	<-b.ended
	return nil
}

// The payload of a NATS signal: one byte, the Signal; for a displacement,
// followed by the tokenSize-byte token of the subscription that displaces.
var errBadPayload = errors.New("broker: malformed signal payload")

func encodeSignal(s Signal, token *[tokenSize]byte) []byte {
	if token == nil {
		return []byte{byte(s)}
	}
	b := make([]byte, 1+tokenSize)
	b[0] = byte(s)
	copy(b[1:], token[:])
	return b
}

// decodeSignal parses a payload. Bits it does not know are dropped (a newer
// broker's reasons mean nothing here); a token is only allowed with
// Displaced.
func decodeSignal(b []byte) (Signal, *[tokenSize]byte, error) {
	const known = Mail | Keys | Revoked | Displaced | Provisioned
	switch {
	case len(b) == 1:
		return Signal(b[0]) & known, nil, nil
	case len(b) == 1+tokenSize && Signal(b[0])&Displaced != 0:
		var t [tokenSize]byte
		copy(t[:], b[1:])
		return Signal(b[0]) & known, &t, nil
	}
	return 0, nil, errBadPayload
}
