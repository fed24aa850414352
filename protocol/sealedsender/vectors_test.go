package sealedsender

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/keys"
)

// libsignalVectors is testdata/libsignal-sealed.json, made by testdata/gen from the real
// libsignal.
type libsignalVectors struct {
	TrustRoot  string            `json:"trustRoot"`
	ValidAt    int64             `json:"validAt"`
	Recipients []vectorRecipient `json:"recipients"`
	V1         []struct {
		Sealed       string `json:"sealed"`
		USMC         string `json:"usmc"`
		Type         int    `json:"type"`
		SenderUUID   string `json:"senderUuid"`
		SenderDevice uint32 `json:"senderDevice"`
		SenderE164   string `json:"senderE164"`
	} `json:"v1"`
	V2 []struct {
		Sent       string `json:"sent"`
		USMC       string `json:"usmc"`
		Recipients []struct {
			ServiceID       string   `json:"serviceId"`
			DeviceIDs       []uint32 `json:"deviceIds"`
			RegistrationIDs []uint32 `json:"registrationIds"`
			Received        string   `json:"received"`
		} `json:"recipients"`
		Excluded []string `json:"excluded"`
	} `json:"v2"`
}

// vectorRecipient is a recipient account of the vectors and its identity private key.
type vectorRecipient struct {
	ServiceID       string `json:"serviceId"`
	IdentityPrivate string `json:"identityPrivate"`
}

func loadLibsignalVectors(t testing.TB) *libsignalVectors {
	t.Helper()
	b, err := os.ReadFile("testdata/libsignal-sealed.json")
	if err != nil {
		t.Fatal(err)
	}
	var v libsignalVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.V1) == 0 || len(v.V2) == 0 || len(v.Recipients) < 2 {
		t.Fatal("testdata/libsignal-sealed.json is incomplete")
	}
	return &v
}

func (v *libsignalVectors) key(t testing.TB, i int) *keys.PrivateKey {
	t.Helper()
	k, err := keys.NewPrivateKey(mustHex(t, v.Recipients[i].IdentityPrivate))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLibsignalVectors opens libsignal's version 1 and version 2 messages: the contents
// are libsignal's byte for byte, the certificates validate, and our split of libsignal's
// SentMessages reads what libsignal reads and gives the ReceivedMessages it gives.
func TestLibsignalVectors(t *testing.T) {
	v := loadLibsignalVectors(t)
	root, err := keys.ParsePublicKey(mustHex(t, v.TrustRoot))
	if err != nil {
		t.Fatal(err)
	}
	validAt := time.UnixMilli(v.ValidAt)
	for i, m := range v.V1 {
		c, err := Decrypt(mustHex(t, m.Sealed), v.key(t, 0))
		if err != nil {
			t.Fatalf("v1 #%d: %v", i, err)
		}
		if !bytes.Equal(c.Bytes(), mustHex(t, m.USMC)) || int(c.Type) != m.Type {
			t.Fatalf("v1 #%d: content differs", i)
		}
		s := c.Sender.Sender()
		if s.UUID != m.SenderUUID || s.DeviceID != m.SenderDevice || c.Sender.E164() != m.SenderE164 {
			t.Fatalf("v1 #%d: sender %+v %q", i, s, c.Sender.E164())
		}
		if err := c.Sender.Validate([]keys.PublicKey{root}, validAt); err != nil {
			t.Fatalf("v1 #%d: %v", i, err)
		}
		if _, err := Decrypt(mustHex(t, m.Sealed), v.key(t, 1)); err == nil {
			t.Fatalf("v1 #%d: opened by another recipient", i)
		}
	}
	for i, w := range v.V2 {
		m, err := ParseSent(mustHex(t, w.Sent))
		if err != nil {
			t.Fatalf("v2 #%d: %v", i, err)
		}
		if len(m.Recipients) != len(w.Recipients) {
			t.Fatalf("v2 #%d: %d recipients, libsignal reads %d", i, len(m.Recipients), len(w.Recipients))
		}
		var excluded []string
		for _, e := range m.Excluded {
			excluded = append(excluded, e.String())
		}
		if !slices.Equal(excluded, w.Excluded) {
			t.Fatalf("v2 #%d: excluded %v, libsignal reads %v", i, excluded, w.Excluded)
		}
		for j, r := range m.Recipients {
			want := w.Recipients[j]
			var ids, regs []uint32
			for _, d := range r.Devices {
				ids, regs = append(ids, d.ID), append(regs, d.RegistrationID)
			}
			if r.ServiceID.String() != want.ServiceID || !slices.Equal(ids, want.DeviceIDs) || !slices.Equal(regs, want.RegistrationIDs) {
				t.Fatalf("v2 #%d recipient %d: %v %v %v", i, j, r.ServiceID, ids, regs)
			}
			received := m.ForRecipient(j)
			if !bytes.Equal(received, mustHex(t, want.Received)) {
				t.Fatalf("v2 #%d recipient %d: ReceivedMessage differs from libsignal's", i, j)
			}
			k := slices.IndexFunc(v.Recipients, func(a vectorRecipient) bool { return a.ServiceID == want.ServiceID })
			c, err := Decrypt(received, v.key(t, k))
			if err != nil {
				t.Fatalf("v2 #%d recipient %d: %v", i, j, err)
			}
			if !bytes.Equal(c.Bytes(), mustHex(t, w.USMC)) || c.Type != TypeSenderKey {
				t.Fatalf("v2 #%d recipient %d: content differs", i, j)
			}
			if err := c.Sender.Validate([]keys.PublicKey{root}, validAt); err != nil {
				t.Fatal(err)
			}
			if _, err := Decrypt(received, v.key(t, 1-k)); err == nil {
				t.Fatalf("v2 #%d: opened by another recipient", i)
			}
		}
	}
}
