// Command gen writes ../libsignal-fingerprints.json: fingerprints and scanned-fingerprint
// comparisons computed by the real libsignal (through the interop harness), for the unit
// tests of package fingerprint to check against without Node.
//
// Run from the repository root, after npm ci in interop/libsignal:
//
//	go run ./protocol/fingerprint/testdata/gen
//
// The inputs come from a fixed seed, so a rerun reproduces the file unless libsignal's
// behaviour changed.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/interop/libsignal"
)

// The libsignal test identities (rust/protocol/src/fingerprint.rs).
const (
	aliceIdentity = "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868"
	bobIdentity   = "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b"
	aliceStableID = "+14152222222"
	bobStableID   = "+14153333333"
	iterations    = 5200
)

type fingerprintVector struct {
	Name        string `json:"name"`
	Version     uint32 `json:"version"`
	Iterations  uint32 `json:"iterations"`
	LocalID     string `json:"localId"`
	LocalKey    string `json:"localKey"`
	RemoteID    string `json:"remoteId"`
	RemoteKey   string `json:"remoteKey"`
	Displayable string `json:"displayable"`
	Scannable   string `json:"scannable"`
}

type compareVector struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"`
	Scanned string `json:"scanned"`
	Result  string `json:"result"`
	Detail  string `json:"libsignalError,omitempty"`
}

type vectors struct {
	Source       string              `json:"source"`
	Fingerprints []fingerprintVector `json:"fingerprints"`
	Compare      []compareVector     `json:"compare"`
}

func main() {
	log.SetFlags(0)
	p, err := libsignal.Start(context.Background(), "")
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	version, err := p.Ping()
	if err != nil {
		log.Fatal(err)
	}
	out := vectors{Source: fmt.Sprintf("computed by @signalapp/libsignal-client %s via interop/libsignal (testdata/gen)", version)}

	alice, _ := hex.DecodeString(aliceIdentity)
	bob, _ := hex.DecodeString(bobIdentity)
	rng := rand.New(rand.NewChaCha8([32]byte([]byte("doorless fingerprint vectors v1."))))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	randKey := func() []byte { return append([]byte{0x05}, randBytes(32)...) }

	add := func(name string, params libsignal.FingerprintParams) {
		r, err := p.Fingerprint(params)
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		out.Fingerprints = append(out.Fingerprints, fingerprintVector{
			Name: name, Version: params.Version, Iterations: params.Iterations,
			LocalID: hex.EncodeToString(params.LocalID), LocalKey: hex.EncodeToString(params.LocalKey),
			RemoteID: hex.EncodeToString(params.RemoteID), RemoteKey: hex.EncodeToString(params.RemoteKey),
			Displayable: r.Displayable, Scannable: hex.EncodeToString(r.Scannable),
		})
	}
	for _, v := range []uint32{1, 2} {
		add(fmt.Sprintf("libsignal test identities v%d, alice local", v), libsignal.FingerprintParams{
			Version: v, Iterations: iterations, LocalID: []byte(aliceStableID), LocalKey: alice, RemoteID: []byte(bobStableID), RemoteKey: bob})
		add(fmt.Sprintf("libsignal test identities v%d, bob local", v), libsignal.FingerprintParams{
			Version: v, Iterations: iterations, LocalID: []byte(bobStableID), LocalKey: bob, RemoteID: []byte(aliceStableID), RemoteKey: alice})
	}
	versions := []uint32{0, 1, 2, 3, 127, 128, 1 << 31, 1<<32 - 1}
	iterCounts := []uint32{2, 3, 1024, 5200, 5201, 20000}
	idLens := []int{0, 1, 12, 16, 17, 36, 100}
	for i := range 24 {
		params := libsignal.FingerprintParams{
			Version:    versions[i%len(versions)],
			Iterations: iterCounts[i%len(iterCounts)],
			LocalID:    randBytes(idLens[i%len(idLens)]),
			LocalKey:   randKey(),
			RemoteID:   randBytes(idLens[(i+3)%len(idLens)]),
			RemoteKey:  randKey(),
		}
		if i%5 == 0 { // same identifier on both sides, different keys
			params.RemoteID = bytes.Clone(params.LocalID)
		}
		add(fmt.Sprintf("random %d", i), params)
	}

	// Scanned encodings compared against Alice's fingerprint (local Alice, remote Bob,
	// the libsignal test identities and iteration count) of the given version.
	local := map[uint32][]byte{}
	var hashA, hashB []byte
	for _, v := range []uint32{1, 2} {
		r, err := p.Fingerprint(libsignal.FingerprintParams{Version: v, Iterations: iterations,
			LocalID: []byte(aliceStableID), LocalKey: alice, RemoteID: []byte(bobStableID), RemoteKey: bob})
		if err != nil {
			log.Fatal(err)
		}
		local[v] = r.Scannable
		hashA, hashB = r.Scannable[6:38], r.Scannable[42:74]
	}
	compare := func(name string, v uint32, scanned []byte) {
		ok, err := p.CompareFingerprints(local[v], scanned)
		cv := compareVector{Name: name, Version: v, Scanned: hex.EncodeToString(scanned)}
		var re *libsignal.RemoteError
		switch {
		case err == nil && ok:
			cv.Result = "match"
		case err == nil:
			cv.Result = "mismatch"
		case errors.As(err, &re) && re.Kind == libsignal.KindFingerprintVersionMismatch:
			cv.Result, cv.Detail = "version-mismatch", re.Message
		case errors.As(err, &re) && re.Kind == libsignal.KindFingerprintParsingError:
			cv.Result, cv.Detail = "malformed", re.Message
		default:
			log.Fatalf("%s: %v", name, err)
		}
		out.Compare = append(out.Compare, cv)
	}

	// Encoding helpers.
	tag := func(b []byte, n protowire.Number, t protowire.Type) []byte { return protowire.AppendTag(b, n, t) }
	ver := func(b []byte, v uint64) []byte { return protowire.AppendVarint(tag(b, 1, protowire.VarintType), v) }
	side := func(b []byte, n protowire.Number, inner []byte) []byte {
		return protowire.AppendBytes(tag(b, n, protowire.BytesType), inner)
	}
	content := func(c []byte) []byte { return protowire.AppendBytes(tag(nil, 1, protowire.BytesType), c) }
	scan := func(v uint64, l, r []byte) []byte { return side(side(ver(nil, v), 2, content(l)), 3, content(r)) }
	group := func(n protowire.Number, depth int, inner []byte) []byte {
		var b []byte
		for d := range depth {
			b = tag(b, n+protowire.Number(d), protowire.StartGroupType)
		}
		b = append(b, inner...)
		for d := depth - 1; d >= 0; d-- {
			b = tag(b, n+protowire.Number(d), protowire.EndGroupType)
		}
		return b
	}
	good := scan(2, hashB, hashA)

	compare("peer's scannable", 2, good)
	compare("peer's scannable v1", 1, scan(1, hashB, hashA))
	compare("own scannable", 2, local[2])
	compare("other version", 2, scan(1, hashB, hashA))
	compare("other version, ours 1", 1, scan(2, hashB, hashA))
	compare("empty", 2, nil)
	compare("no version", 2, side(side(nil, 2, content(hashB)), 3, content(hashA)))
	compare("version 0", 2, scan(0, hashB, hashA))
	compare("version truncated to 32 bits", 2, scan(1<<32+2, hashB, hashA))
	compare("largest varint version", 2, scan(1<<64-1, hashB, hashA))
	compare("missing local", 2, side(ver(nil, 2), 3, content(hashA)))
	compare("missing remote", 2, side(ver(nil, 2), 2, content(hashB)))
	compare("missing remote, other version", 2, side(ver(nil, 3), 2, content(hashB)))
	compare("local without content", 2, side(side(ver(nil, 2), 2, nil), 3, content(hashA)))
	compare("empty contents", 2, scan(2, []byte{}, []byte{}))
	compare("short content", 2, scan(2, hashB[:31], hashA))
	compare("long content", 2, scan(2, append(bytes.Clone(hashB), 0), hashA))
	compare("sides swapped", 2, scan(2, hashA, hashB))
	compare("fields reversed", 2, ver(side(side(nil, 3, content(hashA)), 2, content(hashB)), 2))
	compare("version repeated, last wins", 2, ver(scan(1, hashB, hashA), 2))
	compare("version repeated, last loses", 2, ver(good, 1))
	compare("local repeated empty, merged", 2, side(good, 2, nil))
	compare("local repeated with other content", 2, side(good, 2, content(hashA)))
	compare("content repeated in one message", 2, side(side(ver(nil, 2), 2, append(content(hashA), content(hashB)...)), 3, content(hashA)))
	unknown := tag(nil, 4, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 300)
	unknown = protowire.AppendFixed32(tag(unknown, 5, protowire.Fixed32Type), 7)
	unknown = protowire.AppendFixed64(tag(unknown, 6, protowire.Fixed64Type), 7)
	unknown = protowire.AppendBytes(tag(unknown, 7, protowire.BytesType), []byte("xyz"))
	unknown = append(unknown, group(8, 3, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1))...)
	compare("unknown fields before", 2, append(bytes.Clone(unknown), good...))
	compare("unknown fields after", 2, append(bytes.Clone(good), unknown...))
	compare("unknown field with the largest number", 2, append(protowire.AppendVarint(tag(nil, protowire.MaxValidNumber, protowire.VarintType), 1), good...))
	compare("unknown fields inside a side", 2, side(side(ver(nil, 2), 2, append(bytes.Clone(unknown), content(hashB)...)), 3, content(hashA)))
	for _, depth := range []int{99, 100, 101} {
		compare(fmt.Sprintf("empty groups nested %d deep", depth), 2, append(group(10, depth, nil), good...))
		compare(fmt.Sprintf("groups nested %d deep around a varint", depth), 2,
			append(group(10, depth, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1)), good...))
		compare(fmt.Sprintf("empty groups nested %d deep inside a side", depth), 2,
			side(side(ver(nil, 2), 2, append(group(10, depth, nil), content(hashB)...)), 3, content(hashA)))
	}
	compare("version with wire type bytes", 2, side(side(side(nil, 1, []byte{2}), 2, content(hashB)), 3, content(hashA)))
	compare("side with wire type varint", 2, protowire.AppendVarint(tag(good, 2, protowire.VarintType), 1))
	compare("content with wire type fixed32", 2, side(good, 2, protowire.AppendFixed32(tag(nil, 1, protowire.Fixed32Type), 1)))
	compare("field number 0", 2, append([]byte{0x00, 0x01}, good...))
	compare("wire type 6", 2, append([]byte{0x26, 0x01}, good...))
	compare("wire type 7", 2, append([]byte{0x27, 0x01}, good...))
	compare("key above 32 bits", 2, append(protowire.AppendVarint(nil, 1<<32), append([]byte{0x01}, good...)...))
	compare("key of 2^32-1 (field 2^29-1, wire type 7)", 2, append(protowire.AppendVarint(nil, 1<<32-1), good...))
	compare("lone end group", 2, append(tag(nil, 9, protowire.EndGroupType), good...))
	compare("mismatched end group", 2, append(append(tag(nil, 9, protowire.StartGroupType), tag(nil, 10, protowire.EndGroupType)...), good...))
	compare("unterminated group", 2, append(bytes.Clone(good), tag(nil, 9, protowire.StartGroupType)...))
	compare("11-byte varint", 2, append(append([]byte{0x20}, bytes.Repeat([]byte{0x80}, 10)...), append([]byte{0x00}, good...)...))
	compare("10-byte varint overflowing", 2, append(append([]byte{0x20}, bytes.Repeat([]byte{0xff}, 9)...), append([]byte{0x02}, good...)...))
	compare("10-byte varint at the limit", 2, append(append([]byte{0x20}, bytes.Repeat([]byte{0xff}, 9)...), append([]byte{0x01}, good...)...))
	compare("non-minimal varint key", 2, append([]byte{0xa0, 0x80, 0x00, 0x01}, good...))
	compare("truncated by one byte", 2, good[:len(good)-1])
	compare("truncated inside a key", 2, append(bytes.Clone(good), 0x80))
	compare("truncated fixed64", 2, append(tag(bytes.Clone(good), 6, protowire.Fixed64Type), 1, 2, 3))
	compare("length past the end", 2, append(tag(bytes.Clone(good), 7, protowire.BytesType), 5, 1))
	overrun := ver(nil, 2)
	overrun = tag(overrun, 2, protowire.BytesType)
	overrun = protowire.AppendVarint(overrun, 2) // the side claims 2 bytes, its content 32
	overrun = append(overrun, content(hashB)...)
	overrun = side(overrun, 3, content(hashA))
	compare("side shorter than its content", 2, overrun)
	compare("trailing zero byte", 2, append(bytes.Clone(good), 0))

	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "libsignal-fingerprints.json")
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	counts := map[string]int{}
	for _, c := range out.Compare {
		counts[c.Result]++
	}
	log.Printf("wrote %s: %d fingerprints, %d comparisons %v", strings.TrimPrefix(path, filepath.Dir(path)+"/"), len(out.Fingerprints), len(out.Compare), counts)
}
