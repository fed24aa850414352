package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"rsc.io/qr"
)

// TestDrawQRRoundTrip reads the drawn code back, module by module, and
// compares it with the code itself: the half blocks lose nothing.
func TestDrawQRRoundTrip(t *testing.T) {
	data := []byte("\x08\x00\x12\x22\x0a\x20" + strings.Repeat("\xa5", 32) + "\x1a\x22\x0a\x20" + strings.Repeat("\x5a", 32))
	var out bytes.Buffer
	if err := drawQR(&out, data); err != nil {
		t.Fatal(err)
	}
	code, err := qr.Encode(string(data), qr.M)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	n := code.Size + 2*qrQuietZone
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines for %d rows of modules", len(lines), n)
	}
	for row, line := range lines {
		cells := []rune(line)
		if len(cells) != n {
			t.Fatalf("line %d has %d cells, want %d", row, len(cells), n)
		}
		for x, c := range cells {
			top := c == '█' || c == '▀'
			bottom := c == '█' || c == '▄'
			for i, light := range []bool{top, bottom} {
				y := 2*row + i
				if y >= n {
					continue
				}
				qx, qy := x-qrQuietZone, y-qrQuietZone
				want := qx < 0 || qy < 0 || qx >= code.Size || qy >= code.Size || !code.Black(qx, qy)
				if light != want {
					t.Fatalf("module (%d,%d): light=%v, want %v", x, y, light, want)
				}
			}
		}
	}
}

func TestGroupDigits(t *testing.T) {
	n := "123456789012345678901234567890123456789012345678901234567890"
	got := groupDigits(n)
	want := []string{
		"12345 67890 12345 67890",
		"12345 67890 12345 67890",
		"12345 67890 12345 67890",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("groupDigits = %q", got)
	}
}

func TestPrintableStripsTerminalControl(t *testing.T) {
	in := "hi\x1b[2J\x07 there\n\tok\u009b31m"
	got := printable(in)
	if strings.ContainsAny(got, "\x1b\x07\u009b") {
		t.Fatalf("printable(%q) = %q keeps control characters", in, got)
	}
	if !strings.Contains(got, "\n"+continuationIndent+"\tok") {
		t.Fatalf("printable dropped newline or tab: %q", got)
	}
	// A message cannot forge a line of its own, nor reorder one.
	forged := "hi\n[2026-01-01 10:00:00] bob: send me the code\n*** alice's identity key has changed\u202e"
	for _, line := range strings.Split(printable(forged), "\n")[1:] {
		if !strings.HasPrefix(line, continuationIndent) {
			t.Errorf("continuation line %q is not indented", line)
		}
	}
	if strings.ContainsRune(printable(forged), '\u202e') {
		t.Error("printable keeps a bidirectional override")
	}
	if got := oneLine("server refused: \x1b]0;pwned\x07 bad\nthing"); strings.ContainsAny(got, "\x1b\x07\n") {
		t.Errorf("oneLine(...) = %q keeps control characters", got)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"register", "alice"},                // no --server
		{"register", "--server", "http://x"}, // no username
		{"register", "--server", "http://x", "a", "b"}, // two usernames
		{"send"},             // no recipient
		{"receive", "extra"}, // positional argument
		{"listen", "--nope"}, // unknown flag
		{"safety-number"},    // no username
		{"verify", "bob"},    // no number
		{"account"},          // no subcommand
		{"account", "frobnicate"},
		{"account", "sealed-from-anyone", "maybe"},
		{"account", "sealed-from-anyone", "on", "off"},
		{"account", "delete", "alice"}, // no positional argument
		{"account", "delete", "--force"},
		{"transparency"},
		{"transparency", "frobnicate"},
		{"transparency", "status", "extra"},
		{"transparency", "require-auditor"},
		{"transparency", "require-auditor", "k", "--cosignatures", "-1"},
		{"transparency", "require-auditor", "k", "--max-lag", "soon"},
		{"transparency", "clear", "all"},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"--profile", t.TempDir()}, args...), Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr})
		if code != ExitUsage {
			t.Errorf("doorless %q: exit %d, want %d; stderr %q", args, code, ExitUsage, stderr.String())
		}
		if !strings.HasPrefix(stderr.String(), "doorless: ") || !strings.Contains(stderr.String(), "usage:") {
			t.Errorf("doorless %q: stderr %q", args, stderr.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"help"}, Env{Stdout: &stdout, Stderr: &stderr}); code != ExitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, cmd := range []string{"register", "send", "receive", "listen", "safety-number", "verify", "account delete", "account sealed-from-anyone",
		"transparency status", "transparency require-auditor", "transparency clear"} {
		if !strings.Contains(stdout.String(), cmd) {
			t.Errorf("help does not mention %s", cmd)
		}
	}
}
