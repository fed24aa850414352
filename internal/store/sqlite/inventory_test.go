package sqlite

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/doorless/doorless/internal/inventory"
)

// inventoryPath is docs/data-inventory.md, from this package's directory.
var inventoryPath = filepath.Join("..", "..", "..", "docs", "data-inventory.md")

// schemaColumns returns every table of a fresh database with its columns.
func schemaColumns(t *testing.T) map[string][]string {
	t.Helper()
	s, _ := openTemp(t)
	rows, err := s.rdb.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()

	tables := map[string][]string{}
	for _, n := range names {
		rows, err := s.rdb.Query(`SELECT name FROM pragma_table_info(?)`, n)
		if err != nil {
			t.Fatal(err)
		}
		tables[n] = []string{}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			tables[n] = append(tables[n], c)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return tables
}

// TestDataInventoryCoversSchema keeps docs/data-inventory.md true: every
// table and column of the schema is listed there, and nothing listed there
// is gone from the schema.
func TestDataInventoryCoversSchema(t *testing.T) {
	inv, err := inventory.ParseFile(inventoryPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := inv.Tables
	if len(doc) == 0 {
		t.Fatalf("%s lists no tables", inventoryPath)
	}
	schema := schemaColumns(t)
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
			t.Errorf("%s lists table %s, which the schema does not have", inventoryPath, table)
			continue
		}
		for _, c := range cols {
			if !slices.Contains(actual, c) {
				t.Errorf("%s lists column %s.%s, which the schema does not have", inventoryPath, table, c)
			}
		}
	}
}
