package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
)

// watchedBroker tells, on subs, each subject a subscription was made for,
// once it is made: a test knows a long-poll is waiting without sleeping.
type watchedBroker struct {
	*broker.Memory
	subs chan string
}

func (b *watchedBroker) Subscribe(account string, device uint32) (<-chan broker.Signal, func(), error) {
	ch, cancel, err := b.Memory.Subscribe(account, device)
	b.subs <- account
	return ch, cancel, err
}

func newWatched() *watchedBroker {
	return &watchedBroker{Memory: broker.NewMemory(), subs: make(chan string, 16)}
}

// awaitPoll waits until a long-poll has subscribed.
func (b *watchedBroker) awaitPoll(t *testing.T) {
	t.Helper()
	for {
		select {
		case s := <-b.subs:
			if strings.HasPrefix(s, "provisioning.") {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no long-poll subscribed")
		}
	}
}

func (e *env) openMailbox() string {
	e.t.Helper()
	var a api.ProvisioningAddress
	e.ok(e.do(nil, "POST", api.PathProvisioning, nil), &a)
	if len(a.Address) != 22 {
		e.t.Fatalf("address %q", a.Address)
	}
	return a.Address
}

func (e *env) poll(address string) *http.Response {
	e.t.Helper()
	return e.do(nil, "GET", "/v1/provisioning/"+address, nil)
}

func (e *env) put(u *user, address string, msg []byte) *http.Response {
	e.t.Helper()
	return e.do(u, "PUT", "/v1/provisioning/"+address, api.ProvisioningMessage{Message: msg})
}

func wantStatus(t *testing.T, resp *http.Response, status int) {
	t.Helper()
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status)
	}
}

func TestProvisioning(t *testing.T) {
	e := newEnv(t, nil, func(s *Server) { s.provisioningWait = time.Millisecond })
	alice := e.register("alice", 0, 0)
	addr := e.openMailbox()
	if other := e.openMailbox(); other == addr {
		t.Fatal("two mailboxes with one address")
	}

	// Nothing yet: 204 once the wait is over.
	wantStatus(t, e.poll(addr), http.StatusNoContent)

	msg := bytes.Repeat([]byte{0xa5}, api.MaxProvisioningMessage)
	wantStatus(t, e.put(alice, addr, msg), http.StatusNoContent)
	e.fails(e.put(alice, addr, []byte("second")), http.StatusConflict, api.CodeDuplicate)

	var got api.ProvisioningMessage
	e.ok(e.poll(addr), &got)
	if !bytes.Equal(got.Message, msg) {
		t.Fatalf("message of %d bytes, want the %d put", len(got.Message), len(msg))
	}
	// Once only: then the mailbox is gone.
	e.fails(e.poll(addr), http.StatusNotFound, api.CodeNotFound)
	e.fails(e.put(alice, addr, []byte("again")), http.StatusNotFound, api.CodeNotFound)
}

func TestProvisioningRefusals(t *testing.T) {
	e := newEnv(t, nil, func(s *Server) { s.provisioningWait = time.Millisecond })
	alice := e.register("alice", 0, 0)
	addr := e.openMailbox()

	e.fails(e.put(nil, addr, []byte("x")), http.StatusUnauthorized, api.CodeUnauthorized)
	e.fails(e.put(alice, addr, nil), http.StatusBadRequest, api.CodeBadRequest)
	e.fails(e.put(alice, addr, make([]byte, api.MaxProvisioningMessage+1)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	e.fails(e.do(alice, "PUT", "/v1/provisioning/"+addr, strings.Repeat("x", maxProvisioningBody+1)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	for _, bad := range []string{"x", addr[:21], addr + "A", strings.Repeat("!", 22), strings.Repeat("A", 21) + "B", "AAAAAAAAAAAAAAAAAAAAAA"} {
		e.fails(e.poll(bad), http.StatusNotFound, api.CodeNotFound)
		e.fails(e.put(alice, bad, []byte("x")), http.StatusNotFound, api.CodeNotFound)
	}
	// The refusals left the mailbox empty and open.
	wantStatus(t, e.poll(addr), http.StatusNoContent)
	wantStatus(t, e.put(alice, addr, []byte("ok")), http.StatusNoContent)
}

func TestProvisioningExpiry(t *testing.T) {
	clk := newClock()
	e := newEnv(t, func(c *Config) { c.Now = clk.Now }, func(s *Server) { s.provisioningWait = time.Millisecond })
	alice := e.register("alice", 0, 0)
	full, empty := e.openMailbox(), e.openMailbox()
	wantStatus(t, e.put(alice, full, []byte("m")), http.StatusNoContent)
	clk.advance(provisioningTTL)
	e.fails(e.poll(full), http.StatusNotFound, api.CodeNotFound)
	e.fails(e.put(alice, empty, []byte("m")), http.StatusNotFound, api.CodeNotFound)
	e.srv.sweep(context.Background())
	// Swept: gone even for a clock that says they were valid.
	for _, a := range []string{full, empty} {
		h, _ := parseAddress(a)
		if _, err := e.st.TakeMailbox(context.Background(), h, time.UnixMilli(0)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("mailbox after the sweep: %v", err)
		}
	}
	fresh := e.openMailbox()
	wantStatus(t, e.poll(fresh), http.StatusNoContent)
}

// TestProvisioningWakeUp: a long-poll waiting for far longer than the test
// answers as soon as the message is put.
func TestProvisioningWakeUp(t *testing.T) {
	br := newWatched()
	e := newEnv(t, func(c *Config) { c.Broker = br }, func(s *Server) { s.provisioningWait = time.Hour })
	alice := e.register("alice", 0, 0)
	addr := e.openMailbox()
	done := make(chan *http.Response)
	go func() { done <- e.poll(addr) }()
	br.awaitPoll(t)
	wantStatus(t, e.put(alice, addr, []byte("wake up")), http.StatusNoContent)
	var got api.ProvisioningMessage
	e.ok(<-done, &got)
	if string(got.Message) != "wake up" {
		t.Fatalf("message %q", got.Message)
	}
}

// TestProvisioningDisplaced: a second poll of the same mailbox takes over;
// the first answers 204, the second gets the message.
func TestProvisioningDisplaced(t *testing.T) {
	br := newWatched()
	e := newEnv(t, func(c *Config) { c.Broker = br }, func(s *Server) { s.provisioningWait = time.Hour })
	alice := e.register("alice", 0, 0)
	addr := e.openMailbox()
	first, second := make(chan *http.Response), make(chan *http.Response)
	go func() { first <- e.poll(addr) }()
	br.awaitPoll(t)
	go func() { second <- e.poll(addr) }()
	wantStatus(t, <-first, http.StatusNoContent)
	wantStatus(t, e.put(alice, addr, []byte("m")), http.StatusNoContent)
	e.ok(<-second, nil)
}

// TestProvisioningShutdown: Shutdown ends a waiting long-poll (with 204)
// instead of waiting out its hour.
func TestProvisioningShutdown(t *testing.T) {
	br := newWatched()
	e := newEnv(t, func(c *Config) { c.Broker = br }, func(s *Server) { s.provisioningWait = time.Hour })
	addr := e.openMailbox()
	done := make(chan *http.Response)
	go func() { done <- e.poll(addr) }()
	br.awaitPoll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a long-poll waiting: %v", err)
	}
	wantStatus(t, <-done, http.StatusNoContent)
}
