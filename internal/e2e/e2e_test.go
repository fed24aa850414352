// Package e2e runs the built doorlessd and doorless binaries as a user would:
// real processes, real sockets, a real data directory, signals.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin holds the binaries TestMain builds.
var bin struct{ doorlessd, doorless, auditor string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "doorless-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.doorlessd = filepath.Join(dir, "doorlessd")
	bin.doorless = filepath.Join(dir, "doorless")
	bin.auditor = filepath.Join(dir, "doorless-auditor")
	for _, b := range []struct{ out, pkg string }{
		{bin.doorlessd, "../../cmd/doorlessd"}, {bin.doorless, "../../cmd/doorless"}, {bin.auditor, "../../cmd/doorless-auditor"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", b.pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running doorlessd.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	data string
	url  string
	out  *logBuffer // what it wrote to standard error
	// stdout is what it wrote to standard output, line by line.
	stdout *logBuffer
	done   chan error
}

var listenRE = regexp.MustCompile(`doorlessd listening on (https?://\S+)`)

// startServer starts doorlessd on a free loopback port over data.
func startServer(t *testing.T, data string, args ...string) *server {
	t.Helper()
	return startServerAt(t, "127.0.0.1:0", data, args...)
}

// startServerAt starts doorlessd listening on addr.
func startServerAt(t *testing.T, addr, data string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(bin.doorlessd, append([]string{"--listen", addr, "--data", data}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, data: data, out: new(logBuffer), stdout: new(logBuffer), done: make(chan error, 1)}
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.stdout.Write([]byte(sc.Text() + "\n"))
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case s.url = <-urls:
	case err := <-s.done:
		t.Fatalf("doorlessd exited before listening: %v\n%s", err, s.out)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("doorlessd did not say where it listens\n%s", s.out)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// stop sends sig and waits for the server to exit; SIGKILL's exit is
// expected to be unclean, the others clean.
func (s *server) stop(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if sig != syscall.SIGKILL && err != nil {
			s.t.Fatalf("doorlessd exited with %v after %v\n%s", err, sig, s.out)
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		s.t.Fatalf("doorlessd did not exit after %v\n%s", sig, s.out)
	}
}

// logBuffer holds what a process writes, for a test to read while it runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cleanEnv is the test process's environment without what would change how
// doorless behaves (a passphrase set by whoever runs the tests).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOORLESS_") {
			env = append(env, kv)
		}
	}
	return env
}

// result is what one doorless run did.
type result struct {
	stdout, stderr string
	code           int
}

// user is a doorless profile.
type user struct {
	t       *testing.T
	name    string
	profile string
	env     []string
}

func newUser(t *testing.T, name string) *user {
	return &user{t: t, name: name, profile: filepath.Join(t.TempDir(), name), env: []string{"TZ=UTC"}}
}

// runBinary runs one of the built binaries (with cleanEnv and env, for at
// most a minute) and returns what it did; it fails the test only if the
// binary could not run.
func runBinary(t *testing.T, path string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(path), strings.Join(args, " "), err)
	}
	return r
}

// run runs doorless with the user's profile and returns what it did.
func (u *user) run(stdin string, args ...string) result {
	u.t.Helper()
	return runBinary(u.t, bin.doorless, u.env, stdin, append([]string{"--profile", u.profile}, args...)...)
}

// must runs doorless and fails the test unless it succeeds.
func (u *user) must(stdin string, args ...string) string {
	u.t.Helper()
	r := u.run(stdin, args...)
	if r.code != 0 {
		u.t.Fatalf("%s: doorless %s: exit %d\nstdout: %s\nstderr: %s", u.name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fail runs doorless and fails the test unless it fails with one line on
// stderr; it returns that line.
func (u *user) fail(stdin string, args ...string) string {
	u.t.Helper()
	r := u.run(stdin, args...)
	if r.code == 0 {
		u.t.Fatalf("%s: doorless %s succeeded; want an error\nstdout: %s", u.name, strings.Join(args, " "), r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code == 1 && (len(lines) != 1 || !strings.HasPrefix(lines[0], "doorless: ")) {
		u.t.Fatalf("%s: doorless %s: want one error line on stderr, got %q", u.name, strings.Join(args, " "), r.stderr)
	}
	return lines[0]
}

func (u *user) register(s *server, extra ...string) {
	u.t.Helper()
	out := u.must("", append([]string{"register", "--server", s.url, u.name}, extra...)...)
	if !strings.Contains(out, "registered "+u.name) {
		u.t.Fatalf("register said %q", out)
	}
}

// startPair starts a server over a new data directory and registers alice
// and bob on it.
func startPair(t *testing.T, args ...string) (*server, *user, *user) {
	t.Helper()
	s := startServer(t, t.TempDir(), args...)
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	alice.register(s)
	bob.register(s)
	return s, alice, bob
}

var safetyNumberLine = regexp.MustCompile(`(?m)^    (\d{5}) (\d{5}) (\d{5}) (\d{5})$`)

// safetyNumberGroups returns the groups of five digits safety-number printed.
func safetyNumberGroups(out string) []string {
	var groups []string
	for _, m := range safetyNumberLine.FindAllStringSubmatch(out, -1) {
		groups = append(groups, m[1:]...)
	}
	return groups
}

// received is one line of receive --json.
type received struct {
	Event           string `json:"event"`
	ID              string `json:"id"`
	From            string `json:"from"`
	Device          uint32 `json:"device"`
	Sent            string `json:"sent"`
	Text            string `json:"text"`
	IdentityChanged bool   `json:"identity_changed"`
	Outgoing        bool   `json:"outgoing"`
	To              string `json:"to"`
	Group           *struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"group"`
	Attachment *struct {
		FileName    string `json:"file_name"`
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
		Path        string `json:"path"`
		ViewOnce    bool   `json:"view_once"`
	} `json:"attachment"`
}

// receive runs receive --json and returns the messages.
func (u *user) receive() []received {
	u.t.Helper()
	return parseReceived(u.t, u.must("", "receive", "--json"))
}

func parseReceived(t *testing.T, out string) []received {
	t.Helper()
	var msgs []received
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m received
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("receive --json printed %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// texts returns the texts of the messages from one sender, in order.
func texts(msgs []received, from string) []string {
	var out []string
	for _, m := range msgs {
		if m.Event == "message" && m.From == from {
			out = append(out, m.Text)
		}
	}
	return out
}

func wantTexts(t *testing.T, got []received, from string, want ...string) {
	t.Helper()
	g := texts(got, from)
	if strings.Join(g, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("messages from %s: got %q, want %q", from, g, want)
	}
}

func TestConversationBothWays(t *testing.T) {
	t.Parallel()
	_, alice, bob := startPair(t)

	alice.must("", "send", "bob", "hello", "bob")
	alice.must("second line\n", "send", "bob") // from standard input
	msgs := bob.receive()
	wantTexts(t, msgs, "alice", "hello bob", "second line")
	if msgs[0].Device != 1 || msgs[0].IdentityChanged {
		t.Fatalf("first message: %+v", msgs[0])
	}

	bob.must("", "send", "alice", "hi alice")
	bob.must("", "send", "alice", "how are you?")
	alice.must("", "send", "bob", "fine, thanks")
	wantTexts(t, alice.receive(), "bob", "hi alice", "how are you?")
	wantTexts(t, bob.receive(), "alice", "fine, thanks")

	// Nothing is delivered twice: the queues are empty now.
	if msgs := bob.receive(); len(msgs) != 0 {
		t.Fatalf("bob received %d messages again", len(msgs))
	}

	// The text form carries time, sender and text.
	alice.must("", "send", "bob", "plain")
	out := bob.must("", "receive")
	if !regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] alice: plain\n$`).MatchString(out) {
		t.Fatalf("receive printed %q", out)
	}
}

func TestOfflineRecipientGetsEverythingInOrder(t *testing.T) {
	t.Parallel()
	_, alice, bob := startPair(t)
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("message %02d", i))
		alice.must("", "send", "bob", want[i])
	}
	wantTexts(t, bob.receive(), "alice", want...)
}

// TestServerRestartLosesNothing stops the server between send and receive,
// once gracefully and once with SIGKILL right after send returned.
func TestServerRestartLosesNothing(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s, alice, bob := startPair(t)
			data := s.data
			alice.must("", "send", "bob", "before")
			alice.must("", "send", "bob", "the restart")
			s.stop(sig)

			// The same address again: the profiles know the server by it.
			startServerAt(t, strings.TrimPrefix(s.url, "http://"), data)
			wantTexts(t, bob.receive(), "alice", "before", "the restart")
			// The sessions and keys survived too: the conversation goes on.
			bob.must("", "send", "alice", "after it")
			wantTexts(t, alice.receive(), "bob", "after it")
		})
	}
}

func TestListenStreamsUntilInterrupted(t *testing.T) {
	t.Parallel()
	_, alice, bob := startPair(t)

	cmd := exec.Command(bin.doorless, "--profile", bob.profile, "listen", "--json")
	cmd.Env = append(cleanEnv(), bob.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for i := range 3 {
		text := fmt.Sprintf("live %d", i)
		alice.must("", "send", "bob", text)
		select {
		case line := <-lines:
			wantTexts(t, parseReceived(t, line), "alice", text)
		case <-time.After(30 * time.Second):
			t.Fatalf("listen printed nothing for %q; stderr: %s", text, stderr.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("listen exited with %v after SIGINT; stderr: %s", err, stderr.String())
	}
	// What listen printed was acknowledged: nothing is left.
	if msgs := bob.receive(); len(msgs) != 0 {
		t.Fatalf("after listen, receive got %v", msgs)
	}
}

// readDataDir returns every file under dir, by its path relative to dir
// with "/" between directories. A file that vanishes while it is read (a
// running server's temporary file) is left out.
func readDataDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			var b []byte
			if b, err = os.ReadFile(path); err == nil {
				rel, rerr := filepath.Rel(dir, path)
				if rerr != nil {
					return rerr
				}
				files[filepath.ToSlash(rel)] = b
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// scanFiles fails the test for every file under dir that holds one of the
// words, and returns how many files it read.
func scanFiles(t *testing.T, dir string, words ...string) int {
	t.Helper()
	files := readDataDir(t, dir)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for _, w := range words {
			if bytes.Contains(files[name], []byte(w)) {
				t.Errorf("%s holds %q", filepath.Join(dir, name), w)
			}
		}
	}
	return len(files)
}

// TestNoPlaintextOnServer scans every file of the server's data directory,
// while messages are queued and after they are delivered, for the texts sent.
func TestNoPlaintextOnServer(t *testing.T) {
	t.Parallel()
	s, alice, bob := startPair(t)
	data := s.data
	secrets := []string{"the treasure is under the third oak", "meet at 7 by the fountain"}
	alice.must("", "send", "bob", secrets[0])
	bob.must("", "send", "alice", secrets[1])
	var words []string
	for _, secret := range secrets {
		words = append(words, secret, strings.Fields(secret)[1]+" "+strings.Fields(secret)[2])
	}
	scan := func(when string) {
		t.Helper()
		if scanFiles(t, data, words...) == 0 {
			t.Fatalf("%s: the data directory holds no files", when)
		}
	}
	scan("queued")
	wantTexts(t, bob.receive(), "alice", secrets[0])
	wantTexts(t, alice.receive(), "bob", secrets[1])
	s.stop(syscall.SIGTERM)
	scan("delivered")
}

func TestSafetyNumbersAndVerify(t *testing.T) {
	t.Parallel()
	_, alice, bob := startPair(t)
	number := func(u *user, other string) string {
		out := u.must("", "safety-number", other)
		n := strings.Join(safetyNumberGroups(out), "")
		if len(n) != 60 {
			t.Fatalf("safety-number printed %q", out)
		}
		if !strings.Contains(out, "█") || !strings.Contains(out, "not verified") {
			t.Fatalf("safety-number printed no QR code or no state:\n%s", out)
		}
		return n
	}
	na, nb := number(alice, "bob"), number(bob, "alice")
	if na != nb {
		t.Fatalf("alice sees %s, bob sees %s", na, nb)
	}
	wrong := []byte(na)
	wrong[59] = '0' + (wrong[59]-'0'+1)%10
	if line := alice.fail("", "verify", "bob", string(wrong)); !strings.Contains(line, "do not match") {
		t.Fatalf("verify with a wrong number said %q", line)
	}
	alice.must("", "verify", "bob", na[:30], na[30:])
	if out := alice.must("", "safety-number", "bob"); !strings.Contains(out, "\nverified\n") {
		t.Fatalf("after verify, safety-number printed:\n%s", out)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	alice := newUser(t, "alice")
	if line := alice.fail("", "send", "bob", "hi"); !strings.Contains(line, "no profile") {
		t.Fatalf("send without a profile said %q", line)
	}
	alice.register(s)
	if line := alice.fail("", "register", "--server", s.url, "alice"); !strings.Contains(line, "already registered") {
		t.Fatalf("second register said %q", line)
	}
	if line := newUser(t, "alice").fail("", "register", "--server", s.url, "alice"); !strings.Contains(line, "taken") {
		t.Fatalf("register of a taken name said %q", line)
	}
	if line := alice.fail("", "send", "nobody", "hi"); !strings.Contains(line, "no such user") {
		t.Fatalf("send to an unknown user said %q", line)
	}
	if line := alice.fail("", "send", "bob"); !strings.Contains(line, "empty") {
		t.Fatalf("send of nothing said %q", line)
	}
	if r := alice.run("", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, "unknown command") {
		t.Fatalf("unknown command: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestInviteOnlyRegistration(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data, "--registration", "invite")
	out, err := exec.Command(bin.doorlessd, "invite", "--data", data, "--count", "1").Output()
	if err != nil {
		t.Fatalf("doorlessd invite: %v", err)
	}
	code := strings.TrimSpace(string(out))
	if code == "" || strings.Contains(code, "\n") {
		t.Fatalf("doorlessd invite printed %q", out)
	}
	alice := newUser(t, "alice")
	if line := alice.fail("", "register", "--server", s.url, "alice"); !strings.Contains(line, "invite") {
		t.Fatalf("register without an invite said %q", line)
	}
	alice.register(s, "--invite", code)
	if line := newUser(t, "bob").fail("", "register", "--server", s.url, "--invite", code, "bob"); !strings.Contains(line, "invite") {
		t.Fatalf("register with a used invite said %q", line)
	}
}

func TestPassphraseProtectedProfile(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	alice.env = append(alice.env, "DOORLESS_PASSPHRASE=correct horse battery staple")
	alice.register(s)
	bob.register(s)
	bob.must("", "send", "alice", "for your eyes")
	wrong := &user{t: t, name: "alice", profile: alice.profile, env: []string{"TZ=UTC", "DOORLESS_PASSPHRASE=wrong"}}
	if line := wrong.fail("", "receive"); !strings.Contains(line, "passphrase") {
		t.Fatalf("receive with a wrong passphrase said %q", line)
	}
	wantTexts(t, alice.receive(), "bob", "for your eyes")
}
