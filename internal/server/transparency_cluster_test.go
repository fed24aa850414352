package server

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/postgres/postgrestest"
)

// clusterNode is one node of a deployment over a shared store: a Server,
// its sequencer and its HTTP front.
type clusterNode struct {
	e    *env // e.st is nil: the store is PostgreSQL
	srv  *Server
	stop func() // ends the node's sequencer (as Run's end does)
}

// startNode starts a node over st with cfg; it stops when t ends.
func startNode(t *testing.T, st store.Store, cfg *TransparencyConfig) *clusterNode {
	t.Helper()
	srv, err := New(Config{Store: st, IPRate: RateLimit{Rate: -1}, AccountRate: RateLimit{Rate: -1}, Transparency: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := srv.startSequencer(ctx)
	hs := httptest.NewServer(srv.Handler())
	stop := func() { cancel(); <-done }
	t.Cleanup(func() { hs.Close(); stop() })
	return &clusterNode{e: &env{t: t, srv: srv, hs: hs, kt: cfg}, srv: srv, stop: stop}
}

// clusterConfig is cfg with the sequencer's intervals.
func clusterConfig(cfg *TransparencyConfig, follow time.Duration) *TransparencyConfig {
	c := *cfg
	c.PollInterval = 10 * time.Millisecond
	c.FollowInterval = follow
	return &c
}

// TestClusterFollower: of two nodes over one PostgreSQL store, the first
// is the sequencer; a registration on the second is published by the
// first and answered by the second once its own log holds it; lookups on
// the follower catch up when the client knows a larger log or the store's
// entry is newer than its tree; both hand out the same checkpoint.
func TestClusterFollower(t *testing.T) {
	node := postgrestest.Nodes(t)
	ctx := t.Context()
	cfg := testTransparency(t)
	a := startNode(t, node(), clusterConfig(cfg, 10*time.Millisecond))
	// Alone, A takes the lease at once and makes the first epoch.
	if err := a.srv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.srv.kt.leader.Load() {
		t.Fatal("the first node is not the sequencer")
	}
	// B tries the lease once, then not for an hour: it reads the store
	// only when a request needs it.
	b := startNode(t, node(), clusterConfig(cfg, time.Hour))
	v := a.e.verifier()

	alice := b.e.register("alice", 1, 1)
	if b.srv.kt.leader.Load() || !a.srv.kt.leader.Load() {
		t.Fatal("the second node took the lease")
	}
	_, res := b.e.verifyLookup(alice, "alice", nil, v)
	wantAccountEntry(t, res, 0, alice, b.e.signedDevices(alice))

	// A registration on A, looked up on B by a client that knows A's
	// log: B catches up rather than call it another log.
	bob := a.e.register("bob", 1, 1)
	headA, res := a.e.verifyLookup(bob, "bob", nil, v)
	wantAccountEntry(t, res, 0, bob, a.e.signedDevices(bob))
	headB, res := b.e.verifyLookup(bob, "bob", headA, v)
	wantAccountEntry(t, res, 0, bob, a.e.signedDevices(bob))
	if headB.Size != headA.Size {
		t.Fatalf("B's head at size %d, A's %d", headB.Size, headA.Size)
	}

	// Alice links a device through A: B's tree still holds her old leaf
	// when the store holds the new entry; its lookup catches up.
	a.e.addDevice(alice)
	_, res = b.e.verifyLookup(bob, "alice", headB, v)
	wantAccountEntry(t, res, 1, alice, a.e.signedDevices(alice))
	// An account registered through A, looked up on B before B followed:
	// B's tree has no leaf for it where the store has its entry; B
	// catches up rather than prove it absent.
	carol := a.e.register("carol", 1, 1)
	_, res = b.e.verifyLookup(bob, "carol", headB, v)
	wantAccountEntry(t, res, 0, carol, a.e.signedDevices(carol))
	if cpA, cpB := a.e.checkpoint(), b.e.checkpoint(); !bytes.Equal(cpA, cpB) {
		t.Fatalf("checkpoints differ:\nA %s\nB %s", cpA, cpB)
	}
	if b.srv.kt.entries.Load() != a.srv.kt.entries.Load() || b.srv.kt.lastEpoch.Load() != a.srv.kt.lastEpoch.Load() {
		t.Fatal("the follower's entry count or last epoch is not the sequencer's")
	}
}

// TestClusterTakeover: when the sequencer stops, the follower takes the
// lease and publishes; a node started later restores the log both made.
func TestClusterTakeover(t *testing.T) {
	node := postgrestest.Nodes(t)
	ctx := t.Context()
	cfg := testTransparency(t)
	a := startNode(t, node(), clusterConfig(cfg, 10*time.Millisecond))
	if err := a.srv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, node(), clusterConfig(cfg, 10*time.Millisecond))
	alice := b.e.register("alice", 1, 1)
	if !a.srv.kt.leader.Load() || b.srv.kt.leader.Load() {
		t.Fatal("A should lead, B follow")
	}

	a.stop()
	carol := b.e.register("carol", 1, 1)
	if !b.srv.kt.leader.Load() {
		t.Fatal("B answered without leading: who published?")
	}
	v := b.e.verifier()
	head, res := b.e.verifyLookup(carol, "carol", nil, v)
	wantAccountEntry(t, res, 0, carol, b.e.signedDevices(carol))
	_, res = b.e.verifyLookup(carol, "alice", head, v)
	wantAccountEntry(t, res, 0, alice, b.e.signedDevices(alice))

	c := startNode(t, node(), clusterConfig(cfg, 10*time.Millisecond))
	if err := c.srv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if cpB, cpC := b.e.checkpoint(), c.e.checkpoint(); !bytes.Equal(cpB, cpC) {
		t.Fatalf("checkpoints differ:\nB %s\nC %s", cpB, cpC)
	}
	if c.srv.kt.leader.Load() {
		t.Fatal("C took the lease B holds")
	}
}
