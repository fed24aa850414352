package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/doorless/doorless/protocol/keys"
)

// proxy is what a client that talks to "the server" sees: a reverse proxy
// in front of one doorlessd or another, which can also rewrite answers, as
// a malicious operator (or whoever holds its TLS key) would.
type proxy struct {
	t   *testing.T
	url string

	mu      sync.Mutex
	target  *url.URL
	rewrite func(path string, body []byte) []byte // nil: answers pass unchanged
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{t: t}
	p.point(target)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			p.mu.Lock()
			defer p.mu.Unlock()
			r.SetURL(p.target)
		},
		ModifyResponse: func(resp *http.Response) error {
			p.mu.Lock()
			rw := p.rewrite
			p.mu.Unlock()
			if rw == nil || resp.StatusCode != http.StatusOK {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			body = rw(resp.Request.URL.Path, body)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Del("Content-Length")
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// point sends the proxy's traffic to another server from now on.
func (p *proxy) point(target string) {
	u, err := url.Parse(target)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.target = u
	p.mu.Unlock()
}

func (p *proxy) setRewrite(f func(path string, body []byte) []byte) {
	p.mu.Lock()
	p.rewrite = f
	p.mu.Unlock()
}

// rewriteJSON returns a rewrite that applies f to the JSON object of every
// answer to a path with the given prefix.
func rewriteJSON(t *testing.T, prefix string, f func(obj map[string]any)) func(string, []byte) []byte {
	return func(path string, body []byte) []byte {
		if !strings.HasPrefix(path, prefix) {
			return body
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			t.Errorf("rewriting %s: %v", path, err)
			return body
		}
		f(obj)
		out, err := json.Marshal(obj)
		if err != nil {
			t.Errorf("rewriting %s: %v", path, err)
			return body
		}
		return out
	}
}

// TestTransparencyUnloggedKeyRefused: the operator hands bob a key for
// alice that its log does not hold (a swapped identity key with the real
// proof; a bundle with the proof left out). Bob's client refuses to send,
// says why, and encrypts nothing: alice receives nothing until the server
// answers honestly again, and then everything bob sends arrives once.
func TestTransparencyUnloggedKeyRefused(t *testing.T) {
	s := startServer(t, t.TempDir())
	p := newProxy(t, s.url)
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	alice.register(s)
	bob.must("", "register", "--server", p.url, "bob")

	ghost, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tamper func(obj map[string]any)
	}{
		{"swapped identity key", func(obj map[string]any) { obj["identity_key"] = ghost.Public.Bytes() }},
		{"no proof", func(obj map[string]any) { delete(obj, "transparency") }},
		{"truncated proof", func(obj map[string]any) {
			s, _ := obj["transparency"].(string)
			proof, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(proof) == 0 {
				t.Errorf("the bundle's proof: %v (%d bytes)", err, len(proof))
			}
			obj["transparency"] = proof[:len(proof)/2]
		}},
	} {
		p.setRewrite(rewriteJSON(t, "/v1/keys/alice/", tc.tamper))
		line := bob.fail("", "send", "alice", "not for the ghost: "+tc.name)
		if !strings.Contains(line, "key transparency") || !strings.Contains(line, "nothing was encrypted") {
			t.Errorf("%s: bob's send failed with %q; want a key transparency refusal", tc.name, line)
		}
	}
	if got := alice.receive(); len(got) != 0 {
		t.Fatalf("alice received %v from refused sends", got)
	}

	p.setRewrite(nil)
	bob.must("", "send", "alice", "proven")
	wantTexts(t, alice.receive(), "bob", "proven")
}

// TestTransparencySplitView: the operator forks its log, keeps showing one
// branch to its auditor and to alice, and shows bob the other. Bob's
// client, which kept the last checkpoint it saw on the first branch,
// refuses the second (no key that only the second vouches for is used)
// and raises an alert; the auditor, shown the second branch, refuses to
// cosign it, for good.
func TestTransparencySplitView(t *testing.T) {
	auditorState := filepath.Join(t.TempDir(), "auditor")
	vkey := strings.TrimSpace(runAuditor(t, 0, "key", "--state", auditorState, "--name", "auditor.test"))

	dataA := t.TempDir()
	a := startServer(t, dataA, "--kt-auditor", vkey)
	p := newProxy(t, a.url)
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	alice.register(a)
	bob.must("", "register", "--server", p.url, "bob")

	// Bob requires the auditor's cosignature, which it gives.
	if out := runAuditor(t, 0, "--server", a.url, "--state", auditorState, "--once"); !strings.Contains(out, "cosigned: true") {
		t.Fatalf("auditor: %q", out)
	}
	bob.must("", "transparency", "require-auditor", vkey)
	bob.must("", "send", "alice", "before the fork")
	wantTexts(t, alice.receive(), "bob", "before the fork")

	// The fork: a copy of the server's data, started as a second server
	// with the same keys.
	a.stop(syscall.SIGTERM)
	dataB := t.TempDir()
	if err := os.CopyFS(dataB, os.DirFS(dataA)); err != nil {
		t.Fatal(err)
	}
	a = startServer(t, dataA, "--kt-auditor", vkey)
	b := startServer(t, dataB, "--kt-auditor", vkey)
	p.point(a.url)

	// Branch A goes on (carol registers), and the auditor follows it;
	// bob sees it.
	newUser(t, "carol").register(a)
	runAuditor(t, 0, "--server", a.url, "--state", auditorState, "--once")
	if out := bob.must("", "transparency", "status"); !strings.Contains(out, "alerts:       none") {
		t.Fatalf("bob's status on branch A:\n%s", out)
	}

	// Branch B differs (dave registers there instead), and bob is shown it.
	newUser(t, "dave").register(b)
	p.point(b.url)
	r := bob.run("", "transparency", "status")
	if r.code != 3 || !strings.Contains(r.stdout, "!!! KEY TRANSPARENCY ALERT") {
		t.Fatalf("bob's status on branch B: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Keys bob verified before the fork stay usable (they are the real
	// ones); a key branch B alone vouches for is refused.
	// (Every command now starts with the alert's banner on stderr.)
	r = bob.run("", "send", "dave", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "doorless: refused: the server's key transparency log is not consistent") {
		t.Errorf("bob's send to dave on branch B: exit %d, stderr %q; want a key transparency refusal", r.code, r.stderr)
	}

	// The auditor, shown branch B, finds it does not extend what it
	// cosigned: it fails, and stays failed even for branch A.
	runAuditor(t, 3, "--server", b.url, "--state", auditorState, "--once")
	runAuditor(t, 3, "--server", a.url, "--state", auditorState, "--once")

	// Alice, on branch A all along, saw nothing wrong with her own entry.
	if out := alice.must("", "transparency", "status"); !strings.Contains(out, "alerts:       none") {
		t.Fatalf("alice's status on branch A:\n%s", out)
	}
}

// runAuditor runs doorless-auditor and checks its exit status.
func runAuditor(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	r := runBinary(t, bin.auditor, nil, "", args...)
	if r.code != wantCode {
		t.Fatalf("doorless-auditor %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
	}
	return r.stdout
}
