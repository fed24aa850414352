package broker

import (
	"sync"
	"testing"
)

func recv(t *testing.T, ch <-chan Signal) Signal {
	t.Helper()
	select {
	case s := <-ch:
		return s
	default:
		t.Fatal("no signal")
		return 0
	}
}

func none(t *testing.T, ch <-chan Signal) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected signal %v", s)
	default:
	}
}

func TestMemory(t *testing.T) {
	var m Memory           // the zero value works
	m.Notify("a", 1, Mail) // no subscriber: dropped

	ch, cancel, err := m.Subscribe("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	none(t, ch)
	m.Notify("a", 1, Mail)
	m.Notify("a", 1, Mail)
	m.Notify("a", 1, Keys)
	m.Notify("a", 2, Revoked) // another device
	m.Notify("b", 1, Revoked) // another account
	if s := recv(t, ch); s != Mail|Keys {
		t.Fatalf("merged signals %v, want mail|keys", s)
	}
	none(t, ch)

	// A new subscriber displaces the old one, which hears nothing more.
	ch2, cancel2, _ := m.Subscribe("a", 1)
	m.Notify("a", 1, Mail)
	if s := recv(t, ch); s != Displaced {
		t.Fatalf("old subscriber got %v, want displaced", s)
	}
	none(t, ch)
	if s := recv(t, ch2); s != Mail {
		t.Fatalf("new subscriber got %v", s)
	}
	cancel() // after displacement: does not remove the new one
	m.Notify("a", 1, Revoked)
	if s := recv(t, ch2); s != Revoked {
		t.Fatalf("got %v", s)
	}
	cancel2()
	cancel2()
	m.Notify("a", 1, Mail)
	none(t, ch2)
}

// TestMemoryConcurrent: notifiers never block on a slow receiver, and the
// last signal is never lost in a merge.
func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory()
	ch, cancel, _ := m.Subscribe("a", 1)
	defer cancel()
	done := make(chan Signal)
	go func() {
		var all Signal
		for all&Keys == 0 {
			all |= <-ch
		}
		done <- all
	}()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				m.Notify("a", 1, Mail)
			}
		})
	}
	wg.Wait()
	m.Notify("a", 1, Keys)
	if all := <-done; all != Mail|Keys {
		t.Fatalf("received %v", all)
	}
}

func TestSignalString(t *testing.T) {
	for s, want := range map[Signal]string{0: "none", Mail: "mail", Mail | Displaced: "mail|displaced", 1 << 7: "unknown"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
}
