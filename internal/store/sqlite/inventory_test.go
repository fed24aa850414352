package sqlite

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// inventoryPath is docs/data-inventory.md, from this package's directory.
var inventoryPath = filepath.Join("..", "..", "..", "docs", "data-inventory.md")

var (
	tableHeadingRE = regexp.MustCompile("^### `?([a-z0-9_]+)`?\\s*$")
	columnRowRE    = regexp.MustCompile("^\\|\\s*`([a-z0-9_]+)`\\s*\\|")
)

// parseInventory returns the tables and columns listed under "## Tables":
// each "### name" heading is a table, and each markdown table row under it
// whose first cell is a name in backticks is one of its columns.
func parseInventory(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tables := map[string][]string{}
	inTables := false
	table := ""
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "## "):
			inTables = strings.TrimSpace(l) == "## Tables"
			table = ""
		case !inTables:
		case strings.HasPrefix(l, "### "):
			m := tableHeadingRE.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s:%d: table heading %q is not \"### name\"", path, line, l)
			}
			table = m[1]
			if _, dup := tables[table]; dup {
				t.Fatalf("%s:%d: table %s listed twice", path, line, table)
			}
			tables[table] = nil
		case strings.HasPrefix(l, "#"):
			table = ""
		case table != "":
			if m := columnRowRE.FindStringSubmatch(l); m != nil {
				if slices.Contains(tables[table], m[1]) {
					t.Fatalf("%s:%d: column %s.%s listed twice", path, line, table, m[1])
				}
				tables[table] = append(tables[table], m[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tables
}

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
	doc := parseInventory(t, inventoryPath)
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
