package client

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
)

// interceptor answers chosen requests itself, in front of the real server.
type interceptor struct {
	// onSend, when set, sees every PUT /v1/messages before the server does.
	// It returns true when it has answered the request itself.
	onSend atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler) bool]
	sends  atomic.Int32
}

func (ic *interceptor) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/messages/") {
			ic.sends.Add(1)
			if f := ic.onSend.Load(); f != nil && (*f)(w, r, next) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// once installs f for the next send only.
func (ic *interceptor) once(f func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	var used atomic.Bool
	g := func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if used.Swap(true) {
			return false
		}
		f(w, r, next)
		return true
	}
	ic.onSend.Store(&g)
}

func writeAPIError(w http.ResponseWriter, status int, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&api.ErrorBody{Error: e})
}

// TestSendStaleDevices: a 410 makes the sender replace the session with a
// new one from a fresh bundle, and the message arrives.
func TestSendStaleDevices(t *testing.T) {
	t.Parallel()
	var ic interceptor
	s := newWrappedServer(t, nil, ic.wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "one")
	mustSend(t, bob, "alice", "ack")
	receive(t, alice)

	ic.once(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		writeAPIError(w, http.StatusGone, &api.Error{Code: api.CodeStaleDevices, Message: "stale", StaleDevices: []uint32{1}})
	})
	before := ic.sends.Load()
	res := mustSend(t, alice, "bob", "two")
	if res.Devices != 1 || ic.sends.Load()-before != 2 {
		t.Fatalf("result %+v after %d sends", res, ic.sends.Load()-before)
	}
	wantTexts(t, receive(t, bob), "alice", "one", "two")
}

// TestSendExtraDevices: a session with a device the user no longer has is
// dropped on the server's 409, and the message goes to the others.
func TestSendExtraDevices(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "one")
	// A session with a device 2 that does not exist.
	err := alice.st.Update(ctxT(t), func(tx *profile.Tx) error {
		rec, err := tx.Session(bob.AccountID(), 1)
		if err != nil {
			return err
		}
		return tx.PutSession(bob.AccountID(), 2, rec, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	res := mustSend(t, alice, "bob", "two")
	if res.Devices != 1 {
		t.Fatalf("result %+v", res)
	}
	wantTexts(t, receive(t, bob), "alice", "one", "two")
	var devices []uint32
	alice.st.View(ctxT(t), func(tx *profile.Tx) error {
		devices, err = tx.SessionDevices(bob.AccountID())
		return err
	})
	if len(devices) != 1 || devices[0] != 1 {
		t.Errorf("sessions with devices %v", devices)
	}
}

// TestSendLostAnswer: the server queued the message but its answer was lost;
// the sender repeats the request, the server says "duplicate", and the
// message is delivered once.
func TestSendLostAnswer(t *testing.T) {
	t.Parallel()
	var ic interceptor
	s := newWrappedServer(t, nil, ic.wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	ic.once(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(discard{}, r)
		// Cut the connection instead of answering.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	})
	res := mustSend(t, alice, "bob", "once")
	if res.Devices != 1 || ic.sends.Load() != 2 {
		t.Fatalf("result %+v after %d sends", res, ic.sends.Load())
	}
	wantTexts(t, receive(t, bob), "alice", "once")
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// TestLastResortReplayRefused: a first message made with the last-resort
// Kyber prekey, sent again after its session is gone, is refused rather than
// starting a second session.
func TestLastResortReplayRefused(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	// Take every one-time key of bob's, so that the next bundle has the
	// last-resort Kyber prekey and no one-time prekey.
	for range targetPreKeys {
		var br api.BundleResponse
		if err := alice.do(ctxT(t), http.MethodGet, bundlePath("bob", 1), nil, &br); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := alice.encryptFor(ctxT(t), "bob", mustPad(t, "first"), nil, new(SendResult))
	if err != nil {
		t.Fatal(err)
	}
	rawSend := func() {
		t.Helper()
		req := &api.SendRequest{ID: api.NewUUID(), Timestamp: time.Now().UnixMilli(), Messages: msgs}
		if _, err := alice.putMessages(ctxT(t), "bob", req); err != nil {
			t.Fatal(err)
		}
	}
	rawSend()
	wantTexts(t, receive(t, bob), "alice", "first")
	// Bob's session with alice is lost; the same first message comes again.
	err = bob.st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.DeleteSession(alice.AccountID(), 1) })
	if err != nil {
		t.Fatal(err)
	}
	rawSend()
	if evs := receive(t, bob); len(evs) != 0 {
		t.Fatalf("replayed first message accepted: %v", evs)
	}
	if d := bob.Stats().Dropped; d != 1 {
		t.Errorf("dropped %d, want 1", d)
	}
}
