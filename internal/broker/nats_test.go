package broker_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/broker/brokertest"
)

// natsURL is the NATS server the tests use, from DOORLESS_TEST_NATS.
func natsURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("DOORLESS_TEST_NATS")
	if u == "" {
		t.Skip("DOORLESS_TEST_NATS is not set (e.g. nats://127.0.0.1:4222): skipping the NATS broker tests")
	}
	return u
}

// testPrefix is a subject prefix of its own for one test, so that parallel
// tests and runs on one NATS do not hear each other.
func testPrefix() string {
	var b [8]byte
	rand.Read(b[:])
	return "doorlesstest." + hex.EncodeToString(b[:])
}

func dial(t *testing.T, url, prefix string, events chan<- bool) *broker.NATS {
	t.Helper()
	cfg := broker.NATSConfig{URL: url, Prefix: prefix, Name: "doorless-test"}
	if events != nil {
		cfg.OnConnection = func(up bool, _ error) { events <- up }
	}
	b, err := broker.DialNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// natsCluster is n brokers ("nodes", each with its own connection) on one
// NATS with one prefix.
func natsCluster(t *testing.T, url string, n int) brokertest.Cluster {
	prefix := testPrefix()
	var nodes []*broker.NATS
	var c brokertest.Cluster
	for range n {
		b := dial(t, url, prefix, nil)
		nodes = append(nodes, b)
		c.Nodes = append(c.Nodes, b)
	}
	// Twice round: what one node published before the first pass may be
	// for a node flushed before it.
	c.Settle = func(t *testing.T) {
		t.Helper()
		for range 2 {
			for _, b := range nodes {
				if err := b.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return c
}

func TestNATSConformance(t *testing.T) {
	url := natsURL(t)
	t.Run("OneNode", func(t *testing.T) {
		brokertest.Run(t, func(t *testing.T) brokertest.Cluster { return natsCluster(t, url, 1) })
	})
	t.Run("TwoNodes", func(t *testing.T) {
		brokertest.Run(t, func(t *testing.T) brokertest.Cluster { return natsCluster(t, url, 2) })
	})
	t.Run("ThreeNodes", func(t *testing.T) {
		brokertest.Run(t, func(t *testing.T) brokertest.Cluster { return natsCluster(t, url, 3) })
	})
}

// TestNATSPrefixes: brokers with different prefixes do not hear each other.
func TestNATSPrefixes(t *testing.T) {
	url := natsURL(t)
	a, b := dial(t, url, testPrefix(), nil), dial(t, url, testPrefix(), nil)
	ch, cancel, err := a.Subscribe("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	chB, cancelB, err := b.Subscribe("a", 1) // does not displace a's
	if err != nil {
		t.Fatal(err)
	}
	defer cancelB()
	b.Notify("a", 1, broker.Mail)
	for range 2 {
		for _, n := range []*broker.NATS{a, b} {
			if err := n.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case s := <-ch:
		t.Fatalf("a's subscriber heard %v from another prefix", s)
	default:
	}
	if s := <-chB; s != broker.Mail {
		t.Fatalf("got %v", s)
	}
}

func TestNATSClosed(t *testing.T) {
	b := dial(t, natsURL(t), testPrefix(), nil)
	ch, _, err := b.Subscribe("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	b.Notify("a", 1, broker.Mail) // dropped, no panic
	if _, _, err := b.Subscribe("a", 1); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("subscribe after close: %v, want ErrClosed", err)
	}
	if err := b.Flush(t.Context()); err == nil {
		t.Fatal("flush after close succeeded")
	}
	select {
	case s := <-ch:
		t.Fatalf("signal %v after close", s)
	default:
	}
}

func TestNATSDialErrors(t *testing.T) {
	if _, err := broker.DialNATS(broker.NATSConfig{URL: "nats://127.0.0.1:4222", Prefix: "a.*"}); err == nil {
		t.Error("a wildcard prefix was accepted")
	}
	for _, p := range []string{".a", "a.", "a..b", "a b", ">"} {
		if _, err := broker.DialNATS(broker.NATSConfig{URL: "nats://127.0.0.1:4222", Prefix: p}); err == nil {
			t.Errorf("prefix %q was accepted", p)
		}
	}
	// Nothing listens on a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = broker.DialNATS(broker.NATSConfig{URL: "nats://user:hunter2@" + addr})
	if err == nil {
		t.Fatal("dialled nothing")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("the error shows the URL's password: %v", err)
	}
}

// natsServer runs a nats-server of the test's own on port, for tests that
// stop it (never the machine's shared one).
type natsServer struct {
	cmd *exec.Cmd
}

func startNATSServer(t *testing.T, bin string, port int) *natsServer {
	t.Helper()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &natsServer{cmd}
	t.Cleanup(s.stop)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), "Server is ready") {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
	}()
	if !<-ready {
		t.Fatal("nats-server did not start")
	}
	return s
}

func (s *natsServer) stop() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// TestNATSReconnect: the NATS server goes away and comes back. Signals
// sent meanwhile are lost, so every subscriber is told to look again once
// its broker is back; after that signals and displacement work again.
func TestNATSReconnect(t *testing.T) {
	natsURL(t) // runs with the NATS tests
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nats-server"); err != nil {
			t.Skip("no nats-server binary to start and stop: skipping the reconnection test")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := startNATSServer(t, bin, port)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	prefix := testPrefix()
	eventsA, eventsB := make(chan bool, 8), make(chan bool, 8)
	a, b := dial(t, url, prefix, eventsA), dial(t, url, prefix, eventsB)

	ch, _, err := a.Subscribe("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	srv.stop()
	if up := <-eventsA; up {
		t.Fatal("reconnected before the server stopped")
	}
	if up := <-eventsB; up {
		t.Fatal("reconnected before the server stopped")
	}
	b.Notify("a", 1, broker.Revoked) // perhaps lost
	// A subscription made while NATS is away still succeeds.
	ch2, _, err := a.Subscribe("a", 2)
	if err != nil {
		t.Fatal(err)
	}

	startNATSServer(t, bin, port)
	if up := <-eventsA; !up {
		t.Fatal("no reconnection")
	}
	if up := <-eventsB; !up {
		t.Fatal("no reconnection")
	}
	lookAgain := broker.Mail | broker.Keys | broker.Provisioned
	for _, c := range []<-chan broker.Signal{ch, ch2} {
		// The revocation may arrive as well, before or merged.
		var all broker.Signal
		for all&lookAgain != lookAgain {
			all |= <-c
		}
		if all&^broker.Revoked != lookAgain {
			t.Fatalf("after reconnection: %v, want %v", all, lookAgain)
		}
	}
	for range 2 {
		for _, n := range []*broker.NATS{a, b} {
			if err := n.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-ch: // a late revocation
	default:
	}

	b.Notify("a", 1, broker.Mail)
	if s := <-ch; s != broker.Mail {
		t.Fatalf("after reconnection: %v, want mail", s)
	}
	if _, _, err := b.Subscribe("a", 2); err != nil {
		t.Fatal(err)
	}
	if s := <-ch2; s != broker.Displaced {
		t.Fatalf("after reconnection: %v, want displaced", s)
	}
}

// TestNATSFlushContext: Flush gives up with its context.
func TestNATSFlushContext(t *testing.T) {
	b := dial(t, natsURL(t), testPrefix(), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush with a cancelled context succeeded")
	}
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}
