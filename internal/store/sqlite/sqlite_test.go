package sqlite

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/storetest"
)

var _ storetest.DeviceAdder = (*Store)(nil)

// openTemp opens a store in a fresh database file, closed at the end of t.
func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doorless.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		return s
	})
}
