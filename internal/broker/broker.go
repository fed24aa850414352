// Package broker carries short "device X: look again" signals from where they
// arise (a send, a prekey fetch, a revocation, a new connection) to the one
// connection that serves the device's delivery WebSocket, on this process or,
// with a networked implementation, on another node.
//
// A signal carries no data: the store holds the state (the queue, the key
// counts, the device list) and the connection reads it when signalled. So
// signals may be merged, and a lost one only delays what the next signal, a
// poll or a reconnect brings. They are never a substitute for the store.
//
// Each device has at most one subscriber: Subscribe displaces the previous
// one, which receives Displaced and nothing after it. This is what keeps one
// WebSocket per device, across nodes too.
//
// Memory is the in-process implementation, for one node; NATS carries the
// signals between nodes over a NATS server, with a subject per device.
// brokertest is the conformance suite both pass.
package broker

import (
	"strings"
	"sync"
)

// Signal is a set of reasons for a connection to look again, OR-ed together.
type Signal uint8

const (
	// Mail: envelopes were queued for the device.
	Mail Signal = 1 << iota
	// Keys: the device's one-time prekeys may have run low.
	Keys
	// Revoked: the device was removed; its connection must end.
	Revoked
	// Displaced: another connection subscribed for the device and replaces
	// this one. It is the last signal a subscription receives.
	Displaced
	// Provisioned: a provisioning mailbox received its message. It goes to
	// the pseudo-device the server's long-poll subscribes as for the
	// mailbox (an account string that is not an account id, device 0),
	// never to a device's connection.
	Provisioned
)

func (s Signal) String() string {
	if s == 0 {
		return "none"
	}
	var names []string
	for _, n := range []struct {
		s    Signal
		name string
	}{{Mail, "mail"}, {Keys, "keys"}, {Revoked, "revoked"}, {Displaced, "displaced"}, {Provisioned, "provisioned"}} {
		if s&n.s != 0 {
			names = append(names, n.name)
			s &^= n.s
		}
	}
	if s != 0 {
		names = append(names, "unknown")
	}
	return strings.Join(names, "|")
}

// Broker delivers signals to a device's subscriber. Implementations are safe
// for concurrent use.
type Broker interface {
	// Notify sends s to the device's current subscriber, if there is one.
	// It does not block on the subscriber, and is best effort: with no
	// subscriber, or on a transport failure, the signal is dropped.
	Notify(accountID string, deviceID uint32, s Signal)
	// Subscribe makes the caller the device's one subscriber and displaces
	// the previous one (which receives Displaced). Signals arrive on the
	// channel merged: one receive may carry several. The returned function
	// ends the subscription (idempotent; after displacement a no-op); the
	// channel is never closed.
	Subscribe(accountID string, deviceID uint32) (<-chan Signal, func(), error)
}

// Memory is a Broker for one process. Its zero value is ready to use.
type Memory struct {
	mu   sync.Mutex
	subs map[deviceKey]*subscription
}

var _ Broker = (*Memory)(nil)

// NewMemory returns an empty in-process broker.
func NewMemory() *Memory { return new(Memory) }

type deviceKey struct {
	account string
	device  uint32
}

type subscription struct {
	// ch holds at most one value: the signals not yet received, merged.
	ch chan Signal
}

// send merges s into what ch holds. Only the broker sends, under its mutex,
// so after the drain the channel has room and the send does not block.
func (sub *subscription) send(s Signal) {
	select {
	case old := <-sub.ch:
		s |= old
	default:
	}
	sub.ch <- s
}

// Notify implements Broker.
func (m *Memory) Notify(accountID string, deviceID uint32, s Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sub := m.subs[deviceKey{accountID, deviceID}]; sub != nil {
		sub.send(s)
	}
}

// Subscribe implements Broker; it never fails.
func (m *Memory) Subscribe(accountID string, deviceID uint32) (<-chan Signal, func(), error) {
	k := deviceKey{accountID, deviceID}
	sub := &subscription{ch: make(chan Signal, 1)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subs == nil {
		m.subs = make(map[deviceKey]*subscription)
	}
	if old := m.subs[k]; old != nil {
		old.send(Displaced)
	}
	m.subs[k] = sub
	cancel := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.subs[k] == sub {
			delete(m.subs, k)
		}
	}
	return sub.ch, cancel, nil
}
