package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseUnidentifiedAccessKey(t *testing.T) {
	var k [UnidentifiedAccessKeySize]byte
	for i := range k {
		k[i] = byte(0xf0 + i)
	}
	s := FormatUnidentifiedAccessKey(k)
	got, err := ParseUnidentifiedAccessKey(s)
	if err != nil || got != k {
		t.Fatalf("round trip of %q: %x, %v", s, got, err)
	}
	for name, bad := range map[string]string{
		"empty":          "",
		"unpadded":       strings.TrimRight(s, "="),
		"url alphabet":   base64.URLEncoding.EncodeToString(k[:]),
		"15 bytes":       base64.StdEncoding.EncodeToString(k[:15]),
		"17 bytes":       base64.StdEncoding.EncodeToString(append(k[:], 0)),
		"trailing bits":  s[:21] + "B==", // last character carries bits past the 16th byte
		"space":          " " + s[1:],
		"newline inside": s[:10] + "\n" + s[11:],
		"not base64":     strings.Repeat("*", 24),
	} {
		if _, err := ParseUnidentifiedAccessKey(bad); !errors.Is(err, ErrBadAccessKey) {
			t.Errorf("%s (%q): error %v, want ErrBadAccessKey", name, bad, err)
		}
	}
}

func TestValidSendType(t *testing.T) {
	for _, tt := range []struct {
		typ                      int
		identified, unidentified bool
	}{
		{EnvelopeWhisper, true, false},
		{EnvelopePreKey, true, false},
		{EnvelopeSenderKey, true, false},
		{EnvelopeUnidentifiedSender, false, true},
		{1, false, false},
		{8, false, false},
		{0, false, false},
	} {
		if got := ValidSendType(tt.typ, false); got != tt.identified {
			t.Errorf("ValidSendType(%d, authenticated) = %v", tt.typ, got)
		}
		if got := ValidSendType(tt.typ, true); got != tt.unidentified {
			t.Errorf("ValidSendType(%d, unidentified) = %v", tt.typ, got)
		}
		if got := ValidEnvelopeType(tt.typ); got != (tt.identified || tt.unidentified) {
			t.Errorf("ValidEnvelopeType(%d) = %v", tt.typ, got)
		}
	}
}

// TestSealedEnvelopeJSON: a sealed-sender envelope's source fields are
// absent on the wire, not empty strings or zeros.
func TestSealedEnvelopeJSON(t *testing.T) {
	b, err := json.Marshal(sealedEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("source")) {
		t.Fatalf("sealed envelope %s names a source field", b)
	}
}

// FuzzParseUnidentifiedAccessKey: the parser never panics, accepts exactly
// the padded standard base64 of 16 bytes, and what it accepts formats back
// to the same string.
func FuzzParseUnidentifiedAccessKey(f *testing.F) {
	var k [UnidentifiedAccessKeySize]byte
	f.Add(FormatUnidentifiedAccessKey(k))
	for i := range k {
		k[i] = byte(i * 17)
	}
	f.Add(FormatUnidentifiedAccessKey(k))
	f.Add(strings.TrimRight(FormatUnidentifiedAccessKey(k), "="))
	f.Add(base64.URLEncoding.EncodeToString(k[:]))
	f.Add("AAAAAAAAAAAAAAAAAAAAAB==")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseUnidentifiedAccessKey(s)
		if err != nil {
			if !errors.Is(err, ErrBadAccessKey) {
				t.Fatalf("error %v is not ErrBadAccessKey", err)
			}
			return
		}
		if again := FormatUnidentifiedAccessKey(got); again != s {
			t.Fatalf("accepted %q, which formats back as %q", s, again)
		}
	})
}
