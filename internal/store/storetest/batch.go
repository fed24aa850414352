package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

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

// testAckMany checks that AckMany deletes exactly the envelopes it names
// from the queues of the devices that name them, skips acks of envelopes
// a device does not have, and keeps the queue counts.
func testAckMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	alice, bob, carol := addrOf(da), addrOf(db), addrOf(dc)
	for i := range 5 {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint("b", i), t0, bob), 100))
	}
	for i := range 3 {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint("c", i), t0, carol), 100))
	}
	must(t, "Enqueue", s.Enqueue(ctx, send(bob, "a", t0, alice), 100))
	bobs, carols, alices := queue(t, s, bob), queue(t, s, carol), queue(t, s, alice)
	ack := func(by addr, id string) store.AckRef {
		return store.AckRef{AccountID: by.account, DeviceID: by.device, EnvelopeID: id}
	}

	acks := []store.AckRef{
		ack(bob, bobs[0].ID), ack(carol, carols[1].ID), ack(bob, bobs[3].ID),
		ack(bob, alices[0].ID),              // alice's envelope, acked by bob: skipped
		ack(carol, bobs[1].ID),              // bob's, acked by carol: skipped
		ack(bob, newUUID()),                 // unknown: skipped
		ack(bob, bobs[0].ID),                // a repeat: skipped
		ack(addr{newUUID(), 1}, bobs[2].ID), // an unknown device: skipped
	}
	n, err := s.AckMany(ctx, acks)
	must(t, "AckMany", err)
	if n != 3 {
		t.Errorf("AckMany deleted %d envelopes, want 3 (bob's two and carol's one)", n)
	}
	for _, q := range []struct {
		who  addr
		want []string
	}{{bob, []string{"b1", "b2", "b4"}}, {carol, []string{"c0", "c2"}}, {alice, []string{"a"}}} {
		if got := contents(queue(t, s, q.who)); !slices.Equal(got, q.want) {
			t.Errorf("queue after AckMany = %q, want %q", got, q.want)
		}
		if n := queueLen(t, s, q.who); n != len(q.want) {
			t.Errorf("QueueLen = %d after AckMany, want %d", n, len(q.want))
		}
	}
	if n, err := s.AckMany(ctx, acks); err != nil || n != 0 {
		t.Errorf("AckMany again = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.AckMany(ctx, nil); err != nil || n != 0 {
		t.Errorf("AckMany(nil) = %d, %v; want 0, nil", n, err)
	}

	// Many at once, from two devices.
	for i := range 64 {
		must(t, "Enqueue", s.Enqueue(ctx, send(alice, fmt.Sprint("w", i), t0, bob, carol), 100))
	}
	var all []store.AckRef
	for _, who := range []addr{bob, carol} {
		for _, e := range queue(t, s, who) {
			all = append(all, ack(who, e.ID))
		}
	}
	if n, err := s.AckMany(ctx, all); err != nil || n != 3+2+128 {
		t.Errorf("AckMany(all %d) = %d, %v; want %d, nil", len(all), n, err, 3+2+128)
	}
	for _, who := range []addr{bob, carol} {
		if n := queueLen(t, s, who); n != 0 {
			t.Errorf("QueueLen = %d after acknowledging everything, want 0", n)
		}
	}
}

// testEnqueueMany checks a send of many envelopes (as a group send makes):
// each gets its own Seq, increasing in the send's order, and is queued with
// its own fields.
func testEnqueueMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	_, dc := register(t, s, "carol", keys(1, 1))
	alice, bob, carol := addrOf(da), addrOf(db), addrOf(dc)
	const n = 64 + 2*8 + 3 // every statement size the stores may use, and more
	sn := send(alice, "", t0, bob)
	sn.Envelopes = sn.Envelopes[:0]
	for i := range n {
		to := bob
		if i%3 == 0 {
			to = carol
		}
		e := send(alice, fmt.Sprint("m", i), t0, to).Envelopes[0]
		e.ClientTimestamp = t0.Add(time.Duration(i) * time.Millisecond)
		sn.Envelopes = append(sn.Envelopes, e)
	}
	must(t, "Enqueue", s.Enqueue(ctx, sn, 1000))
	byID := make(map[string]store.Envelope, n)
	for i, e := range sn.Envelopes {
		if i > 0 && e.Seq <= sn.Envelopes[i-1].Seq {
			t.Fatalf("envelope %d has Seq %d after %d: not increasing in the send's order", i, e.Seq, sn.Envelopes[i-1].Seq)
		}
		byID[e.ID] = e
	}
	got := 0
	for _, who := range []addr{bob, carol} {
		for _, q := range queue(t, s, who) {
			want, ok := byID[q.ID]
			if !ok {
				t.Fatalf("queued envelope %s is not the send's", q.ID)
			}
			if q.Seq != want.Seq || string(q.Content) != string(want.Content) || q.AccountID != want.AccountID ||
				q.DeviceID != want.DeviceID || !q.ClientTimestamp.Equal(want.ClientTimestamp) {
				t.Fatalf("queued %+v, sent %+v", q, want)
			}
			got++
		}
	}
	if got != n {
		t.Fatalf("%d envelopes queued, want %d", got, n)
	}
}

// testEnqueueDuplicateFirst: a send whose id was used is a duplicate even
// when another refusal would also apply (a queue now full, a device gone):
// a retry of a send that landed must learn that it did.
func testEnqueueDuplicateFirst(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, da := register(t, s, "alice", keys(1, 1))
	_, db := register(t, s, "bob", keys(1, 1))
	alice, bob := addrOf(da), addrOf(db)
	first := send(alice, "first", t0, bob)
	must(t, "Enqueue", s.Enqueue(ctx, first, 2))
	must(t, "Enqueue", s.Enqueue(ctx, send(alice, "fills", t0, bob), 2))
	retry := send(alice, "first", t0, bob)
	retry.SendID = first.SendID
	wantErr(t, "Enqueue of a used id to a full queue", s.Enqueue(ctx, retry, 2), store.ErrDuplicate)
	retry.Envelopes[0].DeviceID = 9 // no such device
	wantErr(t, "Enqueue of a used id to a missing device", s.Enqueue(ctx, retry, 100), store.ErrDuplicate)
}
