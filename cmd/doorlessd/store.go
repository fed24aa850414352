package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/postgres"
	"github.com/doorless/doorless/internal/store/sqlite"
)

// storeFlag adds --store to fs.
func storeFlag(fs *flag.FlagSet) *string {
	return fs.String("store", "", "the store: a postgres:// `URL` (PostgreSQL, which every node of a cluster shares); "+
		"empty: SQLite in the data directory")
}

// isPostgres reports whether a --store value names a PostgreSQL database.
func isPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// openStore opens the store --store names: PostgreSQL for a postgres:// URL
// (its schema migrated), SQLite in dir (made 0700 if need be) for "".
func openStore(dir, url string) (store.Store, error) {
	switch {
	case url == "":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		return sqlite.Open(filepath.Join(dir, "doorless.db"))
	case isPostgres(url):
		return postgres.Open(context.Background(), url)
	}
	return nil, fmt.Errorf("--store: not a postgres:// URL (leave it out for SQLite in the data directory)")
}

// openExistingStore opens the store of a server that has run, for the
// subcommands that read or change it: with SQLite, unlike openStore, it
// makes nothing (a PostgreSQL schema is migrated as by openStore).
func openExistingStore(dir, url string) (store.Store, error) {
	if url == "" {
		if _, err := os.Stat(filepath.Join(dir, "doorless.db")); err != nil {
			return nil, err
		}
	}
	return openStore(dir, url)
}
