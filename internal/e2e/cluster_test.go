package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/doorless/doorless/client"
	"github.com/doorless/doorless/internal/api"
)

// The cluster test's environment: without both it is skipped.
const (
	clusterPostgresEnv = "DOORLESS_TEST_POSTGRES" // postgres://postgres@127.0.0.1:5432/test?sslmode=disable
	clusterNATSEnv     = "DOORLESS_TEST_NATS"     // nats://127.0.0.1:4222
)

// clusterDatabase creates a fresh database on the server DOORLESS_TEST_POSTGRES
// names, dropped when the test ends, and returns the URL of it. A database
// rather than a schema: whatever the nodes coordinate through that is
// database-wide (advisory locks, notifications) stays this run's own.
func clusterDatabase(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", clusterPostgresEnv)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "doorless_cluster_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", clusterPostgresEnv, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// sharedKeys are the files docs/operations.md ("What every node must
// share") says to copy from the first node's data directory to every other
// node's before its first start.
var sharedKeys = []string{"franking.key", "certs", "kt", "legal/log.key", "legal/admin-token", "legal/authorities"}

// sharedDirs are what docs/operations.md says every node must mount from
// one shared filesystem; here each is a symbolic link to the first node's.
var sharedDirs = []string{"attachments", "legal/log"}

// copyTree copies the file or directory src to dst, modes kept.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		return os.WriteFile(to, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
}

// balancer is the TCP load balancer in front of the cluster, as a client
// reaches it in production. It gives each client a front port of its own
// and forwards that port's new connections to the client's node or, when
// that node does not answer, to the next node in order that does: sticky
// by client, so the test knows which node serves whom, and failing over
// the way a load balancer with passive health checks does. It keeps each
// client's address, as docs/operations.md asks of a load balancer, by
// connecting to the nodes from a loopback address of the client's own
// (127.0.0.2, 127.0.0.3, ...), so the per-IP limits apply per client. When
// either end of a forwarded connection closes, it closes the other.
type balancer struct {
	t     *testing.T
	nodes []string // host:port of each node

	mu      sync.Mutex
	log     []forwarded // every connection forwarded, in order
	open    map[net.Conn]struct{}
	fronts  []net.Listener
	stopped bool
	wg      sync.WaitGroup
}

// forwarded is one connection the balancer forwarded.
type forwarded struct {
	client string
	node   int // index in nodes
}

func newBalancer(t *testing.T, nodes []string) *balancer {
	b := &balancer{t: t, nodes: nodes, open: map[net.Conn]struct{}{}}
	t.Cleanup(b.stop)
	return b
}

// front opens the client's front port, preferring node prefer, and
// returns its URL.
func (b *balancer) front(client string, prefer int) string {
	b.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.t.Fatal(err)
	}
	b.mu.Lock()
	b.fronts = append(b.fronts, ln)
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+len(b.fronts)))}
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.forward(client, prefer, src, c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func (b *balancer) forward(client string, prefer int, src *net.TCPAddr, c net.Conn) {
	d := net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}
	var up net.Conn
	node := -1
	for i := range b.nodes {
		n := (prefer + i) % len(b.nodes)
		var err error
		if up, err = d.Dial("tcp", b.nodes[n]); err == nil {
			node = n
			break
		}
	}
	if node < 0 {
		c.Close()
		return
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	b.log = append(b.log, forwarded{client, node})
	b.open[c], b.open[up] = struct{}{}, struct{}{}
	b.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	c.Close()
	up.Close()
	<-done
	b.mu.Lock()
	delete(b.open, c)
	delete(b.open, up)
	b.mu.Unlock()
}

// mark returns how many connections have been forwarded so far.
func (b *balancer) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.log)
}

// nodesSince returns the nodes the client's connections went to, in
// order, from the connection numbered from on.
func (b *balancer) nodesSince(client string, from int) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int
	for _, f := range b.log[from:] {
		if f.client == client {
			out = append(out, f.node)
		}
	}
	return out
}

func (b *balancer) stop() {
	b.mu.Lock()
	b.stopped = true
	for _, ln := range b.fronts {
		ln.Close()
	}
	for c := range b.open {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// conversation is what the cluster test's clients say: each stream (one
// sender to one user, or to the group) is numbered messages, and every
// recipient's client records what it receives. Waits are on its
// conditions, woken by every change.
type conversation struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	// got[recipient][body] counts the times recipient's client handed
	// over the message with that body.
	got map[string]map[string]int
	// ids[recipient][id] counts the times a message id was handed over.
	ids map[string]map[string]int
	// order[recipient][stream] is the sequence numbers received, in order.
	order map[string]map[string][]int
	// sent[stream] is how many messages of the stream Send has confirmed.
	sent map[string]int
	// joined[user] tells that user's client received the group.
	joined map[string]bool
	errs   []string
}

func newConversation() *conversation {
	return &conversation{changed: make(chan struct{}), got: map[string]map[string]int{}, ids: map[string]map[string]int{},
		order: map[string]map[string][]int{}, sent: map[string]int{}, joined: map[string]bool{}}
}

// update runs f under the lock and wakes the waiters.
func (cv *conversation) update(f func()) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	f()
	close(cv.changed)
	cv.changed = make(chan struct{})
}

// wait returns once cond (run under the lock) holds, or fails the test
// when the deadline passes or ctx ends first.
func (cv *conversation) wait(ctx context.Context, t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := cv.await(ctx, d, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (cv *conversation) await(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		cv.mu.Lock()
		ok, ch := cond(), cv.changed
		cv.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fmt.Errorf("not done after %v", d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stream is one sender's numbered messages to a user or to the group.
type stream struct {
	from, to   string   // to: a username, or "#" and the group's title
	recipients []string // who receives it
}

func (s stream) key() string         { return s.from + ">" + s.to }
func (s stream) body(seq int) string { return fmt.Sprintf("%s %03d", s.key(), seq) }

// parseBody returns the stream key and sequence number of a body, -1 for
// none.
func parseBody(body string) (key string, seq int) {
	key, n, _ := strings.Cut(body, " ")
	seq, err := strconv.Atoi(n)
	if err != nil {
		seq = -1
	}
	return key, seq
}

// errorf records an error (under the lock) for the test to report.
func (cv *conversation) errorf(f string, a ...any) { cv.errs = append(cv.errs, fmt.Sprintf(f, a...)) }

// handler records what name's client receives.
func (cv *conversation) handler(name string) func(client.Event) error {
	return func(ev client.Event) error {
		cv.update(func() {
			switch ev := ev.(type) {
			case *client.GroupUpdate:
				if ev.Joined {
					cv.joined[name] = true
				}
			case *client.Message:
				if cv.got[name] == nil {
					cv.got[name], cv.ids[name], cv.order[name] = map[string]int{}, map[string]int{}, map[string][]int{}
				}
				cv.got[name][ev.Text]++
				cv.ids[name][ev.ID]++
				key, seq := parseBody(ev.Text)
				from, to, _ := strings.Cut(key, ">")
				switch {
				case ev.Outgoing:
					cv.errorf("%s received a transcript of its own message %q", name, ev.Text)
				case ev.From != from:
					cv.errorf("%s received %q from %s", name, ev.Text, ev.From)
				case strings.HasPrefix(to, "#") != (ev.Group != nil):
					cv.errorf("%s received %q in group %v", name, ev.Text, ev.Group)
				case ev.Group != nil && "#"+ev.Group.Title != to:
					cv.errorf("%s received %q in group %q", name, ev.Text, ev.Group.Title)
				}
				cv.order[name][key] = append(cv.order[name][key], seq)
			}
		})
		return nil
	}
}

// received returns how many distinct messages of s name has received
// (under the lock).
func (cv *conversation) received(name string, s stream) int {
	seen := map[int]bool{}
	for _, seq := range cv.order[name][s.key()] {
		seen[seq] = true
	}
	return len(seen)
}

// clusterNode is one doorlessd of the cluster.
type clusterNode struct {
	*server
	addr string // host:port
}

// clusterEnv returns the cluster tests' PostgreSQL and NATS, or skips the
// test without both.
func clusterEnv(t *testing.T) (dsn, natsURL string) {
	t.Helper()
	dsn, natsURL = os.Getenv(clusterPostgresEnv), os.Getenv(clusterNATSEnv)
	if dsn == "" || natsURL == "" {
		t.Skipf("the cluster tests need PostgreSQL and NATS: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) "+
			"and %s (e.g. nats://127.0.0.1:4222)", clusterPostgresEnv, clusterNATSEnv)
	}
	return dsn, natsURL
}

// startCluster starts n doorlessd nodes on loopback over a fresh database
// (whose URL it returns) and one NATS, each with its own data directory set
// up as docs/operations.md says: the first node makes the keys, the others
// get copies, and share its attachments and legal request log (symbolic
// links standing for a shared filesystem). Node i's PostgreSQL sessions
// are named doorless-node<i> (application_name), which pg_stat_activity
// shows. The nodes' logs are printed if the test fails.
func startCluster(t *testing.T, dsn, natsURL string, n int, extra ...string) ([]*clusterNode, string) {
	t.Helper()
	db := clusterDatabase(t, dsn)
	root := t.TempDir()
	var nodes []*clusterNode
	t.Cleanup(func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("node %d's log:\n%s", i+1, n.out)
			}
		}
	})
	first := filepath.Join(root, "node1")
	for i := 1; i <= n; i++ {
		data := filepath.Join(root, fmt.Sprintf("node%d", i))
		if i > 1 {
			if err := os.MkdirAll(filepath.Join(data, "legal"), 0o700); err != nil {
				t.Fatal(err)
			}
			for _, k := range sharedKeys {
				copyTree(t, filepath.Join(first, k), filepath.Join(data, k))
			}
			for _, d := range sharedDirs {
				if err := os.Symlink(filepath.Join(first, d), filepath.Join(data, d)); err != nil {
					t.Fatal(err)
				}
			}
		}
		args := append([]string{"--store", sessionName(t, db, nodeSessionName(i-1)), "--broker", natsURL}, extra...)
		s := startServer(t, data, args...)
		nodes = append(nodes, &clusterNode{server: s, addr: strings.TrimPrefix(s.url, "http://")})
	}
	return nodes, db
}

// nodeSessionName is the application_name of node i's (from 0)
// PostgreSQL sessions.
func nodeSessionName(i int) string { return fmt.Sprintf("doorless-node%d", i+1) }

// sessionName returns the database URL db with the sessions it opens named
// name.
func sessionName(t *testing.T, db, name string) string {
	t.Helper()
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestClusterFailover is issue 8's cluster test: three doorlessd nodes on
// loopback over one PostgreSQL database and one NATS, each with its own
// data directory set up as docs/operations.md says (the first node's keys
// copied, attachments and the legal request log on a "shared filesystem":
// symbolic links to the first node's), behind a load balancer. alice's
// client talks to node 1, bob's to node 2, carol's to node 3. They write to
// each other one-to-one, both ways, and in a group of the three, all at
// once and continuously (each stream at most a few messages ahead of its
// slowest recipient). Node 2 is killed with SIGKILL in the middle; bob's
// client reconnects, through the balancer, to another node, and goes on.
// Every message sent before, during and after the kill is received exactly
// once, in order, by each of its recipients.
func TestClusterFailover(t *testing.T) {
	dsn, natsURL := clusterEnv(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Sealed messages to one recipient are limited to 5 a second (burst
	// 100) by default; here each gets six streams and their receipts as
	// fast as the clients go.
	nodes, _ := startCluster(t, dsn, natsURL, 3, "--unidentified-rate", "200", "--unidentified-burst", "1000")
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	lb := newBalancer(t, addrs)

	// The clients, in process: the SDK's Register, Send, CreateGroup and
	// streaming Receive (which reconnects on its own).
	names := []string{"alice", "bob", "carol"}
	clients := map[string]*client.Client{}
	for i, name := range names {
		c, err := client.Register(ctx, filepath.Join(t.TempDir(), name), lb.front(name, i), name, "", client.Options{})
		if err != nil {
			t.Fatalf("register %s on node %d: %v", name, i+1, err)
		}
		t.Cleanup(func() { c.Close() })
		clients[name] = c
	}
	cv := newConversation()
	recvCtx, stopReceiving := context.WithCancel(ctx)
	var receivers sync.WaitGroup
	defer receivers.Wait()
	defer stopReceiving()
	for _, name := range names {
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			if err := clients[name].Receive(recvCtx, client.ReceiveOptions{}, cv.handler(name)); err != nil {
				cv.update(func() { cv.errorf("%s: receive: %v", name, err) })
			}
		}()
	}

	const group = "#trio"
	if _, err := clients["alice"].CreateGroup(ctx, strings.TrimPrefix(group, "#"), "bob", "carol"); err != nil {
		t.Fatalf("alice creates the group: %v", err)
	}
	cv.wait(ctx, t, time.Minute, "bob and carol to receive the group", func() bool { return cv.joined["bob"] && cv.joined["carol"] })

	var streams []stream
	for _, from := range names {
		for _, to := range names {
			if to != from {
				streams = append(streams, stream{from: from, to: to, recipients: []string{to}})
			}
		}
		streams = append(streams, stream{from: from, to: group, recipients: slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == from })})
	}
	const (
		perStream = 30 // messages in each stream
		window    = 4  // how far a stream may run ahead of its slowest recipient
		killAfter = 10 // node 2 dies once every recipient has this many of every stream
	)

	// The senders: each client sends its streams in turn, as the window
	// lets it, until every stream has perStream messages confirmed.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var senders sync.WaitGroup
	for _, name := range names {
		var mine []stream
		for _, s := range streams {
			if s.from == name {
				mine = append(mine, s)
			}
		}
		senders.Add(1)
		go func() {
			defer senders.Done()
			c := clients[name]
			for {
				var next *stream
				var seq int
				done := true
				err := cv.await(sendCtx, 2*time.Minute, func() bool {
					// The stream furthest behind that the window lets go on,
					// so that all of them are under way when node 2 dies.
					done, next = true, nil
					for i, s := range mine {
						n := cv.sent[s.key()]
						if n == perStream {
							continue
						}
						done = false
						slowest := perStream
						for _, r := range s.recipients {
							slowest = min(slowest, cv.received(r, s))
						}
						if n-slowest < window && (next == nil || n < seq) {
							next, seq = &mine[i], n
						}
					}
					return done || next != nil
				})
				if err != nil {
					cv.update(func() { cv.errorf("%s: waiting to send: %v", name, err) })
					return
				}
				if done {
					return
				}
				if _, err := c.Send(sendCtx, next.to, next.body(seq)); err != nil {
					if sendCtx.Err() != nil {
						return // stopped
					}
					cv.update(func() { cv.errorf("%s: send %q: %v", name, next.body(seq), describeErr(err)) })
					return
				}
				cv.update(func() { cv.sent[next.key()] = seq + 1 })
			}
		}()
	}
	defer senders.Wait()

	// Kill node 2 in the middle of it all.
	cv.wait(ctx, t, 2*time.Minute, fmt.Sprintf("every recipient to have %d messages of every stream", killAfter), func() bool {
		if len(cv.errs) > 0 {
			return true
		}
		for _, s := range streams {
			for _, r := range s.recipients {
				if cv.received(r, s) < killAfter {
					return false
				}
			}
		}
		return true
	})
	checkErrs(t, cv)
	if got := lb.nodesSince("bob", 0); slices.ContainsFunc(got, func(n int) bool { return n != 1 }) {
		t.Fatalf("before the kill, bob's connections went to nodes %v; want node 2 only", plusOne(got))
	}
	mark := lb.mark()
	nodes[1].stop(syscall.SIGKILL)
	cv.mu.Lock()
	sentAtKill := maps.Clone(cv.sent)
	cv.mu.Unlock()
	t.Logf("killed node 2 with %v sent", sentAtKill)

	// Everything arrives, once.
	cv.wait(ctx, t, 3*time.Minute, "every message of every stream to arrive", func() bool {
		if len(cv.errs) > 0 {
			return true
		}
		for _, s := range streams {
			for _, r := range s.recipients {
				if cv.received(r, s) < perStream {
					return false
				}
			}
		}
		return true
	})
	stopSending()
	senders.Wait()
	stopReceiving()
	receivers.Wait()
	checkErrs(t, cv)

	// bob's delivery WebSocket was on node 2, and every stream to him had
	// messages left when it died (checked below): that they all arrived
	// means his client reconnected, and the balancer says where.
	after := lb.nodesSince("bob", mark)
	if len(after) == 0 || slices.Contains(after, 1) {
		t.Errorf("after the kill, bob's connections went to nodes %v; want some, none to node 2", plusOne(after))
	}
	for _, s := range streams {
		if sentAtKill[s.key()] >= perStream {
			t.Errorf("stream %s was finished before the kill", s.key())
		}
		for _, r := range s.recipients {
			var want []int
			for i := range perStream {
				want = append(want, i)
			}
			if got := cv.order[r][s.key()]; !slices.Equal(got, want) {
				t.Errorf("%s received %s as %v; want each of 0..%d once, in order", r, s.key(), got, perStream-1)
			}
		}
	}
	for _, r := range names {
		for body, n := range cv.got[r] {
			if n != 1 {
				t.Errorf("%s received %q %d times", r, body, n)
			}
		}
		for id, n := range cv.ids[r] {
			if n != 1 {
				t.Errorf("%s received message id %s %d times", r, id, n)
			}
		}
		st := clients[r].Stats()
		t.Logf("%s: %d messages, %d redelivered by the server and recognised, %d dropped", r, len(cv.got[r]), st.Redelivered, st.Dropped)
		if st.Dropped != 0 {
			t.Errorf("%s's client dropped %d envelopes it could not decrypt", r, st.Dropped)
		}
	}
	t.Logf("bob's connections after the kill went to nodes %v", plusOne(after))

	// The surviving nodes stop cleanly.
	nodes[0].stop(syscall.SIGTERM)
	nodes[2].stop(syscall.SIGTERM)
}

func checkErrs(t *testing.T, cv *conversation) {
	t.Helper()
	cv.mu.Lock()
	errs := slices.Clone(cv.errs)
	cv.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d errors, the first ones:\n%s", len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
}

// describeErr adds the server's error code, when there is one.
func describeErr(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return fmt.Sprintf("%v (code %s)", err, ae.Code)
	}
	return err.Error()
}

// plusOne numbers nodes from 1, as the test's messages do.
func plusOne(nodes []int) []int {
	out := make([]int, len(nodes))
	for i, n := range nodes {
		out[i] = n + 1
	}
	return out
}
