package legal

import (
	"bytes"
	"testing"
	"time"
)

func FuzzParseRequest(f *testing.F) {
	a := newAuthority(f, "auth")
	good, _ := request(a).Encode()
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("target alice\n"), []byte("target alice\ntarget *\n"), 1))
	f.Add([]byte(RequestHeader + "\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		// What parses is canonical: it encodes back to the same bytes.
		again, err := r.Encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed %q, encodes to %q, %v", b, again, err)
		}
	})
}

func FuzzVerify(f *testing.F) {
	a := newAuthority(f, "auth")
	trust := trustOf(f, "us "+a.vkey)
	f.Add(sign(f, a, request(a)))
	r := request(a)
	r.Targets = []string{"a", "b"}
	f.Add(sign(f, a, r))
	f.Add([]byte("doorless legal request v1\n\n— auth AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Verify(b, trust, now, never)
		if err == nil && (r.Target() == "" || len(r.Categories) == 0) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzParseTrust(f *testing.F) {
	a := newAuthority(f, "auth")
	f.Add([]byte("# x\nus " + a.vkey + "\neu " + a.vkey + "\n"))
	f.Add([]byte("us\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseTrust(b)
		if err != nil {
			return
		}
		for _, au := range tr.Authorities() {
			if !ValidToken(au.Name) || len(au.Jurisdictions) == 0 {
				t.Fatalf("authority %+v", au)
			}
		}
	})
}

func FuzzParseDisclosure(f *testing.F) {
	a := newAuthority(f, "auth")
	r := request(a)
	f.Add(NewDisclosure(r, 3, nil, now, &Account{Created: now, LastSeenDay: 20_000}).Encode())
	f.Add(NewDisclosure(r, 3, nil, now, nil).Encode())
	f.Add([]byte(DisclosureHeader + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDisclosure(b)
		if err != nil {
			return
		}
		if !bytes.Equal(d.Encode(), b) || d.Generated.Location() != time.UTC {
			t.Fatalf("parsed %q, encodes to %q", b, d.Encode())
		}
	})
}
