package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/doorless/doorless/internal/store"
)

// Dump implements store.Dumper: every row of every table of the store's
// schema, read in one REPEATABLE READ transaction, so that it is one
// consistent snapshot. Values are as store.Dump has them: booleans become
// 0 or 1, every integer an int64. It is for audits and tests: it reads the
// whole database into memory.
func (s *Store) Dump(ctx context.Context) (store.Dump, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.inflight.Done()
	d := store.Dump{}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, wrap("dump", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tables, err := tableNames(ctx, tx)
	if err != nil {
		return nil, wrap("dump", err)
	}
	for _, t := range tables {
		if d[t], err = dumpTable(ctx, tx, t); err != nil {
			return nil, fmt.Errorf("postgres: dump: table %s: %v", t, err)
		}
	}
	return d, nil
}

// tableNames returns the tables of the first schema on the search path.
func tableNames(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func dumpTable(ctx context.Context, tx pgx.Tx, table string) ([]map[string]any, error) {
	rows, err := tx.Query(ctx, `SELECT * FROM `+pgx.Identifier{table}.Sanitize())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	out := []map[string]any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make(map[string]any, len(fields))
		for i, f := range fields {
			v, err := dumpValue(vals[i])
			if err != nil {
				return nil, fmt.Errorf("column %s: %v", f.Name, err)
			}
			row[f.Name] = v
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// dumpValue converts a value as pgx decodes it to one store.Dump holds.
func dumpValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, int64, float64, string, []byte:
		return v, nil
	case int32:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case float32:
		return float64(v), nil
	case bool:
		if v {
			return int64(1), nil
		}
		return int64(0), nil
	}
	return nil, fmt.Errorf("unexpected type %T", v)
}
