// Package libsignal drives the real libsignal (the npm package @signalapp/libsignal-client,
// pinned at PinnedVersion) from Go, so that interop tests can exchange bytes between
// Doorless's own protocol implementation and upstream libsignal.
//
// Each Peer is one Node process running harness.mjs: a simulated libsignal client with
// in-memory session, identity and prekey stores. The Go side sends one JSON request per
// line on the process's standard input and reads one JSON response per line from its
// standard output; harness.mjs documents every command and its JSON shape. The typed
// methods of Peer wrap those commands; Call reaches any of them directly.
//
// The harness needs `node` (20 or later) on PATH and the package installed in this
// directory: run `npm ci` in interop/libsignal. Available reports whether both are there;
// Require applies the project's rule for tests (fail under CI, skip elsewhere).
//
// A Peer is safe for concurrent use, but its calls are serialized: a libsignal peer sees
// one request at a time. The zero Peer is not usable; make one with Start.
package libsignal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// PinnedVersion is the exact version of @signalapp/libsignal-client the harness speaks to
// (package.json pins it; Available checks the installed copy).
const PinnedVersion = "0.103.0"

// Message types as libsignal's CiphertextMessageType numbers them.
const (
	// TypeSignal is a SignalMessage (a "Whisper" message): a Double Ratchet message on an
	// established session.
	TypeSignal = 2
	// TypePreKey is a PreKeySignalMessage: the first messages of a session, carrying the
	// PQXDH parameters that let the recipient build it.
	TypePreKey = 3
)

// harnessFile is the Node program run by Start, relative to the harness directory.
const harnessFile = "harness.mjs"

// maxLine bounds one response line (a state export with many sessions stays far below).
const maxLine = 64 << 20

// stderrKeep is how much of the harness's standard error is kept for error messages.
const stderrKeep = 8 << 10

var (
	// ErrUnavailable is returned by Available and Start when node or the npm package is
	// missing.
	ErrUnavailable = errors.New("libsignal: harness unavailable")
	// ErrClosed is returned by calls on a Peer whose process has ended or been closed.
	ErrClosed = errors.New("libsignal: peer closed")
	// ErrProtocol is returned when the harness answers with something that is not a
	// response to the request just sent; the Peer is closed after it.
	ErrProtocol = errors.New("libsignal: harness protocol error")
)

// Dir returns the directory holding harness.mjs, found from this source file's location,
// so that tests in any package of the module can start a Peer.
// Without a usable source path (a -trimpath build), it returns ".", which is right for
// this package's own tests.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "."
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, harnessFile)); err != nil {
		return "."
	}
	return dir
}

// Available reports whether a Peer can be started from dir ("" means Dir()): node must be
// on PATH and dir must hold harness.mjs and node_modules/@signalapp/libsignal-client at
// PinnedVersion. The error wraps ErrUnavailable and says what to do.
func Available(dir string) error {
	if dir == "" {
		dir = Dir()
	}
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("%w: node not found on PATH (install Node 20)", ErrUnavailable)
	}
	if _, err := os.Stat(filepath.Join(dir, harnessFile)); err != nil {
		return fmt.Errorf("%w: %s not found in %s", ErrUnavailable, harnessFile, dir)
	}
	pkg := filepath.Join(dir, "node_modules", "@signalapp", "libsignal-client", "package.json")
	b, err := os.ReadFile(pkg)
	if err != nil {
		return fmt.Errorf("%w: @signalapp/libsignal-client is not installed (run npm ci in interop/libsignal)", ErrUnavailable)
	}
	var meta struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return fmt.Errorf("%w: unreadable %s: %v", ErrUnavailable, pkg, err)
	}
	if meta.Version != PinnedVersion {
		return fmt.Errorf("%w: @signalapp/libsignal-client %s installed, want %s (run npm ci in interop/libsignal)",
			ErrUnavailable, meta.Version, PinnedVersion)
	}
	return nil
}

// Peer is one running harness process: a libsignal client with its own stores.
type Peer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte   // response lines, closed at end of output
	rerr   error         // why lines was closed, if not end of output; read after it is
	exited chan struct{} // closed when the process has been waited for
	done   chan struct{} // closed by stop: nobody reads lines any more
	stderr *tailBuffer

	mu     sync.Mutex // serializes calls
	nextID uint64
	broken error // set once the peer can no longer be used

	closeOnce sync.Once
	waitErr   error
}

// Start runs `node harness.mjs` in dir ("" means Dir()). The process lives until Close
// or until ctx is done. The new peer has no identity: call Init or ImportState first.
func Start(ctx context.Context, dir string) (*Peer, error) {
	if dir == "" {
		dir = Dir()
	}
	if err := Available(dir); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "node", harnessFile)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("libsignal: %w", err)
	}
	// An os.Pipe rather than StdoutPipe: Wait must not close the read end while
	// readLoop may still be draining the last response.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		stdin.Close()
		return nil, fmt.Errorf("libsignal: %w", err)
	}
	cmd.Stdout = stdoutW
	p := &Peer{
		cmd:    cmd,
		stdin:  stdin,
		lines:  make(chan []byte),
		exited: make(chan struct{}),
		done:   make(chan struct{}),
		stderr: &tailBuffer{max: stderrKeep},
	}
	cmd.Stderr = p.stderr
	err = cmd.Start()
	stdoutW.Close() // the child holds its own copy
	if err != nil {
		stdin.Close()
		stdout.Close()
		return nil, fmt.Errorf("libsignal: starting node: %w", err)
	}
	go p.readLoop(stdout)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *Peer) readLoop(r io.ReadCloser) {
	defer close(p.lines)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line := bytes.Clone(sc.Bytes())
		select {
		case p.lines <- line:
		case <-p.done:
			return
		}
	}
	p.rerr = sc.Err()
}

type request struct {
	ID     uint64 `json:"id"`
	Method string `json:"method"`
	Params any    `json:"params,omitempty"`
}

type response struct {
	ID        *uint64         `json:"id"`
	OK        bool            `json:"ok"`
	Result    json.RawMessage `json:"result"`
	Error     string          `json:"error"`
	Code      int             `json:"code"`
	CodeName  string          `json:"codeName"`
	Kind      string          `json:"kind"`
	Operation string          `json:"operation"`
}

// Call sends one command with params (marshaled to JSON; nil for none) and decodes the
// result into result (a pointer, or nil to ignore it). A failure reported by the harness
// is a *RemoteError.
func (p *Peer) Call(method string, params any, result any) error {
	return p.CallContext(context.Background(), method, params, result)
}

// CallContext is Call with a context: if ctx is done before the response arrives, the
// peer is closed (its answer would otherwise arrive out of turn) and ctx's error returned.
func (p *Peer) CallContext(ctx context.Context, method string, params any, result any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return p.broken
	}
	p.nextID++
	id := p.nextID
	line, err := json.Marshal(request{ID: id, Method: method, Params: params})
	if err != nil {
		return fmt.Errorf("libsignal: %s: encoding params: %w", method, err)
	}
	line = append(line, '\n')
	if _, err := p.stdin.Write(line); err != nil {
		return p.fail(fmt.Errorf("%w: %s: writing request: %v%s", ErrClosed, method, err, p.stderrNote()))
	}
	var resp []byte
	var ok bool
	select {
	case resp, ok = <-p.lines:
		if !ok {
			if p.rerr != nil {
				return p.fail(fmt.Errorf("%w: %s: reading response: %v", ErrProtocol, method, p.rerr))
			}
			p.stdin.Close() // a harness that closed its output but still runs is told to stop
			<-p.exited
			return p.fail(fmt.Errorf("%w: %s: harness exited (%v)%s", ErrClosed, method, p.waitErr, p.stderrNote()))
		}
	case <-ctx.Done():
		p.fail(fmt.Errorf("%w: %s: abandoned: %v", ErrClosed, method, ctx.Err()))
		return ctx.Err()
	}
	var r response
	if err := json.Unmarshal(resp, &r); err != nil {
		return p.fail(fmt.Errorf("%w: %s: bad response line: %v", ErrProtocol, method, err))
	}
	if r.ID == nil || *r.ID != id {
		return p.fail(fmt.Errorf("%w: %s: response for another request: %.200s", ErrProtocol, method, resp))
	}
	if !r.OK {
		return &RemoteError{
			Method:    method,
			Code:      r.Code,
			CodeName:  r.CodeName,
			Kind:      Kind(r.Kind),
			Operation: r.Operation,
			Message:   r.Error,
		}
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, result); err != nil {
		return fmt.Errorf("libsignal: %s: decoding result: %w", method, err)
	}
	return nil
}

// fail marks the peer unusable with err, stops the process and returns err.
// p.mu must be held.
func (p *Peer) fail(err error) error {
	if p.broken == nil {
		p.broken = err
	}
	p.stop()
	return err
}

func (p *Peer) stderrNote() string {
	s := p.stderr.String()
	if s == "" {
		return ""
	}
	return "; harness stderr: " + s
}

func (p *Peer) stop() {
	p.closeOnce.Do(func() {
		close(p.done)
		p.stdin.Close() // the harness exits at end of input
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// Close ends the harness process and waits for it; a call still waiting for its answer
// returns ErrClosed. The peer's in-memory state is lost: keep it with ExportState first
// to carry on in another Peer. Close is idempotent.
func (p *Peer) Close() error {
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken == nil {
		p.broken = ErrClosed
	}
	return nil
}

// Stderr returns the tail of what the harness wrote to its standard error.
func (p *Peer) Stderr() string { return p.stderr.String() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
