package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// postgresURL returns the URL of a fresh schema in the test database
// (DOORLESS_TEST_POSTGRES), dropped at the end of t; it skips t without
// the variable.
func postgresURL(t *testing.T) string {
	dsn := os.Getenv("DOORLESS_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("DOORLESS_TEST_POSTGRES is not set: no PostgreSQL to test against")
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "doorlessd_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	exec := func(sql string) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE SCHEMA " + schema)
	t.Cleanup(func() { exec("DROP SCHEMA " + schema + " CASCADE") })
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// TestServePostgres: with --store postgres://..., the invite command and
// the server keep their state in PostgreSQL, none in a SQLite file, and
// it survives a restart.
func TestServePostgres(t *testing.T) {
	url := postgresURL(t)
	data := filepath.Join(t.TempDir(), "data")
	out, err := command(t, "invite", "--data", data, "--store", url, "--count", "1", "--expires", "1h").Output()
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	code := strings.TrimSpace(string(out))

	cmd, srv, stderr := start(t, "--data", data, "--store", url, "--registration", "invite")
	if c := register(t, srv, "alice", code); c != http.StatusOK {
		t.Fatalf("registration with an invite made by the invite command: %d", c)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), url) {
		t.Error("the store URL reached the log")
	}
	if _, err := os.Stat(filepath.Join(data, "doorless.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite database was made beside PostgreSQL: %v", err)
	}

	_, srv, _ = start(t, "--data", data, "--store", url, "--registration", "open")
	if c := register(t, srv, "alice", ""); c != http.StatusConflict {
		t.Fatalf("alice after restart: %d, want 409", c)
	}
	if out, err := command(t, "transparency", "show", "--data", data, "--store", url).CombinedOutput(); err != nil {
		t.Fatalf("transparency show: %v\n%s", err, out)
	}
}

// TestStoreFlag: --store takes a postgres:// URL or nothing.
func TestStoreFlag(t *testing.T) {
	for _, args := range [][]string{
		{"--store", "mysql://localhost/db"},
		{"--store", "/var/lib/doorless.db"},
		{"invite", "--store", "sqlite:x.db"},
	} {
		cmd := command(t, append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0"}, args...)...)
		if args[0] == "invite" {
			cmd = command(t, append(args, "--data", t.TempDir())...)
		}
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "postgres://") {
			t.Errorf("%q: %v, %s; want a failure naming postgres://", args, err, out)
		}
	}
}
