package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
)

// DeleteAccount deletes this device's account on the server, then this
// device's profile, and closes the Client.
//
// The server erases everything it holds for the account at once, for every
// device of it: the account, its devices and their keys, the messages
// queued for it and those it sent that are still undelivered (but sealed
// ones). The username is free afterwards. The account's other devices find
// their credentials refused (ErrDeviceRevoked) and keep their local
// profiles until they are deleted there.
//
// Then the profile goes: its database, the files received (downloads/) and
// view-once files, and temporary attachment files; the directory itself
// is removed when nothing else is left in it. If the server refuses or
// cannot be reached, nothing local is touched; if the account is deleted
// but removing the profile fails, the error says so, and removing the
// directory by hand finishes the job.
func (c *Client) DeleteAccount(ctx context.Context) error {
	if err := c.do(ctx, http.MethodDelete, api.PathAccountMe, nil, nil); err != nil {
		return fmt.Errorf("client: deleting the account: %w", err)
	}
	c.Close() // the profile goes whatever closing it said
	if err := removeProfile(c.dir); err != nil {
		return fmt.Errorf("client: the account is deleted, but removing the profile in %s failed: %v", c.dir, err)
	}
	return nil
}

// removeProfile removes what a profile directory holds (see DeleteAccount)
// and then the directory, when it is empty.
func removeProfile(dir string) error {
	var errs []error
	if err := profile.Remove(filepath.Join(dir, profile.FileName)); err != nil {
		errs = append(errs, err)
	}
	for _, sub := range []string{DownloadsDir, viewOnceDir} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			errs = append(errs, err)
		}
	}
	// Temporary files of attachments being sent or fetched (attachment.go).
	for _, pattern := range []string{"attachment-*.tmp", ".doorless-attachment-*"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern)) // the patterns are well formed
		for _, m := range matches {
			if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Only an empty directory: anything else in it is not the profile's.
	os.Remove(dir)
	return nil
}

// SetUnrestrictedAccess sets whether the account accepts sealed-sender
// messages from anyone, not only from senders who hold its unidentified
// access key (its contacts). The account's key is kept.
func (c *Client) SetUnrestrictedAccess(ctx context.Context, on bool) error {
	err := c.do(ctx, http.MethodPut, api.PathAttributes, &api.AccountAttributes{UnrestrictedUnidentifiedAccess: on}, nil)
	if err != nil {
		return fmt.Errorf("client: setting unrestricted access: %w", err)
	}
	// Kept with the account's profile key, so that setting a new key
	// (ownProfileKey) does not turn it off.
	return c.st.Update(ctx, func(tx *profile.Tx) error { return keepUnrestricted(tx, c.accountID, on, time.Now()) })
}

// UnrestrictedAccess reports whether the account accepts sealed-sender
// messages from anyone, as the server tells senders.
func (c *Client) UnrestrictedAccess(ctx context.Context) (bool, error) {
	var a api.Account
	if err := c.do(ctx, http.MethodGet, pathFor(api.PathAccount, "{username}", c.username), nil, &a); err != nil {
		return false, fmt.Errorf("client: looking up the account: %w", err)
	}
	if a.ID != c.accountID {
		return false, errors.New("client: the server answered for another account")
	}
	return a.UnrestrictedUnidentifiedAccess, nil
}
