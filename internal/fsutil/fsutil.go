// Package fsutil writes the small files the server and the auditor keep
// keys and state in, durably: a file is synced before it counts as written,
// and so is the directory that names it.
//
// The functions return the os package's errors (which name the path and
// never the contents); callers add their own prefix. They are safe for
// concurrent use on different paths.
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteNew creates path with mode and contents b, refusing to replace an
// existing file (os.ErrExist), and syncs the file and its directory.
func WriteNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := finish(f, b); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteAtomic replaces path with contents b and mode: it writes and syncs a
// temporary file beside it, renames it over path and syncs the directory,
// so that a crash leaves either the old file or the new one.
func WriteAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := finish(f, b); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir syncs a directory, so that the names it holds (a new file, a
// rename) survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// finish writes b to f, syncs and closes it.
func finish(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
