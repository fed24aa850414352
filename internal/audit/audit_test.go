package audit

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestScanDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"a.db":        "xx\x00secret-id\x00yy secret-id",
		"sub/b.blob":  "nothing here",
		"sub/c.meta":  "\x05key-bytes and secret-id",
		"sub/empty":   "",
		"other.trail": "key-byte", // a prefix of a needle is not the needle
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ScanDir(dir, map[string][]byte{"id": []byte("secret-id"), "key": []byte("\x05key-bytes"), "none": nil, "absent": []byte("zzz")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{Needle: "id", Path: "a.db", Offset: 3},
		{Needle: "id", Path: filepath.Join("sub", "c.meta"), Offset: 15},
		{Needle: "key", Path: filepath.Join("sub", "c.meta"), Offset: 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ScanDir = %v, want %v", got, want)
	}
	if _, err := ScanDir(filepath.Join(dir, "missing"), nil); err == nil {
		t.Fatal("ScanDir of a missing directory succeeded")
	}
}
