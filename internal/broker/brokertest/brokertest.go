// Package brokertest is the conformance suite for broker.Broker: every
// implementation runs it from its own tests,
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T) brokertest.Cluster { ... })
//	}
//
// and is correct when it passes. A Cluster is one or more brokers that share
// their signals, as the nodes of a deployment do; the suite subscribes on one
// node and signals from another, so that a networked broker is checked
// across nodes. An in-process broker passes itself as every node.
//
// Where broker.go leaves room, the suite settles it: once Settle returns, a
// signal sent before has reached its subscriber's channel; a subscription
// receives nothing sent before it began; a signal sent after Subscribe
// returned reaches the new subscriber even when no Settle came between.
//
// Run is safe to call from parallel tests; each subtest opens its own
// cluster.
package brokertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/broker"
)

// Cluster is the brokers one subtest runs on.
type Cluster struct {
	// Nodes are at least one broker; a signal sent on any reaches a
	// subscriber on any.
	Nodes []broker.Broker
	// Settle returns once every signal sent before it is on its
	// subscriber's channel, and every displacement done. Nil means
	// delivery is synchronous.
	Settle func(t *testing.T)
}

func (c Cluster) settle(t *testing.T) {
	t.Helper()
	if c.Settle != nil {
		c.Settle(t)
	}
}

// first and last are the nodes the suite signals from and subscribes on.
func (c Cluster) first() broker.Broker { return c.Nodes[0] }
func (c Cluster) last() broker.Broker  { return c.Nodes[len(c.Nodes)-1] }

// Run runs the conformance suite. open returns a new cluster for one subtest
// and registers its cleanup with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Cluster) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c Cluster)
	}{
		{"Signals", testSignals},
		{"Displace", testDisplace},
		{"DisplaceSameNode", testDisplaceSameNode},
		{"DisplaceMergesPending", testDisplaceMergesPending},
		{"Unsubscribe", testUnsubscribe},
		{"Devices", testDevices},
		{"AfterSubscribe", testAfterSubscribe},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t)
			if len(c.Nodes) == 0 {
				t.Fatal("brokertest: a cluster without nodes")
			}
			tc.fn(t, c)
		})
	}
}

// recv takes the one value the channel holds (after Settle).
func recv(t *testing.T, ch <-chan broker.Signal) broker.Signal {
	t.Helper()
	select {
	case s := <-ch:
		return s
	default:
		t.Fatal("no signal")
		return 0
	}
}

// none checks that the channel holds nothing (after Settle).
func none(t *testing.T, ch <-chan broker.Signal) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected signal %v", s)
	default:
	}
}

// hangGuard bounds a wait for a signal that must come: long enough never to
// fire on a slow machine, so a failure means the signal was lost.
const hangGuard = 30 * time.Second

// await blocks until the channel yields a signal.
func await(t *testing.T, ch <-chan broker.Signal) broker.Signal {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(hangGuard):
		t.Fatal("no signal: lost")
		return 0
	}
}

func subscribe(t *testing.T, b broker.Broker, account string, device uint32) (<-chan broker.Signal, func()) {
	t.Helper()
	ch, cancel, err := b.Subscribe(account, device)
	if err != nil {
		t.Fatalf("subscribe %q %d: %v", account, device, err)
	}
	t.Cleanup(cancel)
	return ch, cancel
}

// testSignals: signals reach the device's subscriber merged, and no other
// device's; a signal without a subscriber is dropped.
func testSignals(t *testing.T, c Cluster) {
	c.first().Notify("a", 1, broker.Mail) // no subscriber: dropped
	c.settle(t)
	ch, _ := subscribe(t, c.last(), "a", 1)
	c.settle(t)
	none(t, ch)

	c.first().Notify("a", 1, broker.Mail)
	c.first().Notify("a", 1, broker.Mail)
	c.first().Notify("a", 1, broker.Keys)
	c.first().Notify("a", 2, broker.Revoked) // another device
	c.first().Notify("b", 1, broker.Revoked) // another account
	c.settle(t)
	if s := recv(t, ch); s != broker.Mail|broker.Keys {
		t.Fatalf("merged signals %v, want mail|keys", s)
	}
	none(t, ch)

	for _, s := range []broker.Signal{broker.Keys, broker.Revoked, broker.Provisioned, broker.Mail | broker.Revoked} {
		c.first().Notify("a", 1, s)
		c.settle(t)
		if got := recv(t, ch); got != s {
			t.Fatalf("sent %v, received %v", s, got)
		}
	}
}

// testDisplace: a subscription on another node displaces the device's
// subscriber, which receives Displaced and nothing after it.
func testDisplace(t *testing.T, c Cluster) {
	old, cancelOld := subscribe(t, c.first(), "a", 1)
	ch, cancel := subscribe(t, c.last(), "a", 1)
	c.settle(t)
	if s := recv(t, old); s != broker.Displaced {
		t.Fatalf("old subscriber got %v, want displaced", s)
	}
	none(t, ch) // the new subscriber is not told of its own arrival

	c.first().Notify("a", 1, broker.Mail)
	c.last().Notify("a", 1, broker.Keys)
	c.settle(t)
	none(t, old)
	if s := recv(t, ch); s != broker.Mail|broker.Keys {
		t.Fatalf("new subscriber got %v, want mail|keys", s)
	}

	cancelOld() // after displacement: does not remove the new one
	c.first().Notify("a", 1, broker.Revoked)
	c.settle(t)
	if s := recv(t, ch); s != broker.Revoked {
		t.Fatalf("got %v, want revoked", s)
	}
	none(t, old)
	cancel()
	cancel()
	c.first().Notify("a", 1, broker.Mail)
	c.settle(t)
	none(t, ch)
	none(t, old)
}

// testDisplaceSameNode: the same on one node, three times over.
func testDisplaceSameNode(t *testing.T, c Cluster) {
	var chans []<-chan broker.Signal
	for range 3 {
		ch, _ := subscribe(t, c.last(), "a", 1)
		chans = append(chans, ch)
	}
	c.first().Notify("a", 1, broker.Mail)
	c.settle(t)
	for i, ch := range chans[:2] {
		if s := recv(t, ch); s != broker.Displaced {
			t.Fatalf("subscriber %d got %v, want displaced", i, s)
		}
		none(t, ch)
	}
	if s := recv(t, chans[2]); s != broker.Mail {
		t.Fatalf("newest subscriber got %v, want mail", s)
	}
}

// testDisplaceMergesPending: a subscriber displaced before it received a
// signal gets both at once, and nothing after.
func testDisplaceMergesPending(t *testing.T, c Cluster) {
	old, _ := subscribe(t, c.first(), "a", 1)
	c.first().Notify("a", 1, broker.Mail)
	c.settle(t)
	subscribe(t, c.last(), "a", 1)
	c.settle(t)
	if s := recv(t, old); s != broker.Mail|broker.Displaced {
		t.Fatalf("old subscriber got %v, want mail|displaced", s)
	}
	c.first().Notify("a", 1, broker.Keys)
	c.settle(t)
	none(t, old)
}

// testUnsubscribe: after its cancel a subscription hears nothing, and the
// device can be subscribed again.
func testUnsubscribe(t *testing.T, c Cluster) {
	ch, cancel := subscribe(t, c.last(), "a", 1)
	cancel()
	c.first().Notify("a", 1, broker.Mail)
	c.settle(t)
	none(t, ch)

	ch2, _ := subscribe(t, c.first(), "a", 1)
	c.last().Notify("a", 1, broker.Keys)
	c.settle(t)
	none(t, ch) // a cancelled subscription is not displaced either
	if s := recv(t, ch2); s != broker.Keys {
		t.Fatalf("got %v, want keys", s)
	}
}

// testDevices: many devices at once, with account strings of any shape
// (the provisioning long-poll's among them), each hear their own signals
// only.
func testDevices(t *testing.T, c Cluster) {
	accounts := []string{"", "a", "a1", "a.b", "a b", "*", ">", "a.*", "provisioning.00ff",
		"ünïcødé", "0b7f2c1e-4f44-4c1a-9a43-3f8f6f3c8a1d", string(make([]byte, 300)), "x\x00"}
	type dev struct {
		account string
		device  uint32
	}
	var devs []dev
	for _, a := range accounts {
		for _, d := range []uint32{0, 1, 2, 12, 1 << 31} {
			devs = append(devs, dev{a, d})
		}
	}
	chans := make(map[dev]<-chan broker.Signal)
	for i, d := range devs {
		chans[d], _ = subscribe(t, c.Nodes[i%len(c.Nodes)], d.account, d.device)
	}
	c.settle(t)
	for i, d := range devs {
		if i%3 == 0 {
			c.Nodes[(i+1)%len(c.Nodes)].Notify(d.account, d.device, broker.Mail)
		}
	}
	c.settle(t)
	for i, d := range devs {
		if i%3 == 0 {
			if s := recv(t, chans[d]); s != broker.Mail {
				t.Fatalf("%q %d: got %v, want mail", d.account, d.device, s)
			}
		}
		none(t, chans[d])
	}
}

// testAfterSubscribe: a signal sent right after Subscribe returns, from any
// node, reaches the subscriber (a delivery WebSocket subscribes, then reads
// its queue: a send between the two must wake it).
func testAfterSubscribe(t *testing.T, c Cluster) {
	for i := range 20 {
		account := fmt.Sprintf("after-%d", i)
		ch, _ := subscribe(t, c.Nodes[i%len(c.Nodes)], account, 1)
		c.Nodes[(i+1)%len(c.Nodes)].Notify(account, 1, broker.Mail)
		if s := await(t, ch); s != broker.Mail {
			t.Fatalf("got %v, want mail", s)
		}
	}
}

// testConcurrent: notifiers never block on a slow receiver, and the last
// signal is never lost in a merge.
func testConcurrent(t *testing.T, c Cluster) {
	ch, _ := subscribe(t, c.last(), "a", 1)
	done := make(chan broker.Signal)
	go func() {
		var all broker.Signal
		for all&broker.Keys == 0 {
			all |= <-ch
		}
		done <- all
	}()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				c.Nodes[i%len(c.Nodes)].Notify("a", 1, broker.Mail)
			}
		})
	}
	wg.Wait()
	c.settle(t) // the mail first, wherever it came from
	c.first().Notify("a", 1, broker.Keys)
	select {
	case all := <-done:
		if all != broker.Mail|broker.Keys {
			t.Fatalf("received %v", all)
		}
	case <-time.After(hangGuard):
		t.Fatal("keys never arrived: lost")
	}
}
