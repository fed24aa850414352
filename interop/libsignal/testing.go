package libsignal

import (
	"os"
	"testing"
)

// Require applies the project's rule for tests that need the harness: when it is not
// available, the test fails if the environment variable CI is set and is skipped
// otherwise, with the command that installs it.
func Require(t testing.TB) {
	t.Helper()
	err := Available("")
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%v (CI is set: the libsignal interop suite must run; run npm ci in interop/libsignal)", err)
	}
	t.Skipf("%v: run npm ci in interop/libsignal to enable the libsignal interop tests", err)
}

// StartTest starts a harness Peer for a test after Require, initializes it as
// name/deviceID and closes it when the test ends.
func StartTest(t testing.TB, name string, deviceID uint32) (*Peer, Identity) {
	t.Helper()
	p := StartBare(t)
	id, err := p.Init(InitParams{Name: name, DeviceID: deviceID})
	if err != nil {
		t.Fatalf("libsignal init %s.%d: %v", name, deviceID, err)
	}
	return p, id
}

// StartBare starts a harness Peer for a test after Require, without an identity (call
// Init or ImportState), and closes it when the test ends.
func StartBare(t testing.TB) *Peer {
	t.Helper()
	Require(t)
	p, err := Start(t.Context(), "")
	if err != nil {
		t.Fatalf("starting libsignal harness: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
