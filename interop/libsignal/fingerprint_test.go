package libsignal_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/fingerprint"
)

// fingerprintCase is one random conversation: both identities and identifiers.
type fingerprintCase struct {
	version, iterations uint32
	idA, keyA           []byte
	idB, keyB           []byte
}

func randomFingerprintCase(rng *rand.Rand) fingerprintCase {
	b := func(n int) []byte {
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(rng.Uint32())
		}
		return out
	}
	key := func() []byte { return append([]byte{0x05}, b(32)...) }
	versions := []uint32{0, 1, 2, 2, 2, 3, rng.Uint32()}
	iterations := []uint32{2, 7, 1024, fingerprint.Iterations, fingerprint.Iterations}
	c := fingerprintCase{
		version:    versions[rng.IntN(len(versions))],
		iterations: iterations[rng.IntN(len(iterations))],
		idA:        b(rng.IntN(40)),
		keyA:       key(),
		idB:        b(rng.IntN(40)),
		keyB:       key(),
	}
	if rng.IntN(8) == 0 {
		c.idB = bytes.Clone(c.idA) // same identifier, different keys
	}
	if rng.IntN(8) == 0 {
		c.keyB = bytes.Clone(c.keyA) // same key, different identifiers
	}
	return c
}

// TestFingerprintMatchesLibsignal computes random fingerprints with our Go and with
// libsignal, from both sides, and compares the displayable and scannable forms.
func TestFingerprintMatchesLibsignal(t *testing.T) {
	p := libsignal.StartBare(t)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 100
	if testing.Short() {
		n = 20
	}
	for i := range n {
		c := randomFingerprintCase(rng)
		for _, side := range []struct {
			name                 string
			lid, lkey, rid, rkey []byte
		}{
			{"a-local", c.idA, c.keyA, c.idB, c.keyB},
			{"b-local", c.idB, c.keyB, c.idA, c.keyA},
		} {
			want, err := p.Fingerprint(libsignal.FingerprintParams{
				Version: c.version, Iterations: c.iterations,
				LocalID: side.lid, LocalKey: side.lkey, RemoteID: side.rid, RemoteKey: side.rkey,
			})
			if err != nil {
				t.Fatalf("case %d %s: libsignal: %v", i, side.name, err)
			}
			got, err := fingerprint.New(int(c.version), int(c.iterations), side.lid, side.lkey, side.rid, side.rkey)
			if err != nil {
				t.Fatalf("case %d %s: %v", i, side.name, err)
			}
			if got.Displayable() != want.Displayable {
				t.Errorf("case %d %s (v%d, %d iterations): displayable\n got %s\nwant %s",
					i, side.name, c.version, c.iterations, got.Displayable(), want.Displayable)
			}
			if !bytes.Equal(got.Scannable(), want.Scannable) {
				t.Errorf("case %d %s: scannable\n got %x\nwant %x", i, side.name, got.Scannable(), want.Scannable)
			}
		}
	}
}

// TestFingerprintIterationLimits checks that we refuse exactly the iteration counts
// libsignal refuses (without computing a million rounds).
func TestFingerprintIterationLimits(t *testing.T) {
	p := libsignal.StartBare(t)
	key := append([]byte{0x05}, bytes.Repeat([]byte{1}, 32)...)
	for _, it := range []uint32{0, 1, 1_000_001, 1 << 31} {
		_, err := p.Fingerprint(libsignal.FingerprintParams{Version: 2, Iterations: it, LocalKey: key, RemoteKey: key})
		if libsignal.KindOf(err) != libsignal.KindFingerprintInvalidIterations {
			t.Errorf("libsignal with %d iterations: %v", it, err)
		}
		if _, err := fingerprint.New(2, int(it), nil, key, nil, key); !errors.Is(err, fingerprint.ErrInvalidIterations) {
			t.Errorf("New with %d iterations: %v", it, err)
		}
	}
}

// fingerprintOutcome and libsignalFingerprintOutcome name a comparison's result in a way both implementations share.
func fingerprintOutcome(ok bool, err error) string {
	switch {
	case ok && err == nil:
		return "match"
	case errors.Is(err, fingerprint.ErrMismatch):
		return "mismatch"
	case errors.Is(err, fingerprint.ErrVersionMismatch):
		return "version-mismatch"
	case errors.Is(err, fingerprint.ErrMalformed):
		return "malformed"
	}
	return "unexpected: " + err.Error()
}

func libsignalFingerprintOutcome(ok bool, err error) string {
	switch {
	case err == nil && ok:
		return "match"
	case err == nil:
		return "mismatch"
	case libsignal.KindOf(err) == libsignal.KindFingerprintVersionMismatch:
		return "version-mismatch"
	case libsignal.KindOf(err) == libsignal.KindFingerprintParsingError:
		return "malformed"
	}
	return "unexpected: " + err.Error()
}

// mutateScannable returns a random variation of a scannable encoding: bit flips, cuts,
// insertions (of random bytes or of protobuf-looking fragments) and duplications.
func mutateScannable(rng *rand.Rand, b []byte) []byte {
	out := bytes.Clone(b)
	fragments := [][]byte{
		{0x08}, {0x08, 0x02}, {0x12}, {0x1a}, {0x0a}, {0x0a, 0x20}, {0x12, 0x00}, {0x1a, 0x00},
		{0x0b}, {0x0c}, {0x23}, {0x24}, {0x25, 1, 2, 3, 4}, {0x21}, {0x80}, {0xff}, {0x00},
		{0x06}, {0x07}, {0x12, 0x22}, {0x08, 0x80, 0x80, 0x80, 0x80, 0x10},
	}
	for range 1 + rng.IntN(3) {
		switch op := rng.IntN(6); {
		case op == 0 && len(out) > 0: // flip a bit
			out[rng.IntN(len(out))] ^= 1 << rng.IntN(8)
		case op == 1 && len(out) > 0: // cut a range
			i := rng.IntN(len(out))
			j := i + rng.IntN(len(out)-i+1)
			out = append(out[:i:i], out[j:]...)
		case op == 2: // insert a fragment
			i := rng.IntN(len(out) + 1)
			f := fragments[rng.IntN(len(fragments))]
			out = append(out[:i:i], append(bytes.Clone(f), out[i:]...)...)
		case op == 3 && len(out) > 0: // duplicate a range
			i := rng.IntN(len(out))
			j := i + rng.IntN(len(out)-i+1)
			out = append(bytes.Clone(out[:j]), out[i:]...)
		case op == 4 && len(out) > 0: // set a byte
			out[rng.IntN(len(out))] = byte(rng.Uint32())
		default: // truncate
			out = out[:rng.IntN(len(out)+1)]
		}
	}
	return out
}

// TestCompareScannedMatchesLibsignal feeds libsignal's compare and ours the same
// scanned bytes, valid and mutated, and requires the same outcome.
func TestCompareScannedMatchesLibsignal(t *testing.T) {
	p := libsignal.StartBare(t)
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() []byte {
		k := make([]byte, 33)
		k[0] = 0x05
		for i := 1; i < 33; i++ {
			k[i] = byte(rng.Uint32())
		}
		return k
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	counts := map[string]int{}
	var local *fingerprint.Fingerprint
	var localScan, peerScan []byte
	for i := range n {
		if i%500 == 0 {
			ka, kb := key(), key()
			var err error
			local, err = fingerprint.New(2, 1024, []byte("alice"), ka, []byte("bob"), kb)
			if err != nil {
				t.Fatal(err)
			}
			peer, err := fingerprint.New(2, 1024, []byte("bob"), kb, []byte("alice"), ka)
			if err != nil {
				t.Fatal(err)
			}
			localScan, peerScan = local.Scannable(), peer.Scannable()
		}
		scanned := peerScan
		if i%50 != 0 {
			scanned = mutateScannable(rng, peerScan)
		}
		libOK, libErr := p.CompareFingerprints(localScan, scanned)
		want := libsignalFingerprintOutcome(libOK, libErr)
		ok, err := local.CompareScanned(scanned)
		got := fingerprintOutcome(ok, err)
		if got != want {
			t.Errorf("scanned %s: ours %s (%v), libsignal %s (%v)", hex.EncodeToString(scanned), got, err, want, libErr)
		}
		counts[want]++
	}
	t.Logf("outcomes: %v", counts)
}
