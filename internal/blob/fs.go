package blob

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Files of one id, in the shard directory named by the id's first two
// characters:
//
//	<id>.meta  the sidecar: declared size, created time, token hash, and
//	           the acknowledged offset of an unfinished upload (JSON)
//	<id>.part  an unfinished upload, written at offsets
//	<id>.blob  a finished blob (the .part, renamed once complete)
//
// The modification time of .part is the upload's last progress; that of
// .blob is when it finished. Both are set from the FS's clock. Temporary
// files end in ".tmp".
const (
	extMeta = ".meta"
	extPart = ".part"
	extBlob = ".blob"
	extTmp  = ".tmp"
)

// copyBuffer is the unit in which Append copies.
const copyBuffer = 256 << 10

// FS is a Store on a directory of the local filesystem. A chunk is written
// at its offset and fsynced, then the sidecar's offset is replaced
// atomically (written to a temporary file, fsynced, renamed) before Append
// returns; the finished upload is renamed to its final name. So a crash
// loses at most the chunk in flight, never acknowledged bytes, and never
// makes an unfinished upload readable.
//
// FS is safe for concurrent use within one process; two processes must not
// share a directory.
type FS struct {
	dir   string
	now   func() time.Time
	locks locks
}

var _ Store = (*FS)(nil)

// NewFS returns a Store in dir, which it creates (mode 0700) if missing.
// now is the clock for created and progress times; nil means time.Now.
func NewFS(dir string, now func() time.Time) (*FS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fsErr("create directory", err)
	}
	if now == nil {
		now = time.Now
	}
	return &FS{dir: dir, now: now, locks: locks{m: make(map[string]*idLock)}}, nil
}

// meta is the sidecar's content.
type meta struct {
	Size      int64  `json:"size"`
	Created   int64  `json:"created"` // Unix milliseconds
	TokenHash string `json:"token_sha256"`
	Offset    int64  `json:"offset"`
}

func (f *FS) path(id, ext string) string { return filepath.Join(f.dir, id[:2], id+ext) }

// Create implements Store.
func (f *FS) Create(ctx context.Context, size int64, tokenHash [32]byte) (string, error) {
	if size <= 0 {
		return "", fmt.Errorf("blob: size %d is not positive", size)
	}
	id := NewID()
	if err := os.MkdirAll(filepath.Dir(f.path(id, "")), 0o700); err != nil {
		return "", fsErr("create directory", err)
	}
	m := &meta{Size: size, Created: f.now().UnixMilli(), TokenHash: hex.EncodeToString(tokenHash[:])}
	if err := f.writeMeta(id, m); err != nil {
		return "", err
	}
	p, err := os.OpenFile(f.path(id, extPart), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fsErr("create upload", err)
	}
	err = p.Close()
	if err == nil {
		err = f.touch(id, extPart)
	}
	if err == nil {
		err = syncDir(filepath.Dir(f.path(id, "")))
	}
	if err != nil {
		os.Remove(f.path(id, extPart))
		os.Remove(f.path(id, extMeta))
		return "", fsErr("create upload", err)
	}
	return id, nil
}

// writeMeta replaces id's sidecar atomically and durably.
func (f *FS) writeMeta(id string, m *meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("blob: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path(id, "")), "meta-*"+extTmp)
	if err != nil {
		return fsErr("write metadata", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path(id, extMeta))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fsErr("write metadata", err)
	}
	return nil
}

func (f *FS) readMeta(id string) (*meta, error) {
	b, err := os.ReadFile(f.path(id, extMeta))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fsErr("read metadata", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil || m.Size <= 0 || m.Offset < 0 || m.Offset > m.Size {
		return nil, errors.New("blob: corrupt metadata")
	}
	return &m, nil
}

// touch sets a file's modification time from the clock.
func (f *FS) touch(id, ext string) error {
	t := f.now()
	return os.Chtimes(f.path(id, ext), t, t)
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fsErr("stat", err)
}

// stat is Stat with id's lock held (or not needed).
func (f *FS) stat(id string) (*Info, error) {
	m, err := f.readMeta(id)
	if err != nil {
		return nil, err
	}
	info := &Info{Size: m.Size, Offset: m.Offset, Created: time.UnixMilli(m.Created)}
	if h, err := hex.DecodeString(m.TokenHash); err != nil || len(h) != len(info.TokenHash) {
		return nil, errors.New("blob: corrupt metadata")
	} else {
		copy(info.TokenHash[:], h)
	}
	if ok, err := exists(f.path(id, extBlob)); err != nil {
		return nil, err
	} else if ok {
		info.Finished, info.Offset = true, m.Size
		return info, nil
	}
	if ok, err := exists(f.path(id, extPart)); err != nil {
		return nil, err
	} else if !ok {
		// A sidecar left by a crash in Create or Delete.
		return nil, ErrNotFound
	}
	return info, nil
}

// Stat implements Store.
func (f *FS) Stat(ctx context.Context, id string) (*Info, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	return f.stat(id)
}

// Append implements Store.
func (f *FS) Append(ctx context.Context, id string, offset int64, r io.Reader) (int64, error) {
	if !ValidID(id) {
		return 0, ErrNotFound
	}
	unlock, err := f.locks.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	info, err := f.stat(id)
	if err != nil {
		return 0, err
	}
	cur := info.Offset
	if offset != cur {
		return cur, ErrOffsetMismatch
	}
	if info.Finished {
		if more, err := nonEmpty(r); err != nil {
			return cur, err
		} else if more {
			return cur, ErrTooLarge
		}
		return cur, nil
	}

	p, err := os.OpenFile(f.path(id, extPart), os.O_WRONLY, 0)
	if err != nil {
		return cur, fsErr("open upload", err)
	}
	defer p.Close()
	n, err := writeAt(p, r, offset, info.Size-offset)
	if err != nil {
		return cur, err
	}
	if more, err := nonEmpty(r); err != nil {
		return cur, err
	} else if more {
		return cur, ErrTooLarge
	}
	if n == 0 {
		return cur, nil
	}
	next := offset + n
	if next == info.Size {
		// Drop anything an earlier crash may have left past the size.
		if err := p.Truncate(info.Size); err != nil {
			return cur, fsErr("truncate upload", err)
		}
	}
	if err := p.Sync(); err != nil {
		return cur, fsErr("sync upload", err)
	}
	if err := p.Close(); err != nil {
		return cur, fsErr("close upload", err)
	}
	if err := f.touch(id, extPart); err != nil {
		return cur, fsErr("touch upload", err)
	}
	if next == info.Size {
		if err := os.Rename(f.path(id, extPart), f.path(id, extBlob)); err != nil {
			return cur, fsErr("finish upload", err)
		}
		if err := syncDir(filepath.Dir(f.path(id, ""))); err != nil {
			return cur, fsErr("finish upload", err)
		}
		return next, nil
	}
	m := &meta{Size: info.Size, Created: info.Created.UnixMilli(), TokenHash: hex.EncodeToString(info.TokenHash[:]), Offset: next}
	if err := f.writeMeta(id, m); err != nil {
		return cur, err
	}
	return next, nil
}

// writeAt copies at most limit bytes from r into w at offset, and returns
// how many. A read error is returned wrapped.
func writeAt(w io.WriterAt, r io.Reader, offset, limit int64) (int64, error) {
	buf := make([]byte, min(copyBuffer, max(limit, 1)))
	var n int64
	for n < limit {
		k, rerr := r.Read(buf[:min(int64(len(buf)), limit-n)])
		if k > 0 {
			if _, err := w.WriteAt(buf[:k], offset+n); err != nil {
				return n, fsErr("write upload", err)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, fmt.Errorf("blob: reading chunk: %w", rerr)
		}
	}
	return n, nil
}

// nonEmpty reports whether r has another byte.
func nonEmpty(r io.Reader) (bool, error) {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("blob: reading chunk: %w", err)
		}
	}
}

// Open implements Store.
func (f *FS) Open(ctx context.Context, id string) (Reader, int64, error) {
	if !ValidID(id) {
		return nil, 0, ErrNotFound
	}
	b, err := os.Open(f.path(id, extBlob))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fsErr("open blob", err)
	}
	fi, err := b.Stat()
	if err != nil {
		b.Close()
		return nil, 0, fsErr("open blob", err)
	}
	return b, fi.Size(), nil
}

// Delete implements Store.
func (f *FS) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	unlock, err := f.locks.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	return f.remove(id)
}

// remove deletes id's files, data first, with its lock held.
func (f *FS) remove(id string) error {
	found := false
	for _, ext := range []string{extBlob, extPart, extMeta} {
		err := os.Remove(f.path(id, ext))
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, fs.ErrNotExist):
			return fsErr("delete", err)
		}
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

// Expire implements Store. It reads every shard directory; files it does
// not recognise are left alone.
func (f *FS) Expire(ctx context.Context, finishedBefore, idleBefore time.Time) (blobs, partials int, err error) {
	shards, err := os.ReadDir(f.dir)
	if err != nil {
		return 0, 0, fsErr("list", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return blobs, partials, err
		}
		b, p, err := f.expireShard(filepath.Join(f.dir, sh.Name()), finishedBefore, idleBefore)
		blobs += b
		partials += p
		if err != nil {
			return blobs, partials, err
		}
	}
	return blobs, partials, nil
}

func (f *FS) expireShard(dir string, finishedBefore, idleBefore time.Time) (blobs, partials int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fsErr("list", err)
	}
	type files struct{ meta, part, blob bool }
	ids := make(map[string]*files)
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, extTmp) {
			// A sidecar a crash left half written.
			if fi, err := e.Info(); err == nil && fi.ModTime().Before(idleBefore) {
				os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		ext := filepath.Ext(name)
		id := strings.TrimSuffix(name, ext)
		if !ValidID(id) {
			continue
		}
		fl := ids[id]
		if fl == nil {
			fl = &files{}
			ids[id] = fl
		}
		switch ext {
		case extMeta:
			fl.meta = true
		case extPart:
			fl.part = true
		case extBlob:
			fl.blob = true
		}
	}
	older := func(path string, cutoff time.Time) bool {
		fi, err := os.Stat(path)
		return err == nil && fi.ModTime().Before(cutoff)
	}
	for id, fl := range ids {
		var expired *int
		var ext string
		var cutoff time.Time
		switch {
		case fl.blob:
			expired, ext, cutoff = &blobs, extBlob, finishedBefore
		case fl.part:
			expired, ext, cutoff = &partials, extPart, idleBefore
		case fl.meta:
			// Left by a crash in Create or Delete: not an upload.
			expired, ext, cutoff = new(int), extMeta, idleBefore
		default:
			continue
		}
		if !older(filepath.Join(dir, id+ext), cutoff) {
			continue
		}
		unlock, ok := f.locks.tryLock(id)
		if !ok {
			continue // an Append is under way: not idle
		}
		// Look again under the lock: an Append may have finished since.
		if !older(filepath.Join(dir, id+ext), cutoff) {
			unlock()
			continue
		}
		err := f.remove(id)
		unlock()
		if err != nil && !errors.Is(err, ErrNotFound) {
			return blobs, partials, err
		}
		if err == nil {
			*expired++
		}
	}
	return blobs, partials, nil
}

// syncDir makes a rename or creation in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fsErr describes a filesystem error without its path: the path holds the
// id, which is a download capability and must not reach a log.
func fsErr(op string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	return fmt.Errorf("blob: %s: %v", op, err)
}

// locks holds one lock per id in use; an entry lives while someone holds or
// waits for it.
type locks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	ch   chan struct{} // holds a token while locked
	refs int
}

func (l *locks) ref(id string) *idLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[id]
	if e == nil {
		e = &idLock{ch: make(chan struct{}, 1)}
		l.m[id] = e
	}
	e.refs++
	return e
}

func (l *locks) unref(id string, e *idLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, id)
	}
}

// lock takes id's lock, or gives up when ctx ends.
func (l *locks) lock(ctx context.Context, id string) (func(), error) {
	e := l.ref(id)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.unref(id, e) }, nil
	case <-ctx.Done():
		l.unref(id, e)
		return nil, ctx.Err()
	}
}

// tryLock takes id's lock if it is free.
func (l *locks) tryLock(id string) (func(), bool) {
	e := l.ref(id)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.unref(id, e) }, true
	default:
		l.unref(id, e)
		return nil, false
	}
}
