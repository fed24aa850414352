package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/store/sqlite"
)

// TestLegalProcess: an authority makes a key and signs requests with
// "legal keygen" and "legal sign"; the operator trusts it; "legal process"
// answers them on the data directory while the server runs on it: the
// accepted one with a package the server's legal key verifies, the
// refused one with exit status 3; "legal report" logs a report; the log
// the running server serves holds all of it and verifies.
func TestLegalProcess(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cmd, url, stderr := start(t, "--data", data, "--legal-origin", "chat.example/legal")
	if code := register(t, url, "alice", ""); code != http.StatusOK {
		t.Fatalf("register: %d", code)
	}
	for name, want := range map[string]os.FileMode{"log.key": 0o600, "admin-token": 0o600, "authorities": 0o644} {
		if fi, err := os.Stat(filepath.Join(data, "legal", name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("legal/%s: %v, %v", name, fi, err)
		}
	}

	out, err := command(t, "legal", "keygen", "us.court.example").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 2 {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	keyFile := filepath.Join(dir, "court.key")
	os.WriteFile(keyFile, []byte(lines[0]+"\n"), 0o600)
	os.WriteFile(filepath.Join(data, "legal", "authorities"), []byte("# trusted\nus "+lines[1]+"\n"), 0o644)

	now := time.Now().UTC()
	sign := func(name, target, categories string) string {
		t.Helper()
		text := legal.RequestHeader + "\nauthority us.court.example\njurisdiction us\ntype search_warrant\n" +
			"basis Fourth Amendment warrant\ncase 26-mj-7\ntarget " + target + "\ncategories " + categories + "\n" +
			"issued " + now.Add(-time.Hour).Format(time.RFC3339) + "\nvalid-until " + now.Add(time.Hour).Format(time.RFC3339) +
			"\nnondisclosure-until " + now.Add(time.Hour).Format(time.RFC3339) + "\nnonce " + strings.Repeat(name[:1], 32) + "\n"
		in := filepath.Join(dir, name+".txt")
		os.WriteFile(in, []byte(text), 0o644)
		signed, err := command(t, "legal", "sign", "--key", keyFile, in).Output()
		if err != nil {
			t.Fatalf("sign %s: %v", name, err)
		}
		path := filepath.Join(dir, name+".signed")
		os.WriteFile(path, signed, 0o644)
		return path
	}
	accepted := sign("a", "alice", "account_created last_seen_day")
	refused := sign("b", "alice", "message_content")

	pkgFile := filepath.Join(dir, "package")
	if out, err := command(t, "legal", "process", accepted, "--data", data, "--out", pkgFile).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "accepted (logged at index 0)") {
		t.Fatalf("process: %v\n%s", err, out)
	}
	out, err = command(t, "legal", "process", "--data", data, refused).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "refused: undisclosable_category") {
		t.Fatalf("refused: %v\n%s", err, out)
	}
	// The replay of the accepted one is refused too.
	if out, err := command(t, "legal", "process", "--data", data, accepted).CombinedOutput(); !errors.As(err, &ee) ||
		!strings.Contains(string(out), "refused: replayed_nonce") {
		t.Fatalf("replay: %v\n%s", err, out)
	}

	resp, err := http.Get(url + api.PathLegalKey)
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil || v.Name() != "chat.example/legal" {
		t.Fatalf("legal key %q: %v", vkey, err)
	}
	pkg, _ := os.ReadFile(pkgFile)
	d, err := legal.OpenDisclosure(pkg, v)
	if err != nil || !d.Exists || d.Target != "alice" || d.Registered.Format(time.DateOnly) != now.Format(time.DateOnly) ||
		d.LastConnection.Format(time.DateOnly) != now.Format(time.DateOnly) {
		t.Fatalf("package %+v, %v\n%s", d, err, pkg)
	}

	period := requestlog.PeriodOf(now)
	report, err := command(t, "legal", "report", "--data", data, "--period", period).Output()
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	r, err := requestlog.OpenReport(report, v)
	if err != nil {
		t.Fatal(err)
	}
	want := []requestlog.Count{
		{Jurisdiction: "us", Type: "search_warrant", Outcome: "accepted", N: 1},
		{Jurisdiction: "us", Type: "search_warrant", Outcome: "refused:replayed_nonce", N: 1},
		{Jurisdiction: "us", Type: "search_warrant", Outcome: "refused:undisclosable_category", N: 1},
	}
	if !slices.Equal(r.Counts, want) {
		t.Fatalf("report counts %+v, want %+v", r.Counts, want)
	}
	// The running server serves what the command wrote: the log, the
	// report.
	ver, err := requestlog.Fetch(context.Background(), nil, url+api.PathLegalLogPrefix, v, nil)
	if err != nil || len(ver.Entries) != 4 || !bytes.Equal(ver.Entries[3], report) {
		t.Fatalf("served log: %v, %d entries", err, len(ver.Entries))
	}
	resp, err = http.Get(url + api.PathTransparencyReport + "?period=" + period)
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(served, report) {
		t.Fatalf("served report %q", served)
	}

	// The admin API, with the token the server made.
	tok, _ := os.ReadFile(filepath.Join(data, "legal", "admin-token"))
	req, _ := http.NewRequest("POST", url+api.PathAdminLegalRequests, strings.NewReader("junk"))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("admin API: %v, %v", resp, err)
	}
	resp.Body.Close()

	out, err = command(t, "legal", "authorities", "--data", data).Output()
	if err != nil || !strings.Contains(string(out), "authority us.court.example: "+lines[1]+"\n  jurisdictions: us\n") ||
		!strings.Contains(string(out), "legal key: "+strings.TrimSpace(string(vkey))) {
		t.Fatalf("authorities: %v\n%s", err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr)
	}
	for _, args := range [][]string{{"legal"}, {"legal", "burn"}, {"legal", "process", "--data", data},
		{"legal", "report", "--data", data}, {"legal", "report", "--data", data, "--period", "2026-Q9"},
		{"legal", "process", "--data", t.TempDir(), accepted}, {"legal", "keygen", "Bad Name"}, {"legal", "sign", refused}} {
		if out, err := command(t, args...).CombinedOutput(); err == nil {
			t.Errorf("%q: exit 0:\n%s", args, out)
		}
	}
}

// TestLegalCommandsNeedTheServersKey: on a data directory whose server
// never made its legal key (one made before the front door), the legal
// subcommands refuse to run and make nothing: a key they made would fix a
// random origin, and the server's --legal-origin would then be refused.
func TestLegalCommandsNeedTheServersKey(t *testing.T) {
	data := t.TempDir()
	st, err := sqlite.Open(filepath.Join(data, "doorless.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	req := filepath.Join(t.TempDir(), "request")
	os.WriteFile(req, []byte("not a request\n"), 0o644)
	for _, args := range [][]string{{"process", "--data", data, req}, {"report", "--data", data, "--period", "2026-Q4"},
		{"authorities", "--data", data}} {
		out, err := command(t, append([]string{"legal"}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "start doorlessd on it once first") {
			t.Errorf("legal %s: %v\n%s", args[0], err, out)
		}
	}
	if entries, err := os.ReadDir(filepath.Join(data, "legal")); err == nil {
		t.Fatalf("the legal commands made %v", entries)
	}
}
