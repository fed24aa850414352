package e2e

import (
	"bufio"
	"bytes"
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

// The README's walkthrough, as the test reads it: fenced ```sh blocks whose
// first line is "# terminal N" hold the commands typed in terminal N, in the
// order of the page; a ```text block whose info string ends in "terminal N"
// is what the last command in terminal N printed, with times free.
// The one block without a terminal is the build command, which the test
// replaces with the binaries TestMain built.
const (
	walkthroughHeading = "## Walkthrough: alice and bob"
	walkthroughBuild   = "go build -o bin/ ./cmd/doorlessd ./cmd/doorless"
	walkthroughServer  = "http://127.0.0.1:8080"
)

type readmeBlock struct {
	kind     string // "sh" or "text"
	terminal string
	lines    []string
}

func readWalkthrough(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+walkthroughHeading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", walkthroughHeading)
	}
	s = s[i+1:]
	if j := strings.Index(s[len(walkthroughHeading):], "\n## "); j >= 0 {
		s = s[:len(walkthroughHeading)+j]
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	for _, line := range strings.Split(s, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			info := strings.Fields(strings.TrimPrefix(line, "```"))
			cur = &readmeBlock{}
			if len(info) > 0 {
				cur.kind = info[0]
			}
			if len(info) == 3 && info[1] == "terminal" {
				cur.terminal = info[2]
			}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			if cur.kind == "sh" && strings.HasPrefix(line, "# terminal ") {
				cur.terminal = strings.TrimPrefix(line, "# terminal ")
				continue
			}
			cur.lines = append(cur.lines, line)
		}
	}
	if cur != nil {
		t.Fatal("README.md: a code block in the walkthrough is not closed")
	}
	return blocks
}

// terminal is one of the walkthrough's terminals: a shell prompt, and the
// command in the foreground if one keeps running (doorlessd, listen).
type terminal struct {
	bg     *exec.Cmd
	bgDone chan error
	out    *logBuffer // everything the terminal printed
	shown  int        // how much of out a text block has already matched
}

// TestREADMEWalkthrough runs the README's walkthrough exactly as written,
// each terminal in its own process group, in a fresh directory. It needs
// 127.0.0.1:8080, as the walkthrough does.
// receiptRE matches the line a delivery or read receipt prints.
var receiptRE = regexp.MustCompile(`^\*\*\* [a-z][a-z0-9_]* (got|read) \d+ of your messages?$`)

func TestREADMEWalkthrough(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{bin.doorlessd, bin.doorless} {
		if err := os.Symlink(b, filepath.Join(dir, "bin", filepath.Base(b))); err != nil {
			t.Fatal(err)
		}
	}
	env := append(cleanEnv(), "TZ=UTC")
	terms := map[string]*terminal{}
	defer func() {
		for _, term := range terms {
			if term.bg != nil {
				syscall.Kill(-term.bg.Process.Pid, syscall.SIGKILL)
				<-term.bgDone
			}
		}
	}()
	// interrupt is Ctrl-C in a terminal whose command is still running.
	interrupt := func(name string, term *terminal) {
		t.Helper()
		if term.bg == nil {
			return
		}
		syscall.Kill(-term.bg.Process.Pid, syscall.SIGINT) // the terminal's whole foreground group, as Ctrl-C
		select {
		case err := <-term.bgDone:
			term.bg = nil
			if err != nil {
				t.Fatalf("terminal %s: %v after Ctrl-C\n%s", name, err, term.out)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("terminal %s: still running 30 s after Ctrl-C", name)
		}
		term.bg = nil
	}
	timeRE := regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]`)
	var lastSafetyNumber string
	ran := 0
	for _, blk := range readWalkthrough(t) {
		switch {
		case blk.kind == "sh" && blk.terminal == "":
			if len(blk.lines) != 1 || blk.lines[0] != walkthroughBuild {
				t.Fatalf("README.md: the walkthrough's build block is %q, want %q", blk.lines, walkthroughBuild)
			}
		case blk.kind == "sh":
			term := terms[blk.terminal]
			if term == nil {
				term = &terminal{out: new(logBuffer)}
				terms[blk.terminal] = term
			}
			interrupt(blk.terminal, term)
			for _, line := range blk.lines {
				if line == "" {
					continue
				}
				ran++
				term.shown = len(term.out.String()) // a text block shows the last command's output
				line = strings.ReplaceAll(line, " NUMBER", " "+lastSafetyNumber)
				cmd := exec.Command("sh", "-c", line)
				cmd.Dir, cmd.Env = dir, env
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if strings.HasSuffix(line, "doorlessd") || strings.HasSuffix(line, " listen") {
					// It keeps running: the terminal's next block Ctrl-C's it.
					// exec: the shell becomes the command, so that Ctrl-C reaches
					// it alone, as at an interactive prompt.
					cmd.Args[2] = "exec " + line
					term.bg, term.bgDone = cmd, make(chan error, 1)
					pipe, err := cmd.StdoutPipe()
					if err != nil {
						t.Fatal(err)
					}
					cmd.Stderr = term.out
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					var copied sync.WaitGroup
					copied.Go(func() { bufio.NewReader(pipe).WriteTo(term.out) })
					go func() { copied.Wait(); term.bgDone <- cmd.Wait() }()
					if strings.HasSuffix(line, "doorlessd") {
						waitFor(t, term, "doorlessd listening on "+walkthroughServer)
					} else {
						waitForConnection(t, term)
					}
					continue
				}
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Run(); err != nil {
					t.Fatalf("terminal %s: %s: %v\n%s", blk.terminal, line, err, out.String())
				}
				term.out.Write(out.Bytes())
				if strings.Contains(line, " safety-number ") {
					// Typed as shown, groups and spaces.
					lastSafetyNumber = strings.Join(safetyNumberGroups(out.String()), " ")
				}
			}
		case blk.kind == "text" && blk.terminal != "":
			term := terms[blk.terminal]
			if term == nil {
				t.Fatalf("README.md: output shown for terminal %s, which has run nothing", blk.terminal)
			}
			want := strings.Join(blk.lines, "\n") + "\n"
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := term.out.String()[term.shown:]
				// Receipts are left out of the README's blocks (it says
				// so): how many lines they take depends on how the
				// messages happened to arrive together.
				got = strings.Join(mapLines(slices.DeleteFunc(strings.Split(got, "\n"), receiptRE.MatchString), func(l string) string {
					return timeRE.ReplaceAllString(l, "[2026-11-23 10:00:00]")
				}), "\n")
				if got == want {
					term.shown = len(term.out.String())
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("terminal %s printed\n%s\nthe README shows\n%s", blk.terminal, got, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if ran < 8 {
		t.Fatalf("the walkthrough ran only %d commands", ran)
	}
	if !strings.Contains(terms["3"].out.String(), "bob is verified") {
		t.Fatalf("alice's verify of bob did not succeed:\n%s", terms["3"].out)
	}
	for name, term := range terms {
		interrupt(name, term)
	}
}

// waitFor waits until the terminal has printed s.
func waitFor(t *testing.T, term *terminal, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(term.out.String(), s) {
		select {
		case err := <-term.bgDone:
			term.bg = nil
			t.Fatalf("the command ended (%v) before printing %q:\n%s", err, s, term.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %q; the terminal shows\n%s", s, term.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForConnection gives a listen a moment to connect. listen prints nothing
// until a message arrives, and what it misses stays queued for it, so this
// only keeps the order of the page, not correctness.
func waitForConnection(t *testing.T, term *terminal) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
}

func mapLines(lines []string, f func(string) string) []string {
	for i, l := range lines {
		lines[i] = f(l)
	}
	return lines
}
