// Package postgrestest opens PostgreSQL stores for the tests of other
// packages: nodes over a fresh schema of the database that
// DOORLESS_TEST_POSTGRES names, dropped when the test ends. Safe for
// concurrent use by parallel tests (each gets its own schema).
package postgrestest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/postgres"
)

// DSNEnv names the environment variable that holds the test database's
// connection string, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const DSNEnv = "DOORLESS_TEST_POSTGRES"

// Nodes creates a fresh schema in the test database and returns a function
// that opens a new Store over it (a node of one deployment) each time it
// is called; every node is closed, and then the schema dropped, when tb
// ends. Without DOORLESS_TEST_POSTGRES it skips tb.
func Nodes(tb testing.TB) func() *postgres.Store {
	tb.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		tb.Skipf("%s is not set: no PostgreSQL to test against (e.g. %s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable')", DSNEnv, DSNEnv)
	}
	var b [8]byte
	rand.Read(b[:])
	schema := pgx.Identifier{"doorless_test_" + hex.EncodeToString(b[:])}
	ctx := context.Background()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(`CREATE SCHEMA ` + schema.Sanitize()); err != nil {
		tb.Fatalf("postgrestest: create schema: %v", err)
	}
	tb.Cleanup(func() {
		if err := exec(`DROP SCHEMA ` + schema.Sanitize() + ` CASCADE`); err != nil {
			tb.Errorf("postgrestest: drop schema: %v", err)
		}
	})
	return func() *postgres.Store {
		tb.Helper()
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			tb.Fatalf("postgrestest: %v", err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema[0]
		s, err := postgres.OpenConfig(ctx, cfg)
		if err != nil {
			tb.Fatalf("postgrestest: OpenConfig: %v", err)
		}
		tb.Cleanup(func() {
			if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
				tb.Errorf("postgrestest: Close: %v", err)
			}
		})
		return s
	}
}
