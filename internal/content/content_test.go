package content

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func seeds() []*Content {
	return []*Content{
		{Timestamp: 0},
		{Timestamp: 1700000000123, Body: "hello"},
		{Timestamp: 1, Body: "ünïcödé ✓"},
		{Timestamp: 1<<63 - 1, Body: strings.Repeat("x", 150)},
		{Timestamp: 42, Body: strings.Repeat("y", 160)},
		{Timestamp: 42, Body: strings.Repeat("z", MaxBody)},
		{Timestamp: 7, Body: "with a file", Attachment: testAttachment(), ExpireTimer: 3600, ViewOnce: true},
		{Timestamp: 8, ExpireTimer: 60, TimerUpdate: true},
		{Timestamp: 9, TimerUpdate: true},
		{Timestamp: 10, Body: "to the group", GroupID: bytes.Repeat([]byte{7}, GroupIDSize)},
		{Timestamp: 11, GroupID: bytes.Repeat([]byte{7}, GroupIDSize), GroupChange: []byte("signed change"), SenderKey: []byte("skdm")},
		{Timestamp: 12, Body: "sent to bob", Sync: true, Destination: "bob"},
		{Timestamp: 13, Body: "sent to the group", Sync: true, GroupID: bytes.Repeat([]byte{1}, GroupIDSize)},
		{Timestamp: 14, Body: "with my profile key", ProfileKey: bytes.Repeat([]byte{9}, ProfileKeySize)},
		{Timestamp: 15, Receipt: &Receipt{Type: ReceiptDelivered, Timestamps: []int64{1, 300, 1 << 62}}},
		{Timestamp: 16, Receipt: &Receipt{Type: ReceiptRead, Timestamps: []int64{7}}, ProfileKey: make([]byte, ProfileKeySize)},
		{Timestamp: 17, Body: "franked", Franking: testFranking()},
		{Timestamp: 18, Body: "franked, to the group", GroupID: bytes.Repeat([]byte{7}, GroupIDSize),
			ProfileKey: bytes.Repeat([]byte{9}, ProfileKeySize), Franking: testFranking()},
	}
}

func testFranking() *Franking {
	f := new(Franking)
	for i := range f.Key {
		f.Key[i], f.SenderTag[i] = byte(i), byte(0xff-i)
	}
	return f
}

// TestCommitted checks that the committed bytes are exactly the encoding
// before the franking field, whatever else the content holds, and that they
// cover the version (so a version cannot be swapped under a commitment).
func TestCommitted(t *testing.T) {
	for _, c := range seeds() {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		unpadded, err := Unpad(b)
		if err != nil {
			t.Fatal(err)
		}
		got := c.Committed()
		if c.Franking == nil {
			if !bytes.Equal(got, unpadded) {
				t.Fatalf("content %d: unfranked content commits to something else than its encoding", c.Timestamp)
			}
			continue
		}
		want := unpadded[:len(unpadded)-2-FrankingSize]
		if !bytes.Equal(got, want) || !bytes.HasPrefix(unpadded, got) {
			t.Fatalf("content %d: committed bytes are not the encoding before the franking field", c.Timestamp)
		}
		if bytes.Contains(got, c.Franking.Key[:]) {
			t.Fatalf("content %d: the committed bytes include the franking key", c.Timestamp)
		}
		if v, n := protowire.ConsumeVarint(got[1:]); n != 1 || v != 3 {
			t.Fatalf("content %d: franked content is version %d, want 3", c.Timestamp, v)
		}
		parsed, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(parsed.Committed(), got) {
			t.Fatalf("content %d: the parsed content commits to other bytes", c.Timestamp)
		}
	}
}

func testAttachment() *Attachment {
	return &Attachment{
		ID:          "AbC-_09",
		Key:         bytes.Repeat([]byte{1}, AttachmentKeySize),
		Digest:      bytes.Repeat([]byte{2}, AttachmentDigestSize),
		Size:        1000,
		BlobSize:    1100,
		ContentType: "image/png",
		FileName:    "cat.png",
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range seeds() {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%PadBlock != 0 {
			t.Fatalf("padded length %d", len(b))
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of content %d differs", c.Timestamp)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, c := range []*Content{
		{Timestamp: -1},
		{Timestamp: 1, Body: "\xff"},
		{Timestamp: 1, Body: strings.Repeat("a", MaxBody+1)},
		{Timestamp: 1, ExpireTimer: MaxTimer + 1},
		{Timestamp: 1, ViewOnce: true},
		{Timestamp: 1, GroupID: []byte{1, 2, 3}},
		{Timestamp: 1, GroupChange: []byte{1}},
		{Timestamp: 1, SenderKey: []byte{1}},
		{Timestamp: 1, Destination: "bob"},
		{Timestamp: 1, Sync: true},
		{Timestamp: 1, Sync: true, Destination: "bob", GroupID: make([]byte, GroupIDSize)},
		{Timestamp: 1, Attachment: func() *Attachment { a := testAttachment(); a.ID = "a/b"; return a }()},
		{Timestamp: 1, Attachment: func() *Attachment { a := testAttachment(); a.Key = a.Key[1:]; return a }()},
		{Timestamp: 1, Attachment: func() *Attachment { a := testAttachment(); a.Digest = nil; return a }()},
		{Timestamp: 1, Attachment: func() *Attachment { a := testAttachment(); a.BlobSize = a.Size; return a }()},
		{Timestamp: 1, Attachment: func() *Attachment { a := testAttachment(); a.ContentType = "text/html\n"; return a }()},
		{Timestamp: 1, Attachment: func() *Attachment { a := testAttachment(); a.FileName = "\xff"; return a }()},
		{Timestamp: 1, ProfileKey: make([]byte, 31)},
		{Timestamp: 1, Receipt: &Receipt{Type: ReceiptRead}},
		{Timestamp: 1, Receipt: &Receipt{Type: 3, Timestamps: []int64{1}}},
		{Timestamp: 1, Receipt: &Receipt{Type: ReceiptRead, Timestamps: []int64{2, 2}}},
		{Timestamp: 1, Receipt: &Receipt{Type: ReceiptRead, Timestamps: []int64{0}}},
		{Timestamp: 1, Receipt: &Receipt{Type: ReceiptRead, Timestamps: make([]int64, MaxReceiptTimestamps+1)}},
		{Timestamp: 1, Body: "hi", Receipt: &Receipt{Type: ReceiptRead, Timestamps: []int64{1}}},
		{Timestamp: 1, Sync: true, Destination: "bob", Receipt: &Receipt{Type: ReceiptRead, Timestamps: []int64{1}}},
	} {
		if _, err := Encode(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("Encode of content %+v = %v, want ErrMalformed", c.Timestamp, err)
		}
	}
}

func TestPadding(t *testing.T) {
	for n := range 400 {
		b := bytes.Repeat([]byte{1}, n)
		p := Pad(b)
		if len(p)%PadBlock != 0 || len(p) <= n || len(p)-n > PadBlock {
			t.Fatalf("Pad(%d) = %d bytes", n, len(p))
		}
		u, err := Unpad(p)
		if err != nil || !bytes.Equal(u, b) {
			t.Fatalf("Unpad(Pad(%d)) = %d, %v", n, len(u), err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	valid := marshal(&Content{Timestamp: 5, Body: "hi"})
	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	v1 := protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 1)
	v3 := protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 3)
	ts := protowire.AppendVarint(tag(nil, fieldTimestamp, protowire.VarintType), 5)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := map[string][]byte{
		"empty":                  nil,
		"no version":             ts,
		"no timestamp":           v1,
		"version 2, no v2 field": cat(protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 2), ts),
		"version 3":              cat(protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 3), ts),
		"version 0":              cat(protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 0), ts),
		"v2 field in version 1":  cat(v1, ts, protowire.AppendBytes(tag(nil, fieldProfileKey, protowire.BytesType), make([]byte, ProfileKeySize))),
		"receipt junk": cat(protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 2), ts,
			protowire.AppendBytes(tag(nil, fieldReceipt, protowire.BytesType), []byte{0x08, 0x01, 0x12, 0x01, 0x80})),
		"out of order":    cat(ts, v1),
		"repeated":        cat(v1, ts, ts),
		"unknown field":   cat(v1, ts, protowire.AppendVarint(tag(nil, 16, protowire.VarintType), 1)),
		"wrong type":      cat(v1, protowire.AppendBytes(tag(nil, fieldTimestamp, protowire.BytesType), []byte{1})),
		"long varint":     cat(v1, tag(nil, fieldTimestamp, protowire.VarintType), []byte{0x85, 0x00}),
		"empty body":      cat(v1, ts, protowire.AppendBytes(tag(nil, fieldBody, protowire.BytesType), nil)),
		"bad utf-8":       cat(v1, ts, protowire.AppendBytes(tag(nil, fieldBody, protowire.BytesType), []byte{0xff})),
		"truncated body":  cat(v1, ts, tag(nil, fieldBody, protowire.BytesType), []byte{5, 'a'}),
		"false boolean":   cat(v1, ts, protowire.AppendVarint(tag(nil, fieldSync, protowire.VarintType), 0)),
		"boolean 2":       cat(v1, ts, protowire.AppendVarint(tag(nil, fieldTimerUpdate, protowire.VarintType), 2)),
		"zero timer":      cat(v1, ts, protowire.AppendVarint(tag(nil, fieldExpireTimer, protowire.VarintType), 0)),
		"fixed64 field":   cat(v1, ts, protowire.AppendFixed64(tag(nil, fieldExpireTimer, protowire.Fixed64Type), 1)),
		"attachment junk": cat(v1, ts, protowire.AppendBytes(tag(nil, fieldAttachment, protowire.BytesType), []byte{0xff})),
		"huge timestamp":  cat(v1, protowire.AppendVarint(tag(nil, fieldTimestamp, protowire.VarintType), 1<<63)),
		"franking in version 2": cat(protowire.AppendVarint(tag(nil, fieldVersion, protowire.VarintType), 2), ts,
			protowire.AppendBytes(tag(nil, fieldProfileKey, protowire.BytesType), make([]byte, ProfileKeySize)),
			protowire.AppendBytes(tag(nil, fieldFranking, protowire.BytesType), make([]byte, FrankingSize))),
		"short franking":  cat(v3, ts, protowire.AppendBytes(tag(nil, fieldFranking, protowire.BytesType), make([]byte, FrankingSize-1))),
		"long franking":   cat(v3, ts, protowire.AppendBytes(tag(nil, fieldFranking, protowire.BytesType), make([]byte, FrankingSize+1))),
		"franking varint": cat(v3, ts, protowire.AppendVarint(tag(nil, fieldFranking, protowire.VarintType), 1)),
	}
	for name, b := range cases {
		if _, err := Parse(Pad(b)); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("%s: Parse = %v", name, err)
		}
	}
	if _, err := Parse(valid); err == nil {
		t.Error("Parse accepted unpadded content")
	}
	p := Pad(valid)
	p[len(p)-1] = 1
	if _, err := Parse(p); err == nil {
		t.Error("Parse accepted a non-zero padding byte")
	}
	if _, err := Parse(append(Pad(valid), make([]byte, PadBlock)...)); err == nil {
		t.Error("Parse accepted more than a block of padding")
	}
	if _, err := Parse(Pad(valid)[:PadBlock-1]); err == nil {
		t.Error("Parse accepted a length that is not a multiple of the block")
	}
}

func FuzzParseContent(f *testing.F) {
	for _, c := range seeds() {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(Pad(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		// Parse is strict: what it accepts is exactly what Encode makes.
		again, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode of parsed content: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
	})
}
