package requestlog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// closedLog makes a log of the given entries, closes it (so that nothing
// rewrites its files) and serves its directory. The first four entries
// are appended in order, the others concurrently after them.
func closedLog(t *testing.T, k testKey, entries ...[]byte) (dir, base string) {
	t.Helper()
	l, dir := openLog(t, k)
	for i, e := range entries {
		if i == 4 {
			break
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if len(entries) > 4 {
		var wg sync.WaitGroup
		for _, e := range entries[4:] {
			wg.Go(func() {
				if _, err := l.Append(context.Background(), e); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	base = serve(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, base
}

func TestFetchDetectsTampering(t *testing.T) {
	k := newKey(t, testOrigin)
	ctx := context.Background()
	entries := [][]byte{nthEntry(t, 0), nthEntry(t, 1), nthEntry(t, 2)}
	dir, base := closedLog(t, k, entries...)
	good, err := Fetch(ctx, nil, base, k.verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(file string, f func([]byte) []byte) (restore func()) {
		p := filepath.Join(dir, file)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f(bytes.Clone(orig)), 0o644); err != nil {
			t.Fatal(err)
		}
		return func() { os.WriteFile(p, orig, 0o644) }
	}
	flipLast := func(b []byte) []byte { b[len(b)-2] ^= 1; return b }
	otherSigner := newKey(t, testOrigin) // same name, another key
	for _, tc := range []struct {
		name string
		file string
		edit func([]byte) []byte
		want error
	}{
		{"entry changed", "tile/entries/000.p/3", flipLast, ErrRootMismatch},
		{"entry dropped", "tile/entries/000.p/3", func(b []byte) []byte { return b[:len(b)-len(entries[2])-2] }, ErrBadBundle},
		{"bundle truncated", "tile/entries/000.p/3", func(b []byte) []byte { return b[:len(b)-1] }, ErrBadBundle},
		{"tile changed", "tile/0/000.p/3", flipLast, ErrBadTile},
		{"tile truncated", "tile/0/000.p/3", func(b []byte) []byte { return b[:len(b)-32] }, ErrBadTile},
		{"checkpoint signed by another key", "checkpoint", func(b []byte) []byte {
			text, _ := NoteText(b)
			signed, _ := note.Sign(&note.Note{Text: string(text)}, otherSigner.signer)
			return signed
		}, ErrBadCheckpoint},
		{"checkpoint root changed", "checkpoint", func(b []byte) []byte {
			return bytes.Replace(b, []byte(base64.StdEncoding.EncodeToString(good.Root)), []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 1)
		}, ErrBadCheckpoint},
		{"checkpoint is garbage", "checkpoint", func([]byte) []byte { return []byte("hello\n") }, ErrBadCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer edit(tc.file, tc.edit)()
			_, err := Fetch(ctx, nil, base, k.verifier, nil)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidLog) {
				t.Fatalf("Fetch = %v, want %v", err, tc.want)
			}
		})
	}
	// A checkpoint for another origin (a verifier of another name).
	if _, err := Fetch(ctx, nil, base, newKey(t, "other.example/legal").verifier, nil); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("Fetch with another origin = %v, want ErrBadCheckpoint", err)
	}
	// A missing resource is not a verification failure, the first time;
	// once a checkpoint was verified, it is.
	seen := good
	os.Remove(filepath.Join(dir, "tile/0/000.p/3"))
	if _, err := Fetch(ctx, nil, base, k.verifier, nil); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidLog) {
		t.Fatalf("Fetch with a tile missing = %v, want ErrNotFound only", err)
	}
	if _, err := Fetch(ctx, nil, base, k.verifier, seen.Checkpoint); !errors.Is(err, ErrLogGone) || !errors.Is(err, ErrInvalidLog) {
		t.Fatalf("Fetch of a log verified before, with a tile missing = %v, want ErrLogGone", err)
	}
	os.Remove(filepath.Join(dir, "checkpoint"))
	if _, err := Fetch(ctx, nil, base, k.verifier, seen.Checkpoint); !errors.Is(err, ErrLogGone) || !errors.Is(err, ErrInvalidLog) {
		t.Fatalf("Fetch of a log verified before, without a checkpoint = %v, want ErrLogGone", err)
	}
}

func TestFetchDetectsRollbackAndFork(t *testing.T) {
	k := newKey(t, testOrigin)
	ctx := context.Background()
	e := func(n int) []byte { return nthEntry(t, n) }
	_, base := closedLog(t, k, e(0), e(1), e(2))
	seen, err := Fetch(ctx, nil, base, k.verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Unchanged: verifies against itself.
	if _, err := Fetch(ctx, nil, base, k.verifier, seen.Checkpoint); err != nil {
		t.Fatalf("Fetch against its own checkpoint: %v", err)
	}
	for _, tc := range []struct {
		name    string
		entries [][]byte
		want    error
	}{
		{"rolled back", [][]byte{e(0), e(1)}, ErrRollback},
		{"rolled back to empty", nil, ErrRollback},
		{"forked at the same size", [][]byte{e(0), e(1), e(9)}, ErrInconsistent},
		{"forked and grown", [][]byte{e(0), e(9), e(2), e(3)}, ErrInconsistent},
		{"history rewritten past a tile", append([][]byte{e(1), e(0), e(2)}, entriesFrom(t, 3, 300)...), ErrInconsistent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, other := closedLog(t, k, tc.entries...)
			if _, err := Fetch(ctx, nil, other, k.verifier, nil); err != nil {
				t.Fatalf("the other log does not verify alone: %v", err)
			}
			if _, err := Fetch(ctx, nil, other, k.verifier, seen.Checkpoint); !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidLog) {
				t.Fatalf("Fetch = %v, want %v", err, tc.want)
			}
		})
	}
	// An honest extension verifies, past a tile boundary too.
	_, grown := closedLog(t, k, append([][]byte{e(0), e(1), e(2)}, entriesFrom(t, 3, 300)...)...)
	if v, err := Fetch(ctx, nil, grown, k.verifier, seen.Checkpoint); err != nil || v.Size != 300 {
		t.Fatalf("Fetch of the grown log = %v", err)
	}
	// A previous checkpoint of another key is the caller's mistake.
	if _, err := Fetch(ctx, nil, base, newKey(t, testOrigin).verifier, seen.Checkpoint); !errors.Is(err, ErrBadState) {
		t.Fatalf("Fetch with a foreign previous checkpoint = %v, want ErrBadState", err)
	}
}

func entriesFrom(t testing.TB, from, to int) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, nthEntry(t, i))
	}
	return out
}

// mapTransport serves a log's resources from memory.
type mapTransport map[string][]byte

func (m mapTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b, ok := m[strings.TrimPrefix(r.URL.Path, "/log/")]
	resp := &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(b)), Request: r}
	if !ok {
		resp.StatusCode = http.StatusNotFound
	}
	return resp, nil
}

// FuzzFetch serves a fuzzed entry bundle, hash tile and checkpoint for a
// log of three entries: whatever verifies must be exactly those entries.
func FuzzFetch(f *testing.F) {
	k := newKey(f, testOrigin)
	entries := [][]byte{nthEntry(f, 0), nthEntry(f, 1), nthEntry(f, 2)}
	var bundle, tile []byte
	var leaves [][]byte
	for _, e := range entries {
		bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(e)))
		bundle = append(bundle, e...)
		h := rfc6962.DefaultHasher.HashLeaf(e)
		leaves = append(leaves, h)
		tile = append(tile, h...)
	}
	hc := rfc6962.DefaultHasher.HashChildren
	root := hc(hc(leaves[0], leaves[1]), leaves[2])
	cp, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n3\n%s\n", testOrigin, base64.StdEncoding.EncodeToString(root))}, k.signer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bundle, tile, cp)
	f.Add(bundle[:len(bundle)-1], tile, cp)
	f.Add(bundle, tile[:64], cp)
	f.Add(bundle, tile, cp[:len(cp)-3])
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, bundle, tile, cp []byte) {
		hc := &http.Client{Transport: mapTransport{
			"checkpoint": cp, "tile/entries/000.p/3": bundle, "tile/0/000.p/3": tile,
		}}
		v, err := Fetch(context.Background(), hc, "http://log.example/log/", k.verifier, nil)
		if err != nil {
			return
		}
		if v.Size != 3 || !equalEntries(v.Entries, entries) {
			t.Fatalf("Fetch verified entries %q", v.Entries)
		}
	})
}
