package client

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/doorless/doorless/internal/store"
)

// TestDeleteAccount: the account goes from the server (its other device is
// refused, its username is free) and the profile from the disk; the other
// users carry on.
func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, dir := s.register(t, "alice", Options{})
	alice2, dir2 := s.link(t, alice, "alice2")
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})

	// A file received, so that downloads/ exists, and messages both ways.
	file := filepath.Join(t.TempDir(), "photo.txt")
	if err := os.WriteFile(file, []byte("a picture of a cat"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendMessage(ctxT(t), "alice", Outgoing{Text: "look", File: file}); err != nil {
		t.Fatal(err)
	}
	receive(t, alice)
	if _, err := os.Stat(filepath.Join(dir, DownloadsDir)); err != nil {
		t.Fatalf("no downloads directory before the deletion: %v", err)
	}
	mustSend(t, alice, "bob", "hi bob")
	mustSend(t, bob, "alice", "unread by alice")
	accountID := alice.AccountID()

	if err := alice.DeleteAccount(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the profile directory is still there: %v", err)
	}
	if _, err := s.st.AccountByID(context.Background(), accountID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the account is still on the server: %v", err)
	}
	err := alice2.Receive(ctxT(t), ReceiveOptions{UntilEmpty: true}, func(Event) error { return nil })
	if !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("the account's other device receives: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, ProfileFile)); err != nil {
		t.Fatalf("the other device's profile went too: %v", err)
	}
	if _, err := bob.Send(ctxT(t), "alice", "are you there?"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("sending to the deleted account: %v, want ErrUnknownUser", err)
	}
	// Alice's message that bob had not fetched went sealed (bob's file
	// gave her his access key): the server cannot tell it was hers, so it
	// stays and is delivered.
	wantTexts(t, receive(t, bob), "alice", "hi bob")
	mustSend(t, bob, "carol", "still here")
	wantTexts(t, receive(t, carol), "bob", "still here")

	// The username is free.
	again, _ := s.register(t, "alice", Options{})
	if again.AccountID() == accountID {
		t.Fatal("the new alice has the deleted account's id")
	}
}

// TestDeleteAccountKeepsOtherFiles: the profile's own files go; a file the
// user put in the directory stays, and so does the directory.
func TestDeleteAccountKeepsOtherFiles(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, dir := s.register(t, "alice", Options{})
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := alice.DeleteAccount(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "notes.txt" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the directory holds %q, want only notes.txt", names)
	}
}

// TestDeleteAccountServerDown: when the server cannot be reached, nothing
// is deleted anywhere.
func TestDeleteAccountServerDown(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, dir := s.register(t, "alice", Options{})
	alice.serverURL = "http://127.0.0.1:1" // nothing listens there
	if err := alice.DeleteAccount(ctxT(t)); err == nil {
		t.Fatal("DeleteAccount without a server succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, ProfileFile)); err != nil {
		t.Fatalf("the profile went: %v", err)
	}
	if _, err := s.st.AccountByID(context.Background(), alice.AccountID()); err != nil {
		t.Fatalf("the account went: %v", err)
	}
	alice.serverURL = s.url
	if _, err := alice.Devices(ctxT(t)); err != nil {
		t.Fatalf("the client no longer works: %v", err)
	}
}

func TestUnrestrictedAccess(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	for _, on := range []bool{true, false, true} {
		if err := alice.SetUnrestrictedAccess(ctxT(t), on); err != nil {
			t.Fatal(err)
		}
		got, err := alice.UnrestrictedAccess(ctxT(t))
		if err != nil || got != on {
			t.Fatalf("UnrestrictedAccess = %v, %v; want %v", got, err, on)
		}
		a, err := s.st.AccountByID(context.Background(), alice.AccountID())
		if err != nil || a.UnrestrictedUnidentifiedAccess != on {
			t.Fatalf("the server holds %+v, %v; want unrestricted %v", a, err, on)
		}
	}
}
