package franking

import (
	"bytes"
	"errors"
	"testing"

	"github.com/doorless/doorless/internal/content"
)

const (
	alice   = "0f6a4c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b"
	bob     = "1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d"
	mallory = "2b3c4d5e-6f7a-4b2c-8d3e-4f5a6b7c8d9e"
)

func testServer(t *testing.T) *Server {
	t.Helper()
	s, err := NewServer(bytes.Repeat([]byte{0x42}, SecretSize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// report franks a message from sender to bob (sealed when source is
// empty), delivers it as the server would, and returns bob's report.
func report(t *testing.T, s *Server, c *content.Content, sender, source string) *Report {
	t.Helper()
	commitment := Frank(c, s.AccountKey(sender), ContextFor(c, bob))
	padded, err := content.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := content.Parse(padded)
	if err != nil {
		t.Fatal(err)
	}
	if !Opens(parsed, commitment[:]) {
		t.Fatal("the recipient cannot open a commitment the sender made")
	}
	d := Delivery{
		Commitment: commitment[:], Recipient: bob, RecipientDevice: 2,
		Source: source, EnvelopeType: 6, ServerTimestamp: 1700000000000,
	}
	if source != "" {
		d.SourceDevice, d.EnvelopeType = 1, 2
	}
	tag := s.Tag(&d)
	return &Report{Content: padded, Delivery: d, DeliveryTag: tag[:], Sender: sender}
}

func TestReportVerifies(t *testing.T) {
	s := testServer(t)
	for _, tc := range []struct {
		name   string
		c      *content.Content
		source string
	}{
		{"sealed direct", &content.Content{Timestamp: 1, Body: "you will regret this"}, ""},
		{"named direct", &content.Content{Timestamp: 2, Body: "named"}, alice},
		{"sealed group", &content.Content{Timestamp: 3, Body: "to all", GroupID: bytes.Repeat([]byte{5}, content.GroupIDSize)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.VerifyReport(report(t, s, tc.c, alice, tc.source))
			if err != nil {
				t.Fatal(err)
			}
			if v.Sender != alice || v.Sealed != (tc.source == "") || v.Content.Body != tc.c.Body {
				t.Fatalf("verified %+v", v)
			}
		})
	}
}

func TestReportRefused(t *testing.T) {
	s := testServer(t)
	for _, tc := range []struct {
		name   string
		source string
		change func(r *Report)
		want   error
	}{
		{"altered text", "", func(r *Report) {
			c, _ := content.Parse(r.Content)
			c.Body = "something else"
			r.Content, _ = content.Encode(c)
		}, ErrAltered},
		{"altered commitment", "", func(r *Report) { r.Delivery.Commitment[0] ^= 1 }, ErrAltered},
		{"other franking key", "", func(r *Report) {
			c, _ := content.Parse(r.Content)
			c.Franking.Key[0] ^= 1
			r.Content, _ = content.Encode(c)
		}, ErrAltered},
		{"unfranked", "", func(r *Report) {
			r.Content, _ = content.Encode(&content.Content{Timestamp: 1, Body: "x"})
		}, ErrUnfranked},
		{"not content", "", func(r *Report) { r.Content = []byte("junk") }, ErrUnfranked},
		{"forged tag", "", func(r *Report) { r.DeliveryTag[5] ^= 1 }, ErrForgedDelivery},
		{"other reporter", "", func(r *Report) { r.Delivery.Recipient = mallory }, ErrForgedDelivery},
		{"other device", "", func(r *Report) { r.Delivery.RecipientDevice = 3 }, ErrForgedDelivery},
		{"other time", "", func(r *Report) { r.Delivery.ServerTimestamp++ }, ErrForgedDelivery},
		{"sealed made named", "", func(r *Report) { r.Delivery.Source = alice }, ErrForgedDelivery},
		{"named made sealed", alice, func(r *Report) { r.Delivery.Source, r.Delivery.SourceDevice = "", 0 }, ErrForgedDelivery},
		{"other type", "", func(r *Report) { r.Delivery.EnvelopeType = 7 }, ErrForgedDelivery},
		{"sealed, framed sender", "", func(r *Report) { r.Sender = mallory }, ErrSenderUnproven},
		{"sealed, no sender", "", func(r *Report) { r.Sender = "" }, ErrSenderUnproven},
		{"named, other sender", alice, func(r *Report) { r.Sender = mallory }, ErrSenderUnproven},
		{"sender tag altered", "", func(r *Report) {
			c, _ := content.Parse(r.Content)
			c.Franking.SenderTag[0] ^= 1
			r.Content, _ = content.Encode(c)
		}, ErrSenderUnproven},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := report(t, s, &content.Content{Timestamp: 9, Body: "abuse"}, alice, tc.source)
			tc.change(r)
			if _, err := s.VerifyReport(r); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyReport = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSealedMessageMovedToAnotherConversation: a sender tag made for one
// conversation does not prove the same commitment in another. Mallory
// holds a sealed message alice sent bob (bob gave it to her) and delivers
// its commitment to herself: the server's tag for that delivery is genuine,
// but alice never bound the commitment to mallory.
func TestSealedMessageMovedToAnotherConversation(t *testing.T) {
	s := testServer(t)
	r := report(t, s, &content.Content{Timestamp: 1, Body: "for bob only"}, alice, "")
	r.Delivery.Recipient = mallory
	tag := s.Tag(&r.Delivery)
	r.DeliveryTag = tag[:]
	if _, err := s.VerifyReport(r); !errors.Is(err, ErrSenderUnproven) {
		t.Fatalf("VerifyReport = %v, want ErrSenderUnproven", err)
	}
}

// TestSealedGroupMessageMoves documents the known limit of sealed group
// messages (package doc): the sender tag binds the group, not the
// recipient, so a group message whose commitment mallory had the server
// deliver to her (in an envelope of her own making) verifies as delivered
// to her. The server marks such reports; this test keeps the package doc
// true, and fails once a binding to the recipient is added.
func TestSealedGroupMessageMoves(t *testing.T) {
	s := testServer(t)
	group := bytes.Repeat([]byte{5}, content.GroupIDSize)
	r := report(t, s, &content.Content{Timestamp: 1, Body: "to the group", GroupID: group}, alice, "")
	r.Delivery.Recipient = mallory
	tag := s.Tag(&r.Delivery)
	r.DeliveryTag = tag[:]
	v, err := s.VerifyReport(r)
	if err != nil || v.Sender != alice || !v.Sealed || v.Content.GroupID == nil {
		t.Fatalf("VerifyReport = %+v, %v; want the documented limit: verified from alice", v, err)
	}
}

func TestContextFor(t *testing.T) {
	group := bytes.Repeat([]byte{5}, content.GroupIDSize)
	if got := ContextFor(&content.Content{Body: "x"}, bob); !bytes.Equal(got, DirectContext(bob)) {
		t.Errorf("direct: %q", got)
	}
	if got := ContextFor(&content.Content{Body: "x", GroupID: group}, bob); !bytes.Equal(got, GroupContext(group)) {
		t.Errorf("group: %q", got)
	}
	if bytes.Equal(DirectContext(string(group)), GroupContext(group)) {
		t.Error("a direct and a group context coincide")
	}
}

func TestKeysAreSeparate(t *testing.T) {
	s := testServer(t)
	other, err := NewServer(bytes.Repeat([]byte{0x43}, SecretSize))
	if err != nil {
		t.Fatal(err)
	}
	if s.AccountKey(alice) == s.AccountKey(bob) || s.AccountKey(alice) == other.AccountKey(alice) {
		t.Fatal("account keys collide")
	}
	if again := s.AccountKey(alice); again != s.AccountKey(alice) {
		t.Fatal("account keys are not deterministic")
	}
	r := report(t, s, &content.Content{Timestamp: 1, Body: "x"}, alice, "")
	if _, err := other.VerifyReport(r); !errors.Is(err, ErrForgedDelivery) {
		t.Fatalf("another server's VerifyReport = %v", err)
	}
	if _, err := NewServer(make([]byte, SecretSize-1)); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("short secret: %v", err)
	}
}

func TestFrankDrawsFreshKeys(t *testing.T) {
	var ak [KeySize]byte
	c1 := &content.Content{Timestamp: 1, Body: "same"}
	c2 := &content.Content{Timestamp: 1, Body: "same"}
	if Frank(c1, ak, DirectContext(bob)) == Frank(c2, ak, DirectContext(bob)) {
		t.Fatal("two messages with the same text share a commitment")
	}
	if Opens(&content.Content{Timestamp: 1, Body: "same"}, make([]byte, CommitmentSize)) {
		t.Fatal("unfranked content opens a commitment")
	}
}

// FuzzVerifyReport: whatever a reporter sends, VerifyReport answers with a
// sentinel and never panics; a report it accepts opens its commitment.
func FuzzVerifyReport(f *testing.F) {
	s, _ := NewServer(bytes.Repeat([]byte{0x42}, SecretSize))
	c := &content.Content{Timestamp: 1, Body: "seed"}
	commitment := Frank(c, s.AccountKey(alice), DirectContext(bob))
	padded, _ := content.Encode(c)
	f.Add(padded, commitment[:], []byte{}, alice)
	f.Add([]byte("junk"), []byte{}, []byte{}, "")
	f.Fuzz(func(t *testing.T, padded, commitment, tag []byte, sender string) {
		r := &Report{Content: padded, Delivery: Delivery{Commitment: commitment, Recipient: bob}, DeliveryTag: tag, Sender: sender}
		v, err := s.VerifyReport(r)
		if err == nil && !Opens(v.Content, commitment) {
			t.Fatal("accepted a report that does not open its commitment")
		}
		if err != nil && !errors.Is(err, ErrUnfranked) && !errors.Is(err, ErrAltered) &&
			!errors.Is(err, ErrForgedDelivery) && !errors.Is(err, ErrSenderUnproven) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
