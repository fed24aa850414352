package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Dumper = (*Store)(nil)

// Dump implements store.Dumper: every row of every table of the database
// (SQLite's own sqlite_sequence included), read in one read transaction,
// so that it is one consistent snapshot. It is for audits and tests: it
// reads the whole database into memory.
func (s *Store) Dump(ctx context.Context) (store.Dump, error) {
	d := store.Dump{}
	err := s.read(func(db *reader) error {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var tables []string
		rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			tables = append(tables, n)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, t := range tables {
			if d[t], err = dumpTable(ctx, tx, t); err != nil {
				return fmt.Errorf("table %s: %v", t, err)
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: dump: %v", err)
	}
	return d, nil
}

func dumpTable(ctx context.Context, tx *sql.Tx, table string) ([]map[string]any, error) {
	// The name comes from sqlite_master; quoting keeps it one identifier.
	rows, err := tx.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			row[c] = vals[i]
		}
		out = append(out, row)
	}
	return out, rows.Err()
}
