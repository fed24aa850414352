package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/doorless/doorless/client"
)

// sequencerLockClass is the high half of the sequencer lease's advisory
// lock key (internal/store/postgres's sequencerLockClass, "ktsq"); the low
// half is the OID of the kt_epochs table.
const sequencerLockClass = 0x6b74_7371

// sequencerHolderQuery returns the application_name of the session that
// holds this database's sequencer lease, if any.
const sequencerHolderQuery = `
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::bigint::oid AND l.objid = 'kt_epochs'::regclass::oid`

// sequencerLogLine is what a node logs when it takes the sequencer lease.
const sequencerLogLine = "transparency: this node is now the sequencer"

// sequencerOf returns the index of the node whose session holds the
// sequencer lease, -1 for none.
func sequencerOf(ctx context.Context, t *testing.T, pg *pgx.Conn, nodes []*clusterNode) int {
	t.Helper()
	rows, err := pg.Query(ctx, sequencerHolderQuery, sequencerLockClass)
	if err != nil {
		t.Fatalf("who holds the sequencer lease: %v", err)
	}
	holders, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("who holds the sequencer lease: %v", err)
	}
	switch len(holders) {
	case 0:
		return -1
	case 1:
		for i := range nodes {
			if holders[0] == nodeSessionName(i) {
				return i
			}
		}
	}
	t.Fatalf("the sequencer lease is held by sessions %q; want one node's", holders)
	return -1
}

// awaitSequencer polls the database until a node other than not holds
// the sequencer lease, and returns it.
func awaitSequencer(ctx context.Context, t *testing.T, pg *pgx.Conn, nodes []*clusterNode, not int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if i := sequencerOf(ctx, t, pg, nodes); i >= 0 && i != not {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node took the sequencer lease within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// epochCount is how many epochs the database holds.
func epochCount(ctx context.Context, t *testing.T, pg *pgx.Conn) int64 {
	t.Helper()
	var n int64
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM kt_epochs`).Scan(&n); err != nil {
		t.Fatalf("counting epochs: %v", err)
	}
	return n
}

// TestClusterSequencerKilled: of three doorlessd nodes over one PostgreSQL
// database and one NATS, behind the balancer, the one holding the
// key-transparency sequencer lease (found in pg_locks, and in its log) is
// killed with SIGKILL. A surviving node takes the lease. Then:
//
//   - a new account registered through the survivor that is not the
//     sequencer is published: registration answers only once its change is
//     in an epoch, and the new account's client finds its entry there;
//   - every client's owner monitor, whose last verified head the dead
//     sequencer signed, passes on the node that now serves it: the new
//     sequencer extends the same log (the client checks the new head's
//     consistency with the old one, and would raise a fork alert);
//   - messages flow between all of them, the killed node's user
//     included, now served by a survivor.
func TestClusterSequencerKilled(t *testing.T) {
	dsn, natsURL := clusterEnv(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, db := startCluster(t, dsn, natsURL, 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	lb := newBalancer(t, addrs)
	pg, err := pgx.Connect(ctx, sessionName(t, db, "doorless-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(context.Background()) })

	// ann's client talks to node 1, ben's to node 2, cat's to node 3.
	names := []string{"ann", "ben", "cat"}
	clients := map[string]*client.Client{}
	register := func(name string, node int) {
		c, err := client.Register(ctx, filepath.Join(t.TempDir(), name), lb.front(name, node), name, "", client.Options{})
		if err != nil {
			t.Fatalf("register %s on node %d: %v", name, node+1, err)
		}
		t.Cleanup(func() { c.Close() })
		clients[name] = c
	}
	for i, name := range names {
		register(name, i)
	}
	cv := newConversation()
	recvCtx, stopReceiving := context.WithCancel(ctx)
	var receivers sync.WaitGroup
	defer receivers.Wait()
	defer stopReceiving()
	receive := func(name string) {
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			if err := clients[name].Receive(recvCtx, client.ReceiveOptions{}, cv.handler(name)); err != nil {
				cv.update(func() { cv.errorf("%s: receive: %v", name, err) })
			}
		}()
	}
	for _, name := range names {
		receive(name)
	}
	// talk has each of users send message seq to each other, and waits
	// until every one has arrived.
	talk := func(users []string, seq int) {
		t.Helper()
		var want []stream
		for _, from := range users {
			for _, to := range users {
				if to == from {
					continue
				}
				s := stream{from: from, to: to, recipients: []string{to}}
				if _, err := clients[from].Send(ctx, to, s.body(seq)); err != nil {
					t.Fatalf("%s sends to %s: %v", from, to, describeErr(err))
				}
				want = append(want, s)
			}
		}
		cv.wait(ctx, t, time.Minute, fmt.Sprintf("message %d of every stream between %v", seq, users), func() bool {
			if len(cv.errs) > 0 {
				return true
			}
			for _, s := range want {
				if cv.got[s.to][s.body(seq)] == 0 {
					return false
				}
			}
			return true
		})
		checkErrs(t, cv)
	}
	// Right after registering, through whichever node: a follower that
	// has not applied the newest epoch yet catches up for the lookup.
	talk(names, 0)

	// Every client's owner monitor passes, and keeps the head it verified.
	headBefore := map[string]uint64{}
	for _, name := range names {
		headBefore[name] = checkOwnEntry(ctx, t, clients[name], "before the kill")
	}
	epochsBefore := epochCount(ctx, t, pg)

	// The sequencer: the node whose session holds the lease, which says
	// so in its log; the others do not.
	seq := sequencerOf(ctx, t, pg, nodes)
	if seq < 0 {
		t.Fatal("no node holds the sequencer lease")
	}
	for i, n := range nodes {
		if got := strings.Contains(n.out.String(), sequencerLogLine); got != (i == seq) {
			t.Fatalf("node %d holds the lease: %v; node %d logged %q: %v", seq+1, true, i+1, sequencerLogLine, got)
		}
	}
	victim := names[seq]
	mark := lb.mark()
	nodes[seq].stop(syscall.SIGKILL)
	killed := time.Now()

	// Its session ends with it, and a survivor takes the lease.
	next := awaitSequencer(ctx, t, pg, nodes, seq, 30*time.Second)
	takeover := time.Since(killed)
	if !strings.Contains(nodes[next].out.String(), sequencerLogLine) {
		t.Errorf("node %d holds the lease but did not log %q", next+1, sequencerLogLine)
	}

	// (a) dan registers through the other survivor, a follower: the answer
	// comes once the new sequencer has published his entry and the
	// follower has applied that epoch.
	follower := 3 - seq - next
	start := time.Now()
	register("dan", follower)
	published := time.Since(start)
	if n := epochCount(ctx, t, pg); n <= epochsBefore {
		t.Fatalf("the database holds %d epochs after dan registered, %d before the kill", n, epochsBefore)
	}
	var pending int64
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM kt_pending`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("pending updates after dan registered: %d, %v", pending, err)
	}
	if got := lb.nodesSince("dan", 0); slices.Contains(got, seq) || !slices.Contains(got, follower) {
		t.Fatalf("dan's connections went to nodes %v; want node %d", plusOne(got), follower+1)
	}
	checkOwnEntry(ctx, t, clients["dan"], "after registering")
	receive("dan")

	// (c) Everyone writes to everyone, dan and the killed node's user
	// included: sending to dan proves his entry to each sender.
	everyone := append(slices.Clone(names), "dan")
	talk(everyone, 1)
	if got := lb.nodesSince(victim, mark); len(got) == 0 || slices.Contains(got, seq) {
		t.Errorf("after the kill, %s's connections went to nodes %v; want some, none to node %d", victim, plusOne(got), seq+1)
	}

	// (b) Each old client's monitor passes against a head the new
	// sequencer signed, consistent with the one the old one signed.
	for _, name := range names {
		if head := checkOwnEntry(ctx, t, clients[name], "after the kill"); head <= headBefore[name] {
			t.Errorf("%s's head is at %d epochs, %d before the kill; want it past dan's epoch", name, head, headBefore[name])
		}
	}

	stopReceiving()
	receivers.Wait()
	checkErrs(t, cv)
	for _, r := range everyone {
		for body, n := range cv.got[r] {
			if n != 1 {
				t.Errorf("%s received %q %d times", r, body, n)
			}
		}
		if st := clients[r].Stats(); st.Dropped != 0 {
			t.Errorf("%s's client dropped %d envelopes it could not decrypt", r, st.Dropped)
		}
	}
	t.Logf("killed node %d, the sequencer; node %d took the lease %v later; dan's registration through node %d was published in %v",
		seq+1, next+1, takeover.Round(time.Millisecond), follower+1, published.Round(time.Millisecond))
	for i, n := range nodes {
		if i != seq {
			n.stop(syscall.SIGTERM)
		}
	}
}

// checkOwnEntry runs c's owner monitor, which must pass without an alert,
// and returns the size of the head c verified.
func checkOwnEntry(ctx context.Context, t *testing.T, c *client.Client, when string) uint64 {
	t.Helper()
	if err := c.CheckTransparency(ctx); err != nil {
		msg := err.Error()
		if errors.Is(err, client.ErrTransparencyAlert) {
			as, _ := c.TransparencyAlerts(ctx)
			msg = fmt.Sprintf("%v: %v", err, as)
		}
		t.Fatalf("%s's transparency check %s: %s", c.Username(), when, msg)
	}
	st, err := c.TransparencyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Monitored || len(st.Alerts) > 0 || st.HeadSize == 0 {
		t.Fatalf("%s's transparency status %s: monitored %v, head %d, alerts %v", c.Username(), when, st.Monitored, st.HeadSize, st.Alerts)
	}
	return st.HeadSize
}
