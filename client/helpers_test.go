package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/blob"
	"github.com/doorless/doorless/internal/certs"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	// argon2id at its real cost would dominate the tests.
	kdfParams = profile.KDFParams{Time: 1, Memory: 64, Threads: 1}
	// Durability across power loss is not what these tests test.
	profile.Synchronous = "OFF"
	backoffMin, backoffMax = time.Millisecond, 10*time.Millisecond
	os.Exit(m.Run())
}

// testServer is doorlessd in-process over a fresh SQLite store.
type testServer struct {
	url  string
	hs   *httptest.Server
	st   *sqlite.Store
	path string // the store's database file
}

func newServer(t *testing.T, mod func(*server.Config)) *testServer {
	t.Helper()
	return newWrappedServer(t, mod, nil)
}

// newWrappedServer puts wrap (when not nil) in front of the server's handler.
func newWrappedServer(t *testing.T, mod func(*server.Config), wrap func(http.Handler) http.Handler) *testServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doorless.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if _, err := certs.Init(certDir); err != nil {
		t.Fatal(err)
	}
	issuer, err := certs.Load(certDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Store:            st,
		IPRate:           server.RateLimit{Rate: -1},
		AccountRate:      server.RateLimit{Rate: -1},
		UnidentifiedRate: server.RateLimit{Rate: -1},
		Certificates:     issuer,
		Transparency:     testTransparency(t),
	}
	if cfg.Blobs, err = blob.NewFS(t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	// Run publishes account changes in the transparency log (and sweeps).
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		srv.Run(runCtx)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		stopRun()
		<-runDone
		hs.Close()
		st.Close()
	})
	return &testServer{url: hs.URL, hs: hs, st: st, path: path}
}

// testTransparency is a key transparency configuration with fresh keys.
func testTransparency(t *testing.T) *server.TransparencyConfig {
	t.Helper()
	k, err := ktkeys.Generate(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return &server.TransparencyConfig{Log: k.LogConfig(), LogKey: k.LogKey}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// register makes a user with a profile in a fresh directory.
func (s *testServer) register(t *testing.T, name string, opt Options) (*Client, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	c, err := Register(ctxT(t), dir, s.url, name, "", opt)
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	// Receipts are events of their own: tests of other things go
	// without them (receipts_test.go turns them on).
	if err := c.SetReceipts(ctxT(t), false, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dir
}

func mustSend(t *testing.T, from *Client, to, text string) *SendResult {
	t.Helper()
	res, err := from.Send(ctxT(t), to, text)
	if err != nil {
		t.Fatalf("%s sends to %s: %v", from.Username(), to, err)
	}
	return res
}

// receive runs Receive until the queue is empty and returns the events.
func receive(t *testing.T, c *Client) []Event {
	t.Helper()
	var evs []Event
	err := c.Receive(ctxT(t), ReceiveOptions{UntilEmpty: true}, func(ev Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		t.Fatalf("%s receives: %v", c.Username(), err)
	}
	return evs
}

// texts returns the texts of the messages among evs, checking their sender.
func texts(t *testing.T, evs []Event, from string) []string {
	t.Helper()
	var out []string
	for _, ev := range evs {
		m, ok := ev.(*Message)
		if !ok {
			t.Fatalf("unexpected event %#v", ev)
		}
		if m.From != from {
			t.Errorf("message from %q, want %q", m.From, from)
		}
		out = append(out, m.Text)
	}
	return out
}

func wantTexts(t *testing.T, evs []Event, from string, want ...string) {
	t.Helper()
	got := texts(t, evs, from)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

// keyStatus asks the server how many one-time keys c's device has left.
func keyStatus(t *testing.T, c *Client) api.KeyStatus {
	t.Helper()
	var ks api.KeyStatus
	if err := c.do(ctxT(t), http.MethodGet, api.PathKeyStatus, nil, &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// cutter is an HTTP client whose connections the test can cut.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	dials int
}

func (k *cutter) client() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				k.mu.Lock()
				k.conns = append(k.conns, c)
				k.dials++
				k.mu.Unlock()
			}
			return c, err
		},
	}}
}

func (k *cutter) cut() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.conns {
		c.Close()
	}
	k.conns = nil
}

// textContent is the content of a text message.
func textContent(text string) *content.Content {
	return &content.Content{Timestamp: time.Now().UnixMilli(), Body: text}
}

// encodeText makes the padded content of a text message, franked, and its
// commitment (under a zero account key: a recipient checks the commitment,
// which it can, not the sender tag, which only the server can).
func encodeText(text string) (pt, commitment []byte, err error) {
	return encodeFranked(textContent(text), [32]byte{}, "")
}
