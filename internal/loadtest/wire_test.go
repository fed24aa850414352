package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/doorless/doorless/internal/api"
)

// The server encodes envelope frames with encoding/json; readEnvelope
// must read them, and parseFrame must agree with encoding/json on them
// and on frames laid out otherwise.
func TestParseFrame(t *testing.T) {
	content := bytes.Repeat([]byte("sealed\x00\xff"), 40)
	env := &api.Envelope{ID: api.NewUUID(), Type: api.EnvelopeUnidentifiedSender, ClientTimestamp: 1, ServerTimestamp: 2,
		Content: content, Franking: make([]byte, api.FrankingSize), FrankingTag: make([]byte, api.FrankingSize)}
	served, err := json.Marshal(&api.Frame{Type: api.FrameEnvelope, Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	if id, c, ok := readEnvelope(served, nil); !ok || string(id) != env.ID || !bytes.Equal(c, content) {
		t.Fatalf("readEnvelope of the server's frame: %q %x %v", id, c, ok)
	}
	// The same envelope, keys in another order: encoding/json's path.
	var m map[string]any
	if err := json.Unmarshal(served, &m); err != nil {
		t.Fatal(err)
	}
	reordered, _ := json.Marshal(m) // map keys sorted: "envelope" before "type"
	if _, _, ok := readEnvelope(reordered, nil); ok {
		t.Fatal("readEnvelope read a frame not laid out as the server's")
	}
	for _, b := range [][]byte{served, reordered} {
		kind, id, c, err := parseFrame(b, make([]byte, 0, 8))
		if err != nil || kind != api.FrameEnvelope || string(id) != env.ID || !bytes.Equal(c, content) {
			t.Errorf("parseFrame(%.40s...) = %q %q %x %v", b, kind, id, c, err)
		}
	}

	if kind, _, _, err := parseFrame([]byte(`{"type":"queue_empty"}`), nil); err != nil || kind != api.FrameQueueEmpty {
		t.Errorf("queue_empty: %q %v", kind, err)
	}
	bad := []string{
		`{"type":"envelope","envelope":{"id":"not-a-uuid","content":"AAAA"}}`,
		`{"type":"envelope","envelope":{"id":"` + strings.ToUpper(env.ID) + `","content":"AAAA"}}`,
		`{"type":"envelope"}`,
		`{"type":"envelope","envelope":{"id":"` + env.ID + `","content":"A!AA"}}`,
		`{"type":"envelope","envelope":{"id":"` + env.ID + `","content":"AAAA"}`,
		`not json`,
	}
	for _, b := range bad {
		if kind, _, _, err := parseFrame([]byte(b), nil); err == nil {
			t.Errorf("parseFrame(%s) = %q, no error", b, kind)
		}
	}
}

func TestValidID(t *testing.T) {
	ids := []string{api.NewUUID(), api.NewUUID(), "", "x", strings.ToUpper(api.NewUUID()),
		"123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-42d3-c456-426614174000",
		"123e4567-e89b-42d3-8456-42661417400g", "123e4567-e89b-42d3-8456-4266141740000",
		"123e4567xe89b-42d3-8456-426614174000", "123e4567-e89b-42d3-b456-426614174000"}
	for _, id := range ids {
		if got, want := validID([]byte(id)), api.ValidUUID(id); got != want {
			t.Errorf("validID(%q) = %v, api.ValidUUID says %v", id, got, want)
		}
	}
}

func TestTally(t *testing.T) {
	for _, c := range []struct {
		got, want                 []uint64
		missing, dups, unexpected int
	}{
		{nil, nil, 0, 0, 0},
		{[]uint64{3, 1, 2}, []uint64{1, 2, 3}, 0, 0, 0},
		{[]uint64{2, 2, 2}, []uint64{1, 2, 3}, 2, 2, 0},
		{[]uint64{9, 0, 9, 5}, []uint64{5}, 0, 0, 3},
		{nil, []uint64{1, 4}, 2, 0, 0},
		{[]uint64{7, 1, 1, 4}, []uint64{1, 2, 3, 4, 5}, 3, 1, 1},
	} {
		got := slices.Clone(c.got)
		m, d, u := tally(got, c.want)
		if m != c.missing || d != c.dups || u != c.unexpected {
			t.Errorf("tally(%v, %v) = %d missing, %d duplicates, %d unexpected; want %d, %d, %d",
				c.got, c.want, m, d, u, c.missing, c.dups, c.unexpected)
		}
	}
}

// appendSendRequest must make what json.Marshal makes of the request.
func TestAppendSendRequest(t *testing.T) {
	franking := bytes.Repeat([]byte{0xfb}, api.FrankingSize)
	content := []byte("some ciphertext, stamped at the end\xff\xfe")
	req := api.SendRequest{ID: api.NewUUID(), Timestamp: 1_763_900_000_123, Franking: franking,
		Messages: []api.OutgoingMessage{{DeviceID: api.PrimaryDeviceID, RegistrationID: 16380,
			Type: api.EnvelopeUnidentifiedSender, Content: content}}}
	want, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got := appendSendRequest([]byte("junk"), req.ID, req.Timestamp, franking, 16380, content)
	if !bytes.Equal(got[4:], want) {
		t.Errorf("appendSendRequest:\n%s\njson.Marshal:\n%s", got[4:], want)
	}
}

// A sendClient keeps one connection while the server keeps it open, and
// dials again when the server closes it.
func TestSendClient(t *testing.T) {
	var conns, requests atomic.Int64
	var lastPath atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		lastPath.Store(r.URL.Path)
		if r.Header.Get("X-Test") != "yes" || r.UserAgent() != userAgent || r.ContentLength != 5 || r.Method != http.MethodPut || r.URL.RawQuery != "a=b" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch n {
		case 3:
			w.Header().Set("Connection", "close")
		case 5:
			fmt.Fprint(w, strings.Repeat("chunked ", 1000)) // too big to be sent with a length
			w.(http.Flusher).Flush()
			return
		case 6:
			w.WriteHeader(http.StatusConflict)
		}
		fmt.Fprintf(w, "answer %d", n)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c := newSendClient(context.Background(), &Options{})
	defer c.close()
	for i := 1; i <= 6; i++ {
		status, answer, err := c.do(http.MethodPut, srv.URL, "/x?a=b", "X-Test: yes\r\n", []byte("hello"))
		want := fmt.Sprintf("answer %d", i)
		wantStatus := http.StatusOK
		switch i {
		case 5:
			want = strings.Repeat("chunked ", 1000)
		case 6:
			wantStatus = http.StatusConflict
		}
		if err != nil || status != wantStatus || string(answer) != want {
			t.Fatalf("request %d: %d %.40q %v", i, status, answer, err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections for 6 requests, one closed by the server after the 3rd; want 2", n)
	}

	// A server URL with a path: requests go under it.
	if _, _, err := c.do(http.MethodPut, srv.URL+"/pre", "/x?a=b", "X-Test: yes\r\n", []byte("hello")); err != nil || lastPath.Load() != "/pre/x" {
		t.Errorf("under a path: %v, the server saw %v", err, lastPath.Load())
	}

	// A server gone: an error, and the next request dials again.
	srv.CloseClientConnections()
	if _, _, err := c.do(http.MethodPut, srv.URL, "/x?a=b", "X-Test: yes\r\n", []byte("hello")); err == nil {
		t.Error("no error from a closed connection")
	}
	if _, _, err := c.do(http.MethodPut, srv.URL, "/x?a=b", "X-Test: yes\r\n", []byte("hello")); err != nil {
		t.Errorf("after a closed connection: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := newSendClient(ctx, &Options{}).do(http.MethodGet, srv.URL, "/", "", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled client: %v", err)
	}
}
