package api

import (
	"strings"
	"testing"
)

func TestValidAttachmentID(t *testing.T) {
	for _, ok := range []string{strings.Repeat("A", 43), "Vx1-_abcdefghijklmnopqrstuvwxyz0123456789AE"} {
		if !ValidAttachmentID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{
		"", strings.Repeat("A", 42), strings.Repeat("A", 44),
		strings.Repeat("A", 42) + "B", // non-canonical: the last character's spare bits set
		strings.Repeat("A", 42) + "=", strings.Repeat("A", 41) + "+/", "../" + strings.Repeat("A", 40),
	} {
		if ValidAttachmentID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAttachmentBlobSize(t *testing.T) {
	// 100 MiB, the default limit: padded 107 335 738, PKCS#7 to 107 335 744,
	// IV and MAC 48 more.
	if got := AttachmentBlobSize(MaxAttachmentSize); got != 107_335_792 {
		t.Fatalf("blob size of 100 MiB: %d", got)
	}
	for n := int64(0); n < 5000; n++ {
		b := AttachmentBlobSize(n)
		if b%16 != 0 || b-48 <= AttachmentPaddedSize(n) || b-48 > AttachmentPaddedSize(n)+16 {
			t.Fatalf("blob size %d for %d (padded %d)", b, n, AttachmentPaddedSize(n))
		}
	}
}
