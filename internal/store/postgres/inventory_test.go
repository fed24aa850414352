package postgres

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/doorless/doorless/internal/inventory"
)

// inventoryPath is docs/data-inventory.md, from this package's directory.
var inventoryPath = filepath.Join("..", "..", "..", "docs", "data-inventory.md")

// sqliteOnly are the tables docs/data-inventory.md lists that SQLite itself
// keeps, which a PostgreSQL schema has no reason to have.
var sqliteOnly = []string{"sqlite_sequence"}

// schemaColumns returns every table of a freshly migrated schema with its
// columns.
func schemaColumns(t *testing.T) map[string][]string {
	t.Helper()
	s := openTest(t)
	rows, err := s.pool.Query(t.Context(), `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tables := map[string][]string{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			t.Fatal(err)
		}
		tables[table] = append(tables[table], column)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return tables
}

// TestDataInventoryCoversSchema keeps docs/data-inventory.md true for
// PostgreSQL too: every table and column of the schema is listed there,
// and everything listed there, but SQLite's own tables, is in the schema
// (with the names the SQLite store uses).
func TestDataInventoryCoversSchema(t *testing.T) {
	needDSN(t)
	inv, err := inventory.ParseFile(inventoryPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := inv.Tables
	if len(doc) == 0 {
		t.Fatalf("%s lists no tables", inventoryPath)
	}
	schema := schemaColumns(t)
	if len(schema) == 0 {
		t.Fatal("the schema has no tables")
	}
	for table, cols := range schema {
		documented, ok := doc[table]
		if !ok {
			t.Errorf("table %s is not in %s", table, inventoryPath)
			continue
		}
		for _, c := range cols {
			if !slices.Contains(documented, c) {
				t.Errorf("column %s.%s is not in %s", table, c, inventoryPath)
			}
		}
	}
	for table, cols := range doc {
		actual, ok := schema[table]
		if !ok {
			if !slices.Contains(sqliteOnly, table) {
				t.Errorf("%s lists table %s, which the PostgreSQL schema does not have", inventoryPath, table)
			}
			continue
		}
		for _, c := range cols {
			if !slices.Contains(actual, c) {
				t.Errorf("%s lists column %s.%s, which the PostgreSQL schema does not have", inventoryPath, table, c)
			}
		}
	}
}
