package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doorless/doorless/internal/api"
)

// TestCertsCommand: the server makes its sealed-sender keys on first start
// and serves the trust root that "certs show" prints; "certs rotate" makes a
// new server key, also with the root's private key kept out of the data
// directory.
func TestCertsCommand(t *testing.T) {
	data := t.TempDir()
	cmd, url, _ := start(t, "--data", data)
	resp, err := http.Get(url + api.PathTrustRoot)
	if err != nil {
		t.Fatal(err)
	}
	var root api.TrustRootResponse
	err = json.NewDecoder(resp.Body).Decode(&root)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(root.PublicKey) != 33 {
		t.Fatalf("trust root: %d %v %x", resp.StatusCode, err, root.PublicKey)
	}
	cmd.Process.Kill()
	cmd.Wait()

	run := func(args ...string) (string, error) {
		out, err := command(t, args...).CombinedOutput()
		return string(out), err
	}
	out, err := run("certs", "show", "--data", data)
	if err != nil || !strings.Contains(out, "trust root: "+base64.StdEncoding.EncodeToString(root.PublicKey)) ||
		!strings.Contains(out, "server key id: 1") {
		t.Fatalf("certs show: %v\n%s", err, out)
	}

	// The operator moves the root's private key offline.
	offline := filepath.Join(t.TempDir(), "root.key")
	if err := os.Rename(filepath.Join(data, "certs", "trust-root.key"), offline); err != nil {
		t.Fatal(err)
	}
	if out, err := run("certs", "rotate", "--data", data); err == nil {
		t.Fatalf("rotate without the root key succeeded:\n%s", out)
	}
	out, err = run("certs", "rotate", "--data", data, "--root-key", offline)
	if err != nil || !strings.Contains(out, "server key id: 2") {
		t.Fatalf("certs rotate: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"certs"}, {"certs", "burn"}, {"certs", "show", "extra"}} {
		if _, err := run(args...); err == nil {
			t.Errorf("%q: exit 0", args)
		}
	}
}
