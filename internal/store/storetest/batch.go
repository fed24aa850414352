package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/doorless/doorless/internal/store"
)

// testLookupMany checks AccountsByID and DevicesOf against the one-at-a-time
// lookups they stand for: same values, in the order asked, with gaps and
// repeats where the ids ask for them.
func testLookupMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	b, _ := register(t, s, "bob", keys(1, 1))
	link(t, s, b.ID)
	link(t, s, b.ID)
	c, _ := register(t, s, "carol", keys(1, 1))
	unknown := newUUID()

	ids := []string{c.ID, unknown, a.ID, b.ID, a.ID}
	accts, err := s.AccountsByID(ctx, ids)
	must(t, "AccountsByID", err)
	if len(accts) != len(ids) {
		t.Fatalf("AccountsByID returned %d accounts for %d ids", len(accts), len(ids))
	}
	for i, id := range ids {
		one, err := s.AccountByID(ctx, id)
		if id == unknown {
			if accts[i] != nil {
				t.Errorf("AccountsByID[%d] (unknown id) = %+v, want nil", i, accts[i])
			}
			continue
		}
		must(t, "AccountByID", err)
		if accts[i] == nil || fmt.Sprint(*accts[i]) != fmt.Sprint(*one) {
			t.Errorf("AccountsByID[%d] = %+v, want %+v", i, accts[i], one)
		}
	}

	devs, err := s.DevicesOf(ctx, ids)
	must(t, "DevicesOf", err)
	if len(devs) != len(ids) {
		t.Fatalf("DevicesOf returned %d lists for %d ids", len(devs), len(ids))
	}
	for i, id := range ids {
		one, err := s.Devices(ctx, id)
		must(t, "Devices", err)
		if fmt.Sprint(devs[i]) != fmt.Sprint(one) {
			t.Errorf("DevicesOf[%d] = %+v, want %+v", i, devs[i], one)
		}
	}
	if n := len(devs[3]); n != 3 {
		t.Errorf("DevicesOf(bob) has %d devices, want 3", n)
	}
	if len(devs[1]) != 0 {
		t.Errorf("DevicesOf(unknown) = %+v, want none", devs[1])
	}

	for _, empty := range [][]string{nil, {}} {
		if accts, err := s.AccountsByID(ctx, empty); err != nil || len(accts) != 0 {
			t.Errorf("AccountsByID(%#v) = %v, %v; want none, nil", empty, accts, err)
		}
		if devs, err := s.DevicesOf(ctx, empty); err != nil || len(devs) != 0 {
			t.Errorf("DevicesOf(%#v) = %v, %v; want none, nil", empty, devs, err)
		}
	}
}

// testAckMany checks that AckMany deletes exactly the device's envelopes it
// names, skips ids that are not the device's, and keeps the queue count.
func testAckMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)
	for i := range 5 {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint("b", i), t0, bob), 100))
	}
	must(t, "Enqueue", s.Enqueue(ctx, send(bob, "a", t0, alice), 100))
	bobs, alices := queue(t, s, bob), queue(t, s, alice)

	ids := []string{bobs[0].ID, bobs[3].ID, alices[0].ID, newUUID(), bobs[0].ID}
	n, err := s.AckMany(ctx, bob.account, bob.device, ids)
	must(t, "AckMany", err)
	if n != 2 {
		t.Errorf("AckMany deleted %d envelopes, want 2 (bob's two; alice's, an unknown id and a repeat skipped)", n)
	}
	if got := contents(queue(t, s, bob)); !slices.Equal(got, []string{"b1", "b2", "b4"}) {
		t.Errorf("bob's queue after AckMany = %q, want [b1 b2 b4]", got)
	}
	if n := queueLen(t, s, bob); n != 3 {
		t.Errorf("QueueLen(bob) = %d, want 3", n)
	}
	if got := contents(queue(t, s, alice)); !slices.Equal(got, []string{"a"}) {
		t.Errorf("alice's queue = %q after bob acknowledged her envelope's id, want [a]", got)
	}
	if n, err := s.AckMany(ctx, bob.account, bob.device, ids); err != nil || n != 0 {
		t.Errorf("AckMany again = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.AckMany(ctx, bob.account, bob.device, nil); err != nil || n != 0 {
		t.Errorf("AckMany(nil) = %d, %v; want 0, nil", n, err)
	}

	// A window's worth at once.
	var rest []string
	for i := range 64 {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint("w", i), t0, bob), 100))
	}
	for _, e := range queue(t, s, bob) {
		rest = append(rest, e.ID)
	}
	if n, err := s.AckMany(ctx, bob.account, bob.device, rest); err != nil || n != 67 {
		t.Errorf("AckMany(all %d) = %d, %v; want 67, nil", len(rest), n, err)
	}
	if n := queueLen(t, s, bob); n != 0 {
		t.Errorf("QueueLen(bob) = %d after acknowledging everything, want 0", n)
	}
}
