package requestlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	f_log "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// ErrInvalidLog matches (errors.Is) every way a log can fail to verify:
// each of the failures below, and Check's. A fetch that fails for want
// of a network or of a resource does not match it.
var ErrInvalidLog = errors.New("requestlog: the log does not verify")

// failure is a verification failure: a sentinel that also matches
// ErrInvalidLog.
type failure struct{ msg string }

func (f *failure) Error() string        { return f.msg }
func (f *failure) Is(target error) bool { return target == ErrInvalidLog }

// Verification failures of Fetch.
var (
	// ErrBadCheckpoint: the checkpoint is not signed by the log's key, is
	// not for the log's origin, or is malformed.
	ErrBadCheckpoint error = &failure{"requestlog: checkpoint does not verify"}
	// ErrBadBundle: an entry bundle is malformed or holds the wrong
	// number of entries.
	ErrBadBundle error = &failure{"requestlog: malformed entry bundle"}
	// ErrRootMismatch: the entries do not hash to the checkpoint's root.
	ErrRootMismatch error = &failure{"requestlog: entries do not match the checkpoint"}
	// ErrBadTile: a hash tile does not hold the hashes of the entries.
	ErrBadTile error = &failure{"requestlog: hash tile does not match the entries"}
	// ErrRollback: the log is smaller than a checkpoint verified before.
	ErrRollback error = &failure{"requestlog: the log shrank since it was last verified"}
	// ErrInconsistent: the log does not extend a checkpoint verified
	// before (a fork).
	ErrInconsistent error = &failure{"requestlog: the log is not consistent with the checkpoint verified before"}
	// ErrLogGone: a resource of a log verified before is not found (HTTP
	// 404): its checkpoint, or a tile or entry bundle its checkpoint
	// commits to. A server that served a log cannot make it vanish to hide
	// what it holds from one reader; Fetch returns this instead of
	// ErrNotFound when given a previous checkpoint.
	ErrLogGone error = &failure{"requestlog: the log verified before is not served any more"}
)

// ErrBadState: the previously verified checkpoint given to Fetch does not
// verify with the key given now.
var ErrBadState = errors.New("requestlog: the previous checkpoint does not verify with this key")

// Size limits of fetched resources: a checkpoint note, a hash tile (256
// hashes) and an entry bundle (256 entries of at most 65535 bytes).
const (
	maxCheckpoint = 1 << 16
	maxTile       = layout.TileWidth * 32
	maxBundle     = layout.EntryBundleWidth * (2 + 65535)
)

// Verified is a log that Fetch verified.
type Verified struct {
	// Checkpoint is the signed checkpoint the log was verified against;
	// keep it to pass to the next Fetch as previous.
	Checkpoint []byte
	Size       uint64
	Root       []byte
	// Entries are the log's entries, in order.
	Entries [][]byte
}

// Fetch reads the log served at base (the URL under which "checkpoint" and
// "tile/..." are found, e.g. a server's URL + api.PathLegalLogPrefix) and
// verifies it: the checkpoint's signature by v and its origin (v's name),
// every entry against the checkpoint's root, every hash tile against the
// entries, and, when previous (a checkpoint an earlier Fetch returned) is
// not nil, that the log neither shrank nor forked since. Failures match
// ErrInvalidLog; hc nil means http.DefaultClient. A resource the server
// does not have (HTTP 404) is ErrNotFound, which does not match
// ErrInvalidLog, when previous is nil, and ErrLogGone, which does, when it
// is not.
func Fetch(ctx context.Context, hc *http.Client, base string, v note.Verifier, previous []byte) (*Verified, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("requestlog: bad log URL %q", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	f := &fetcher{hc: hc, base: u, tiles: map[[2]uint64][]byte{}}
	verified, err := verify(ctx, f, v, previous)
	if previous != nil && errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrLogGone, err)
	}
	return verified, err
}

// verify is Fetch over any source of the log's resources.
func verify(ctx context.Context, f *fetcher, v note.Verifier, previous []byte) (*Verified, error) {
	origin := v.Name()
	var prev *f_log.Checkpoint
	if previous != nil {
		cp, _, _, err := f_log.ParseCheckpoint(previous, origin, v)
		if err != nil {
			return nil, ErrBadState
		}
		prev = cp
	}
	raw, err := f.get(ctx, layout.CheckpointPath, maxCheckpoint)
	if err != nil {
		return nil, err
	}
	cp, _, _, err := f_log.ParseCheckpoint(raw, origin, v)
	if err != nil || len(cp.Hash) != rfc6962.DefaultHasher.Size() {
		return nil, ErrBadCheckpoint
	}
	if prev != nil && cp.Size < prev.Size {
		return nil, fmt.Errorf("%w: size %d, was %d", ErrRollback, cp.Size, prev.Size)
	}

	entries, leaves, err := f.entries(ctx, cp.Size)
	if err != nil {
		return nil, err
	}
	// The root, and the root at the previous checkpoint's size, computed
	// from the entries themselves.
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	root := func() []byte {
		if rng.End() == 0 {
			return rfc6962.DefaultHasher.EmptyRoot()
		}
		h, err := rng.GetRootHash(nil)
		if err != nil {
			panic(err) // a range from 0 always has a root
		}
		return h
	}
	var prevRoot []byte
	for i, leaf := range leaves {
		if prev != nil && uint64(i) == prev.Size {
			prevRoot = root()
		}
		if err := rng.Append(leaf, nil); err != nil {
			panic(err)
		}
	}
	if prev != nil && prev.Size == cp.Size {
		prevRoot = root()
	}
	if !bytes.Equal(root(), cp.Hash) {
		return nil, ErrRootMismatch
	}
	if err := f.checkTiles(ctx, leaves); err != nil {
		return nil, err
	}
	if prev != nil {
		if !bytes.Equal(prevRoot, prev.Hash) {
			return nil, ErrInconsistent
		}
		// The same, as a consistency proof built from the (now verified)
		// tiles, as any tlog client would check it.
		if prev.Size > 0 && prev.Size < cp.Size {
			pb, err := tclient.NewProofBuilder(ctx, cp.Size, f.readTile)
			if err != nil {
				return nil, err
			}
			p, err := pb.ConsistencyProof(ctx, prev.Size, cp.Size)
			if err != nil {
				return nil, fmt.Errorf("requestlog: building the consistency proof: %v", err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, cp.Size, p, prev.Hash, cp.Hash); err != nil {
				return nil, ErrInconsistent
			}
		}
	}
	return &Verified{Checkpoint: raw, Size: cp.Size, Root: cp.Hash, Entries: entries}, nil
}

// fetcher reads a log's resources over HTTP, keeping the tiles it read.
type fetcher struct {
	hc    *http.Client
	base  *url.URL
	tiles map[[2]uint64][]byte // (level, index) -> tile as read
}

// ErrNotFound: the server has no such resource (HTTP 404).
var ErrNotFound = errors.New("requestlog: not found")

// get reads the resource p under the base URL (the base itself for "").
func (f *fetcher) get(ctx context.Context, p string, limit int64) ([]byte, error) {
	u := f.base
	if p != "" {
		u = u.JoinPath(p)
	} else {
		p = u.Path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("requestlog: %v", err)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("requestlog: fetching %s: %v", p, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, p)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("requestlog: fetching %s: %s", p, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("requestlog: fetching %s: %v", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("requestlog: %s is larger than %d bytes", p, limit)
	}
	return b, nil
}

// partialOrFull reads the partial resource of width w, or the full one
// when the partial one is gone (Tessera deletes partial resources once the
// full one exists; tlog-tiles allows either).
func (f *fetcher) partialOrFull(ctx context.Context, path func(w uint8) string, w uint8, limit int64) ([]byte, error) {
	b, err := f.get(ctx, path(w), limit)
	if w != 0 && errors.Is(err, ErrNotFound) {
		return f.get(ctx, path(0), limit)
	}
	return b, err
}

// entries reads every entry of a log of the given size, and their leaf
// hashes.
func (f *fetcher) entries(ctx context.Context, size uint64) (entries, leaves [][]byte, err error) {
	for r := range layout.Range(0, size, size) {
		raw, err := f.partialOrFull(ctx, func(w uint8) string { return layout.EntriesPath(r.Index, w) }, r.Partial, maxBundle)
		if err != nil {
			return nil, nil, err
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, nil, fmt.Errorf("%w: bundle %d: %v", ErrBadBundle, r.Index, err)
		}
		// A partial bundle holds exactly its width; a full one (also
		// served for a partial request) exactly 256 entries.
		if n := len(b.Entries); n != layout.EntryBundleWidth && n != int(r.Partial) {
			return nil, nil, fmt.Errorf("%w: bundle %d holds %d entries", ErrBadBundle, r.Index, n)
		}
		if uint(len(b.Entries)) < r.First+r.N {
			return nil, nil, fmt.Errorf("%w: bundle %d is short", ErrBadBundle, r.Index)
		}
		for _, e := range b.Entries[r.First : r.First+r.N] {
			entries = append(entries, bytes.Clone(e))
			leaves = append(leaves, rfc6962.DefaultHasher.HashLeaf(e))
		}
	}
	return entries, leaves, nil
}

// readTile is a tessera client.TileFetcherFunc over the tiles checkTiles
// read (and verified), reading any other from the server.
func (f *fetcher) readTile(ctx context.Context, level, index uint64, w uint8) ([]byte, error) {
	if t, ok := f.tiles[[2]uint64{level, index}]; ok {
		return t, nil
	}
	return f.partialOrFull(ctx, func(w uint8) string { return layout.TilePath(level, index, w) }, w, maxTile)
}

// checkTiles reads every hash tile of the tree over leaves and checks that
// it holds exactly the hashes computed from the leaves. Level L of tiles
// holds the tree's nodes at height 8L that cover whole subtrees.
func (f *fetcher) checkTiles(ctx context.Context, leaves [][]byte) error {
	size := uint64(len(leaves))
	row := leaves // tree nodes at height 8*level
	for level := uint64(0); len(row) > 0; level++ {
		for index := uint64(0); index*layout.TileWidth < uint64(len(row)); index++ {
			w := layout.PartialTileSize(level, index, size)
			raw, err := f.partialOrFull(ctx, func(w uint8) string { return layout.TilePath(level, index, w) }, w, maxTile)
			if err != nil {
				return err
			}
			var t api.HashTile
			if err := t.UnmarshalText(raw); err != nil {
				return fmt.Errorf("%w: tile %d/%d: %v", ErrBadTile, level, index, err)
			}
			end := min((index+1)*layout.TileWidth, uint64(len(row)))
			want := row[index*layout.TileWidth : end]
			if len(t.Nodes) != layout.TileWidth && len(t.Nodes) != len(want) {
				return fmt.Errorf("%w: tile %d/%d holds %d hashes", ErrBadTile, level, index, len(t.Nodes))
			}
			for i, h := range want {
				if !bytes.Equal(t.Nodes[i], h) {
					return fmt.Errorf("%w: tile %d/%d", ErrBadTile, level, index)
				}
			}
			f.tiles[[2]uint64{level, index}] = raw
		}
		row = up8(row)
	}
	return nil
}

// up8 returns the complete nodes 8 levels above row.
func up8(row [][]byte) [][]byte {
	for range layout.TileHeight {
		next := make([][]byte, 0, len(row)/2)
		for i := 0; i+1 < len(row); i += 2 {
			next = append(next, rfc6962.DefaultHasher.HashChildren(row[i], row[i+1]))
		}
		row = next
	}
	return row
}

// FetchKey fetches the log's verifier key (a note verifier key) from a
// server's api.PathLegalKey: keyURL is the full URL. Trusting what it
// returns is trust on first use; pin the key out of band where it matters.
func FetchKey(ctx context.Context, hc *http.Client, keyURL string) (string, error) {
	u, err := url.Parse(keyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("requestlog: bad key URL %q", keyURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	f := &fetcher{hc: hc, base: u}
	b, err := f.get(ctx, "", maxKey)
	if err != nil {
		return "", err
	}
	key := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(key); err != nil {
		return "", ErrBadKey
	}
	return key, nil
}

// maxKey bounds a verifier key's text.
const maxKey = 1 << 10

// ErrBadKey: the server's answer is not a note verifier key.
var ErrBadKey = errors.New("requestlog: the server's log key is not a note verifier key")
