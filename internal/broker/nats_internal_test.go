package broker

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func FuzzDecodeSignal(f *testing.F) {
	tok := [tokenSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	f.Add(encodeSignal(Mail, nil))
	f.Add(encodeSignal(Mail|Keys|Revoked|Provisioned, nil))
	f.Add(encodeSignal(Displaced, &tok))
	f.Add(encodeSignal(Displaced|Mail, &tok))
	f.Add([]byte{})
	f.Add([]byte{0xff})
	f.Add(append([]byte{byte(Mail)}, tok[:]...)) // a token without Displaced
	f.Add(append(encodeSignal(Displaced, &tok), 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, token, err := decodeSignal(b)
		if err != nil {
			if !errors.Is(err, errBadPayload) || s != 0 || token != nil {
				t.Fatalf("failure returned %v %v %v", s, token, err)
			}
			return
		}
		if s&^(Mail|Keys|Revoked|Displaced|Provisioned) != 0 {
			t.Fatalf("unknown bits kept: %v", s)
		}
		if token != nil && s&Displaced == 0 {
			t.Fatal("a token without displacement")
		}
		// What decodes re-encodes to the same meaning.
		s2, token2, err := decodeSignal(encodeSignal(s, token))
		if err != nil || s2 != s || (token == nil) != (token2 == nil) || token != nil && *token != *token2 {
			t.Fatalf("round trip: %v %v %v", s2, token2, err)
		}
	})
}

func TestDecodeSignal(t *testing.T) {
	tok := [tokenSize]byte{9}
	for _, tc := range []struct {
		in    []byte
		s     Signal
		token bool
		ok    bool
	}{
		{[]byte{byte(Mail)}, Mail, false, true},
		{[]byte{byte(Mail) | 0x80}, Mail, false, true},
		{encodeSignal(Displaced, &tok), Displaced, true, true},
		{[]byte{byte(Displaced)}, Displaced, false, true},
		{nil, 0, false, false},
		{[]byte{1, 2}, 0, false, false},
		{append([]byte{byte(Mail)}, tok[:]...), 0, false, false},
	} {
		s, token, err := decodeSignal(tc.in)
		if (err == nil) != tc.ok || s != tc.s || (token != nil) != tc.token {
			t.Errorf("%x: %v %v %v", tc.in, s, token, err)
		}
	}
}

// TestSubject: subjects are one token under the prefix whatever the
// account string, and differ between devices.
func TestSubject(t *testing.T) {
	b := &NATS{prefix: "p.q"}
	seen := map[string]bool{}
	for _, a := range []string{"", "a", "a.b", "a b", "*", ">", "x\x00", "x\x00\x00\x00\x00\x01"} {
		for _, d := range []uint32{0, 1, 256} {
			s := b.subject(a, d)
			rest, ok := strings.CutPrefix(s, "p.q.")
			if !ok || len(rest) != 32 || strings.ContainsAny(rest, ".*> ") {
				t.Fatalf("subject %q", s)
			}
			if seen[s] {
				t.Fatalf("subject %q twice", s)
			}
			seen[s] = true
		}
	}
}

// TestNATSBadPayload: a malformed message on a device's subject is
// ignored, and signals after it still arrive.
func TestNATSBadPayload(t *testing.T) {
	url := os.Getenv("DOORLESS_TEST_NATS")
	if url == "" {
		t.Skip("DOORLESS_TEST_NATS is not set (e.g. nats://127.0.0.1:4222): skipping the NATS broker tests")
	}
	b, err := DialNATS(NATSConfig{URL: url, Prefix: "doorlesstest.badpayload." + rand.Text()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch, cancel, err := b.Subscribe("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj := b.subject("a", 1)
	for _, p := range [][]byte{nil, {1, 2}, bytes.Repeat([]byte{0xff}, 100), append([]byte{byte(Mail)}, make([]byte, tokenSize)...)} {
		if err := nc.Publish(subj, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(subj, encodeSignal(Keys, nil)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if s := <-ch; s != Keys {
		t.Fatalf("got %v, want keys", s)
	}
}
