// Package audit finds what a server keeps: byte strings (an account id, a
// username, a key) in every file under a directory. Tests use it with a
// store dump (store.Dumper) to check that deleting an account leaves
// nothing of it behind, in the database's rows and in its files' raw bytes.
//
// The package only reads; everything is safe for concurrent use.
package audit

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Finding is a needle found in a file.
type Finding struct {
	Needle string // the needle's name
	Path   string // the file, relative to the directory scanned
	Offset int64  // where the first occurrence starts
}

func (f Finding) String() string { return fmt.Sprintf("%s in %s at %d", f.Needle, f.Path, f.Offset) }

// ScanDir reads every regular file under dir and returns where each needle
// (by name) occurs, at most once per needle and file, sorted by path and
// needle. Empty needles are ignored. Files are read whole: it is for test
// data directories, not for large ones.
func ScanDir(dir string, needles map[string][]byte) ([]Finding, error) {
	var found []Finding
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if len(n) == 0 {
				continue
			}
			if i := bytes.Index(b, n); i >= 0 {
				found = append(found, Finding{Needle: name, Path: rel, Offset: int64(i)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %v", err)
	}
	slices.SortFunc(found, func(a, b Finding) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Needle, b.Needle)
	})
	return found, nil
}
