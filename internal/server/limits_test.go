package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(RateLimit{Rate: 2, Burst: 3}, 2)
		for i := range 3 {
			if ok, _ := l.allow("a", time.Now()); !ok {
				t.Fatalf("request %d refused within the burst", i)
			}
		}
		ok, retry := l.allow("a", time.Now())
		if ok || retry != 500*time.Millisecond {
			t.Fatalf("over the burst: %v, retry %v", ok, retry)
		}
		if ok, _ := l.allow("b", time.Now()); !ok {
			t.Fatal("another key shares the bucket")
		}
		time.Sleep(retry)
		if ok, _ := l.allow("a", time.Now()); !ok {
			t.Fatal("not refilled after Retry-After")
		}
		if ok, _ := l.allow("a", time.Now()); ok {
			t.Fatal("refilled more than the rate")
		}

		// The table stays bounded: a third key evicts one.
		l.allow("c", time.Now())
		if len(l.buckets) != 2 {
			t.Fatalf("%d buckets, bound 2", len(l.buckets))
		}
		// Full buckets are pruned.
		time.Sleep(2 * time.Second)
		l.prune(time.Now())
		if len(l.buckets) != 0 {
			t.Fatalf("%d buckets after prune", len(l.buckets))
		}

		unlimited := newLimiter(RateLimit{Rate: -1}, 1)
		for range 100 {
			if ok, _ := unlimited.allow("a", time.Now()); !ok {
				t.Fatal("a negative rate limits")
			}
		}
	})
}

func TestRateLimitHTTP(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.IPRate = RateLimit{Rate: 1, Burst: 4}
		c.AccountRate = RateLimit{Rate: 0.5, Burst: 2}
	})
	alice := e.register("alice", 0, 0) // 1 IP token
	e.ok(e.do(alice, "GET", api.PathDevices, nil), nil)
	e.ok(e.do(alice, "GET", api.PathDevices, nil), nil)
	resp := e.do(alice, "GET", api.PathDevices, nil) // account bucket empty
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	e.fails(resp, 429, api.CodeRateLimited)
	resp = e.do(nil, "GET", api.PathDevices, nil) // IP bucket empty
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	e.fails(resp, 429, api.CodeRateLimited)
	// Health and metrics are not limited.
	e.ok(e.do(nil, "GET", api.PathHealth, nil), nil)

	b := e.metrics()
	for _, want := range []string{`doorless_rate_limited_total{scope="ip"} 1`, `doorless_rate_limited_total{scope="account"} 1`} {
		if !strings.Contains(b, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestRateLimitIPv6Prefix: IPv4 addresses are charged one by one, IPv6
// addresses by their /64, so that one host cannot take a fresh bucket per
// address of its prefix.
func TestRateLimitIPv6Prefix(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IPRate = RateLimit{Rate: 0.001, Burst: 1} })
	status := func(remote string) int {
		t.Helper()
		r := httptest.NewRequest("GET", api.PathDevices, nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(w, r)
		return w.Code
	}
	for _, tt := range []struct {
		remote string
		want   int
	}{
		{"[2001:db8:1:2::1]:1000", 401},
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:1001", 429}, // same /64
		{"[2001:db8:1:3::1]:1000", 401},                  // next /64
		{"192.0.2.1:1000", 401},
		{"192.0.2.2:1000", 401},          // IPv4: each address its own
		{"192.0.2.1:1001", 429},          // another port, same address
		{"[::ffff:192.0.2.2]:1000", 429}, // IPv4-mapped is the IPv4 address
	} {
		if got := status(tt.remote); got != tt.want {
			t.Errorf("request from %s: %d, want %d", tt.remote, got, tt.want)
		}
	}
}

func (e *env) metrics() string {
	e.t.Helper()
	resp := e.do(nil, "GET", api.PathMetrics, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("metrics: %d", resp.StatusCode)
	}
	return string(b)
}

// syncBuffer is a log sink for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestObservability: health, metrics and logs say what happened, by route,
// and never who, with what keys, or what.
func TestObservability(t *testing.T) {
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Registerer = reg
	})
	var health map[string]string
	e.ok(e.do(nil, "GET", api.PathHealth, nil), &health)
	if health["status"] != "ok" {
		t.Fatalf("healthz %v", health)
	}

	alice := e.register("alice", 20, 20)
	bob := e.register("bobby_secret", 20, 20)
	e.sendOK(alice, bob, "the content")
	c := e.dial(bob)
	f := readType(t, c, api.FrameEnvelope)
	ack(t, c, f.Envelope.ID)
	readType(t, c, api.FrameQueueEmpty)
	e.bundle(alice, "/v1/keys/bobby_secret/1")
	e.fails(e.do(&user{id: alice.id, device: 1, password: "wrong-password"}, "GET", api.PathDevices, nil), 401, api.CodeUnauthorized)
	// Error paths: a malformed body (cut short) and one whose content is
	// not base64, both carrying what must not be logged.
	contentB64 := base64.StdEncoding.EncodeToString([]byte("the content"))
	e.fails(e.do(alice, "PUT", "/v1/messages/bobby_secret", `{"id":"`+api.NewUUID()+`","timestamp":1,"messages":[{"device_id":1,"type":2,"content":"`+contentB64+`"`), 400, api.CodeBadRequest)
	e.fails(e.do(alice, "PUT", "/v1/messages/bobby_secret", `{"id":"`+api.NewUUID()+`","timestamp":1,"messages":[{"device_id":1,"type":2,"content":"the content!"}]}`), 400, api.CodeBadRequest)
	c.Close(websocket1000, "")
	// Shutdown waits for the WebSocket's handler, which counts it as it ends.
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := rec.Body.String()
	for _, want := range []string{
		`doorless_http_requests_total{route="PUT /v1/messages/{username}",status="200"} 1`,
		`doorless_http_requests_total{route="PUT /v1/messages/{username}",status="400"} 2`,
		`doorless_http_requests_total{route="POST /v1/accounts",status="200"} 2`,
		`doorless_http_requests_total{route="GET /v1/devices",status="401"} 1`,
		`doorless_http_requests_total{route="GET /v1/websocket",status="101"}`,
		`doorless_messages_enqueued_total 1`,
		`doorless_messages_delivered_total 1`,
		`doorless_messages_acked_total 1`,
		`doorless_websockets_open 0`,
		`doorless_websocket_closes_total{reason=`,
		`doorless_http_request_duration_seconds_bucket{route="GET /v1/keys/{username}/{device}"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	l := logs.String()
	if !strings.Contains(l, `"route":"PUT /v1/messages/{username}"`) || !strings.Contains(l, `"status":200`) || !strings.Contains(l, `"duration"`) {
		t.Errorf("request log lines lack route, status or duration:\n%s", l)
	}
	// Ciphertext, keys and credentials would appear base64-encoded in JSON
	// logs; the unpadded form also finds them padded.
	b64 := func(b []byte) string { return strings.TrimRight(base64.StdEncoding.EncodeToString(b), "=") }
	for _, secret := range []string{
		"bobby_secret", alice.password, bob.password, "wrong-password", alice.id, f.Envelope.ID,
		"the content", b64([]byte("the content")),
		b64(alice.identity.PublicKey().Bytes()), b64(bob.identity.PublicKey().Bytes()),
		strings.TrimPrefix(alice.auth(), "Basic "), strings.TrimPrefix(bob.auth(), "Basic "),
	} {
		if strings.Contains(m, secret) {
			t.Errorf("metrics contain %q", secret)
		}
		if strings.Contains(l, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

// expiryStore records the cutoffs Run asks for.
type expiryStore struct {
	store.Store
	mu      sync.Mutex
	cutoffs []time.Time
	nows    []time.Time // of ExpireProvisioning
	reports []time.Time // cutoffs of ExpireReports
}

func (s *expiryStore) ExpireReports(_ context.Context, cutoff time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = append(s.reports, cutoff)
	return 0, nil
}

func (s *expiryStore) ExpireProvisioning(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nows = append(s.nows, now)
	return 0, nil
}

func (s *expiryStore) Expire(_ context.Context, cutoff time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutoffs = append(s.cutoffs, cutoff)
	return 2, nil
}

func TestRunExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &expiryStore{}
		srv, err := New(Config{Store: st, MessageTTL: 24 * time.Hour, SweepInterval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- srv.Run(ctx) }()
		time.Sleep(3*time.Minute + time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if len(st.cutoffs) != 4 {
			t.Fatalf("%d sweeps in 3 minutes, want 4 (one at start)", len(st.cutoffs))
		}
		for i, c := range st.cutoffs {
			if want := start.Add(time.Duration(i)*time.Minute - 24*time.Hour); !c.Equal(want) {
				t.Errorf("sweep %d cutoff %v, want %v", i, c, want)
			}
		}
		// Link tokens and provisioning mailboxes expire at their own
		// time, not after the message TTL.
		if len(st.nows) != 4 {
			t.Fatalf("%d provisioning sweeps in 3 minutes, want 4", len(st.nows))
		}
		for i, n := range st.nows {
			if want := start.Add(time.Duration(i) * time.Minute); !n.Equal(want) {
				t.Errorf("provisioning sweep %d at %v, want %v", i, n, want)
			}
		}
		// Abuse reports go 90 days after they were made.
		if len(st.reports) != 4 {
			t.Fatalf("%d report sweeps in 3 minutes, want 4", len(st.reports))
		}
		for i, c := range st.reports {
			if want := start.Add(time.Duration(i)*time.Minute - 90*24*time.Hour); !c.Equal(want) {
				t.Errorf("report sweep %d cutoff %v, want %v", i, c, want)
			}
		}
	})
}

// TestExpiry runs the sweep against the real store with a clock moved past
// the TTL.
func TestExpiry(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	e := newEnv(t, func(c *Config) {
		c.MessageTTL = time.Hour
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 20, 20)
	e.sendOK(alice, bob, "old")
	mu.Lock()
	now = now.Add(30 * time.Minute)
	mu.Unlock()
	e.sendOK(alice, bob, "new")
	mu.Lock()
	now = now.Add(45 * time.Minute)
	mu.Unlock()
	e.srv.sweep(context.Background())
	if n := e.queueLen(bob); n != 1 {
		t.Fatalf("queue after expiry: %d, want 1", n)
	}
	c := e.dial(bob)
	if f := readType(t, c, api.FrameEnvelope); string(f.Envelope.Content) != "new" {
		t.Fatalf("%q survived expiry", f.Envelope.Content)
	}
	if !strings.Contains(e.metrics(), "doorless_messages_expired_total 1") {
		t.Error("expired envelopes not counted")
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	e := newEnv(t, nil)
	e.fails(e.do(nil, "GET", "/v2/nothing", nil), 404, api.CodeNotFound)
	resp := e.do(nil, "DELETE", api.PathAccounts, nil)
	if resp.Header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
	e.fails(resp, http.StatusMethodNotAllowed, api.CodeBadRequest)
}

// TestUnroutedNotCharged: as docs/api.md says, 404s and 405s are not
// charged to the IP's rate limit.
func TestUnroutedNotCharged(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IPRate = RateLimit{Rate: 0.001, Burst: 1} })
	for range 3 {
		e.fails(e.do(nil, "GET", "/v1/nothing", nil), 404, api.CodeNotFound)
		e.fails(e.do(nil, "DELETE", api.PathAccounts, nil), 405, api.CodeBadRequest)
	}
	e.fails(e.do(nil, "GET", api.PathDevices, nil), 401, api.CodeUnauthorized) // the one token
	e.fails(e.do(nil, "GET", api.PathDevices, nil), 429, api.CodeRateLimited)
}

// TestWebSocketNotUpgrade: as docs/api.md says, an authenticated request
// that is not an upgrade is answered in text/plain, not the JSON error.
func TestWebSocketNotUpgrade(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 0, 0)
	resp := e.do(bob, "GET", api.PathWebSocket, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("not an upgrade: %d %s, want 426 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
