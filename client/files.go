package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/doorless/doorless/client/internal/attachment"
	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/content"
)

// Errors about attachments a caller branches on.
var (
	// ErrNotViewOnce: OpenViewOnce was given a message without a view-once
	// attachment.
	ErrNotViewOnce = errors.New("client: the message has no view-once attachment")
	// ErrAlreadyOpened: the view-once attachment was opened before; it is
	// gone.
	ErrAlreadyOpened = errors.New("client: the view-once attachment was opened already")
)

// attach encrypts and uploads a file, and returns what the message carries.
func (c *Client) attach(ctx context.Context, path string, progress func(done, total int64)) (*content.Attachment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client: attachment: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("client: attachment: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("client: attachment: not a regular file")
	}
	var head [512]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("client: attachment: %v", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("client: attachment: %v", err)
	}
	p, err := c.uploadAttachment(ctx, f, fi.Size(), progress)
	if err != nil {
		return nil, err
	}
	return &content.Attachment{
		ID:          p.ID,
		Key:         bytes.Clone(p.Key[:]),
		Digest:      bytes.Clone(p.Digest[:]),
		Size:        p.Size,
		BlobSize:    p.BlobSize,
		ContentType: http.DetectContentType(head[:n]),
		FileName:    sanitizeFileName(filepath.Base(path)),
	}, nil
}

func (a *storedAttachment) pointer() *attachment.Pointer {
	p := &attachment.Pointer{ID: a.BlobID, Size: a.Size, BlobSize: a.BlobSize}
	copy(p.Key[:], a.Key)
	copy(p.Digest[:], a.Digest)
	return p
}

// Progress, when set, is called as attachments download in Receive.
func (c *Client) SetDownloadProgress(fn func(name string, done, total int64)) {
	c.progressMu.Lock()
	c.downloadProgress = fn
	c.progressMu.Unlock()
}

// prepareEvent fetches the attachment of a message before it is handed over:
// downloaded, verified and decrypted into the downloads directory (under a
// name of its own), or for a view-once attachment downloaded and verified but
// kept encrypted in the profile. A failure is recorded in the message
// (Attachment.Err) rather than holding up the messages after it, except a
// failure of this device's own store.
func (c *Client) prepareEvent(ctx context.Context, it *profile.InboxItem, ev any) (any, error) {
	m, ok := ev.(*storedMessage)
	if !ok || m.Attachment == nil || m.Attachment.Fetched || m.Attachment.Err != "" {
		return ev, nil
	}
	a := m.Attachment
	c.progressMu.Lock()
	report := c.downloadProgress
	c.progressMu.Unlock()
	var progress func(done, total int64)
	if report != nil {
		progress = func(done, total int64) { report(a.FileName, done, total) }
	}
	if err := c.fetchAttachment(ctx, m.ID, a, progress); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, err // this device's disk
		}
		a.Err = err.Error()
	}
	// Record the outcome in the inbox and the history at once.
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("client: encoding a message: %v", err)
	}
	err = c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
		if err := tx.UpdateInbox(it.Seq, b); err != nil {
			return err
		}
		h, err := tx.History(m.ID)
		if err != nil || h == nil {
			return err // gone already: it expired
		}
		return putHistory(tx, m)
	})
	clear(b)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// fetchAttachment downloads one attachment and records where it went.
func (c *Client) fetchAttachment(ctx context.Context, id string, a *storedAttachment, progress func(done, total int64)) error {
	if a.ViewOnce {
		dst := c.viewOncePath(id)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		// Verified now, decrypted only when opened: the blob is stored as
		// it came, its key in the (sealed) history.
		if err := c.downloadBlob(ctx, a.pointer(), dst, progress); err != nil {
			return err
		}
		a.Fetched = true
		return nil
	}
	dir := filepath.Join(c.dir, DownloadsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dst, err := freeName(dir, a.FileName)
	if err != nil {
		return err
	}
	if err := c.downloadAttachment(ctx, a.pointer(), dst, progress); err != nil {
		os.Remove(dst) // the placeholder freeName made
		return err
	}
	a.ContentType = detectFile(dst)
	a.Path, a.Fetched = dst, true
	a.BlobID, a.Key, a.Digest = "", nil, nil
	return nil
}

// freeName reserves a name in dir for a file: name, or "name (2)", ...,
// created empty with mode 0600 so that no other download takes it.
func freeName(dir, name string) (string, error) {
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 1; i < 10000; i++ {
		n := name
		if i > 1 {
			n = base + " (" + strconv.Itoa(i) + ")" + ext
		}
		p := filepath.Join(dir, n)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		f.Close()
		return p, nil
	}
	return "", errors.New("client: no free name for a download")
}

// detectFile returns the type of a file from its first bytes, as the
// receiver sees it: the sender's claim is not used.
func detectFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "application/octet-stream"
	}
	defer f.Close()
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	return http.DetectContentType(head[:n])
}

// OpenViewOnce writes a view-once attachment of a message received to w,
// once: the encrypted copy and its key are deleted as soon as it has been
// decrypted, and the message marked opened. ErrAlreadyOpened the second
// time.
func (c *Client) OpenViewOnce(ctx context.Context, messageID string, w io.Writer) error {
	var m storedMessage
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		h, err := tx.History(messageID)
		if err != nil {
			return err
		}
		if h == nil {
			return fmt.Errorf("client: no message %q", messageID)
		}
		defer clear(h.Data)
		return json.Unmarshal(h.Data, &m)
	})
	if err != nil {
		return err
	}
	a := m.Attachment
	switch {
	case a == nil || !a.ViewOnce || m.Outgoing:
		return ErrNotViewOnce
	case a.Opened:
		return ErrAlreadyOpened
	case !a.Fetched:
		return fmt.Errorf("client: the attachment was not fetched: %s", a.Err)
	}
	path := c.viewOncePath(m.ID)
	// Mark it opened first: a crash after this loses the file, which is
	// what view-once promises, never shows it twice.
	a.Opened = true
	p := a.pointer()
	a.BlobID, a.Key, a.Digest = "", nil, nil
	err = c.st.Update(ctx, func(tx *profile.Tx) error { return putHistory(tx, &m) })
	if err != nil {
		return err
	}
	defer c.st.Checkpoint()
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("client: view-once attachment: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("client: view-once attachment: %v", err)
	}
	return attachment.Decrypt(w, f, fi.Size(), p)
}
