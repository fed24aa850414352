// Package inventory reads docs/data-inventory.md, the list of everything
// doorlessd stores, in the simple machine-readable form that file keeps:
//
//   - under "## Tables", each "### name" heading is a table, and each row of
//     a markdown table below it whose first cell is a name in backticks is
//     one of its columns;
//   - under "## Files", each row of a markdown table whose first cell is in
//     backticks is a kind of file the server writes in its data directory,
//     given as a path.Match pattern relative to that directory, with "/"
//     between directories;
//   - a column row that holds "**Disclosable**" marks a column a legal
//     request may obtain (internal/legal checks its disclosure packages
//     against these).
//
// Tests on both sides of the server use it to keep the document true: the
// store's schema test and the end-to-end audit of a server's data directory.
//
// The package does no I/O beyond ParseFile and keeps no state; everything is
// safe for concurrent use.
package inventory

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
)

// ErrMalformed is returned, wrapped with the line at fault, for a document
// that does not keep the machine-readable form.
var ErrMalformed = errors.New("inventory: malformed document")

// Section headings the parser reads.
const (
	tablesHeading = "## Tables"
	filesHeading  = "## Files"
)

var (
	tableHeadingRE = regexp.MustCompile("^### `?([a-z0-9_]+)`?\\s*$")
	columnRowRE    = regexp.MustCompile("^\\|\\s*`([a-z0-9_]+)`\\s*\\|")
	fileRowRE      = regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|")
)

// Inventory is what the document lists.
type Inventory struct {
	// Tables maps each table to its columns, in the document's order.
	Tables map[string][]string
	// Files holds the patterns of the files the data directory may hold, in
	// the document's order.
	Files []string
	// Disclosable holds the columns marked disclosable, as "table.column",
	// in the document's order.
	Disclosable []string
}

// disclosableMark marks a disclosable column's row.
const disclosableMark = "**Disclosable**"

// ParseFile parses the document at name.
func ParseFile(name string) (*Inventory, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	inv, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return inv, nil
}

// Parse reads a document. A table or column listed twice, a table heading
// that is not a plain name, and a file pattern that is not a valid,
// relative, clean path.Match pattern are ErrMalformed.
func Parse(r io.Reader) (*Inventory, error) {
	inv := &Inventory{Tables: map[string][]string{}}
	section := ""
	table := ""
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		malformed := func(format string, a ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrMalformed, line, fmt.Sprintf(format, a...))
		}
		switch {
		case strings.HasPrefix(l, "## "):
			section = strings.TrimSpace(l)
			table = ""
		case section == tablesHeading && strings.HasPrefix(l, "### "):
			m := tableHeadingRE.FindStringSubmatch(l)
			if m == nil {
				return nil, malformed("table heading %q is not \"### name\"", l)
			}
			table = m[1]
			if _, dup := inv.Tables[table]; dup {
				return nil, malformed("table %s listed twice", table)
			}
			inv.Tables[table] = []string{}
		case strings.HasPrefix(l, "#"):
			table = ""
		case section == tablesHeading && table != "":
			if m := columnRowRE.FindStringSubmatch(l); m != nil {
				if slices.Contains(inv.Tables[table], m[1]) {
					return nil, malformed("column %s.%s listed twice", table, m[1])
				}
				inv.Tables[table] = append(inv.Tables[table], m[1])
				if strings.Contains(l, disclosableMark) {
					inv.Disclosable = append(inv.Disclosable, table+"."+m[1])
				}
			}
		case section == filesHeading:
			m := fileRowRE.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			p := m[1]
			if _, err := path.Match(p, ""); err != nil || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") {
				return nil, malformed("file pattern %q is not a relative path.Match pattern", p)
			}
			if slices.Contains(inv.Files, p) {
				return nil, malformed("file pattern %q listed twice", p)
			}
			inv.Files = append(inv.Files, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("inventory: %v", err)
	}
	return inv, nil
}

// HasColumn reports whether the document lists column of table.
func (inv *Inventory) HasColumn(table, column string) bool {
	return slices.Contains(inv.Tables[table], column)
}

// FileKind returns the first pattern that matches rel, a path relative to
// the data directory with "/" between directories, and whether one does.
func (inv *Inventory) FileKind(rel string) (string, bool) {
	for _, p := range inv.Files {
		if ok, _ := path.Match(p, rel); ok {
			return p, true
		}
	}
	return "", false
}
