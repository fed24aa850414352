package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttachmentFlags: doorlessd keeps attachments in the data directory's
// "attachments" (mode 0700) and has the endpoints on; a bad limit stops it.
func TestAttachmentFlags(t *testing.T) {
	data := t.TempDir()
	_, url, _ := start(t, "--data", data, "--max-attachment", "1000", "--attachment-ttl", "1h")
	fi, err := os.Stat(filepath.Join(data, "attachments"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("attachments directory: %v, %v", fi, err)
	}
	// Creating an upload needs device credentials: 401, not 404.
	resp, err := http.Post(url+"/v1/attachments", "application/json", strings.NewReader(`{"size":10}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST /v1/attachments: %d, want 401", resp.StatusCode)
	}

	for _, args := range [][]string{
		{"--max-attachment", "-5"},
		{"--attachment-ttl", "-1h"},
	} {
		cmd := command(t, append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0"}, args...)...)
		if err := cmd.Run(); err == nil {
			t.Errorf("%q: exit 0", args)
		}
	}
}
