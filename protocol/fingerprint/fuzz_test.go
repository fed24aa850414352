package fingerprint

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzCompareScanned feeds arbitrary bytes to the scannable decoder through
// CompareScanned. Seeds: the libsignal vectors and the comparison cases of
// testdata/libsignal-fingerprints.json.
func FuzzCompareScanned(f *testing.F) {
	alice, bob := aliceAndBob(f, VersionServiceID)
	f.Add(bob.Scannable())
	f.Add(alice.Scannable())
	f.Add(unhex(f, bobScanV1))
	f.Add([]byte{})
	v := readVectors(f)
	for _, c := range v.Compare {
		f.Add(unhex(f, c.Scanned))
	}
	for _, fp := range v.Fingerprints {
		f.Add(unhex(f, fp.Scannable))
	}
	f.Fuzz(func(t *testing.T, scanned []byte) {
		ok, err := alice.CompareScanned(scanned)
		if ok != (err == nil) {
			t.Fatalf("ok %v with error %v", ok, err)
		}
		outcome := result(ok, err)
		if outcome == "unexpected" {
			t.Fatalf("error of no documented kind: %v", err)
		}

		s, derr := decodeScannable(scanned)
		if derr != nil && (outcome != "malformed" || !errors.Is(derr, ErrMalformed)) {
			t.Fatalf("decode error %v but outcome %s", derr, outcome)
		}
		if derr != nil || s.local == nil || s.remote == nil {
			return
		}
		// A decodable scan re-encodes canonically to the same fields.
		again, err := decodeScannable(encodeScannable(s.version, s.local, s.remote))
		if err != nil || again.version != s.version || !bytes.Equal(again.local, s.local) || !bytes.Equal(again.remote, s.remote) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, s)
		}
		if outcome == "match" && (!bytes.Equal(s.local, bob.localHash[:]) || !bytes.Equal(s.remote, bob.remoteHash[:])) {
			t.Fatal("matched other hashes")
		}
	})
}
