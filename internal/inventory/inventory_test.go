package inventory

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sample = "# Data inventory\n\n" +
	"Text before any section, with a table: | `ignored` | row |\n\n" +
	"## Files\n\n" +
	"| file | holds |\n| --- | --- |\n" +
	"| `store.db` | the database |\n" +
	"| `blobs/*/*.blob` | a blob |\n\n" +
	"### a sub-heading\n\n" +
	"| `keys/[a-z]*.key` | a key |\n\n" +
	"## Tables\n\n" +
	"### accounts\n\n" +
	"| column | holds |\n| --- | --- |\n" +
	"| `id` | the id |\n" +
	"| `username` | the name |\n" +
	"| `created` | when. **Disclosable** (registration date) |\n" +
	"| name | not in backticks: no column |\n\n" +
	"### `devices`\n\n" +
	"| `account_id` | the account |\n\n" +
	"#### notes\n\n" +
	"| `not_a_column` | under a deeper heading |\n\n" +
	"## Retention\n\n" +
	"| `envelopes` | until acknowledged |\n"

func TestParse(t *testing.T) {
	inv, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	wantTables := map[string][]string{"accounts": {"id", "username", "created"}, "devices": {"account_id"}}
	if want := []string{"accounts.created"}; !reflect.DeepEqual(inv.Disclosable, want) {
		t.Errorf("disclosable %q, want %q", inv.Disclosable, want)
	}
	if !reflect.DeepEqual(inv.Tables, wantTables) {
		t.Errorf("tables %v, want %v", inv.Tables, wantTables)
	}
	wantFiles := []string{"store.db", "blobs/*/*.blob", "keys/[a-z]*.key"}
	if !reflect.DeepEqual(inv.Files, wantFiles) {
		t.Errorf("files %q, want %q", inv.Files, wantFiles)
	}
	if !inv.HasColumn("accounts", "username") || inv.HasColumn("accounts", "name") || inv.HasColumn("nope", "id") {
		t.Error("HasColumn answers wrongly")
	}
	for rel, want := range map[string]string{
		"store.db":            "store.db",
		"blobs/ab/abcd.blob":  "blobs/*/*.blob",
		"keys/signing.key":    "keys/[a-z]*.key",
		"store.db-wal":        "",
		"blobs/abcd.blob":     "",
		"blobs/ab/cd/ef.blob": "",
		"keys/1.key":          "",
	} {
		got, ok := inv.FileKind(rel)
		if got != want || ok != (want != "") {
			t.Errorf("FileKind(%q) = %q, %v; want %q", rel, got, ok, want)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for name, doc := range map[string]string{
		"table twice":         "## Tables\n### a\n| `x` |\n### a\n",
		"column twice":        "## Tables\n### a\n| `x` | y |\n| `x` | z |\n",
		"heading not a name":  "## Tables\n### two words\n",
		"file twice":          "## Files\n| `a.db` |\n| `a.db` |\n",
		"bad pattern":         "## Files\n| `a[` |\n",
		"absolute pattern":    "## Files\n| `/etc/passwd` |\n",
		"pattern leaves dir":  "## Files\n| `../x` |\n",
		"pattern not clean":   "## Files\n| `a//b` |\n",
		"pattern is the dir":  "## Files\n| `.` |\n",
		"upper-case heading":  "## Tables\n### Accounts\n",
		"punctuated heading":  "## Tables\n### a-b\n",
		"trailing text title": "## Tables\n### `a` (old)\n",
	} {
		inv, err := Parse(strings.NewReader(doc))
		if !errors.Is(err, ErrMalformed) || inv != nil {
			t.Errorf("%s: Parse = %v, %v; want ErrMalformed", name, inv, err)
		}
	}
}

// TestRepositoryInventory parses docs/data-inventory.md itself: it keeps
// the form, lists the tables and the files of the data directory.
func TestRepositoryInventory(t *testing.T) {
	inv, err := ParseFile(filepath.Join("..", "..", "docs", "data-inventory.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"accounts", "devices", "envelopes"} {
		if len(inv.Tables[table]) == 0 {
			t.Errorf("the inventory lists no columns for table %s", table)
		}
	}
	for _, rel := range []string{"doorless.db", "doorless.db-wal", "attachments/ab/ab" + strings.Repeat("c", 41) + ".blob"} {
		if _, ok := inv.FileKind(rel); !ok {
			t.Errorf("the inventory lists no kind for %s", rel)
		}
	}
	if _, ok := inv.FileKind("notes.txt"); ok {
		t.Error("the inventory lists a kind for any file")
	}
}

func TestParseFileMissing(t *testing.T) {
	if _, err := ParseFile(filepath.Join(t.TempDir(), "none.md")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ParseFile of a missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	if b, err := os.ReadFile(filepath.Join("..", "..", "docs", "data-inventory.md")); err == nil {
		f.Add(string(b))
	}
	f.Add("## Files\n| `a[` |\n")
	f.Add("## Tables\n### a\n| `x` |\n### a\n")
	f.Fuzz(func(t *testing.T, doc string) {
		inv, err := Parse(strings.NewReader(doc))
		if err != nil {
			if inv != nil {
				t.Fatal("an error and an inventory")
			}
			return
		}
		for table, cols := range inv.Tables {
			seen := map[string]bool{}
			for _, c := range cols {
				if c == "" || seen[c] {
					t.Fatalf("table %s: column %q empty or listed twice", table, c)
				}
				seen[c] = true
			}
		}
		seen := map[string]bool{}
		for _, p := range inv.Files {
			if _, err := path.Match(p, ""); err != nil || seen[p] || path.IsAbs(p) {
				t.Fatalf("pattern %q accepted: invalid, absolute or twice", p)
			}
			seen[p] = true
		}
	})
}
