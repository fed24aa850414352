package kt

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
)

// A checkpoint note travels in a lookup proof in binary, about half the
// size of its text; the text is rebuilt byte for byte on decoding, so the
// signatures still verify over it:
//
//	u8 origin length, origin (length 0: the origin of the proof's first
//	  checkpoint, allowed in the audited checkpoints only)
//	uvarint size (minimal), root (32 bytes)
//	u8 count (1..maxNoteSigs), signatures:
//	    u8 key name length, name (length 0: the name is the origin)
//	    u32 key hash, u8 signature length (1..255), signature
//
// The encoder refuses a note that this form cannot rebuild exactly: one
// whose body is not a checkpoint as Checkpoint.Marshal writes it, or
// whose signature lines are not as note.Sign writes them.

// maxNoteSigs bounds the signatures on one note in a proof.
const maxNoteSigs = 32

// Signed-note syntax (golang.org/x/mod/sumdb/note): a blank line between
// text and signatures, and each signature line "— <name> <base64>\n".
const (
	noteSigSplit  = "\n\n"
	noteSigPrefix = "— "
)

func appendNoteWire(b, n []byte, sameOrigin string) ([]byte, string, error) {
	bad := func(what string) ([]byte, string, error) {
		return nil, "", fmt.Errorf("%w: checkpoint note: %s", ErrMalformed, what)
	}
	if len(n) > MaxCheckpointSize {
		return bad("too long")
	}
	split := bytes.Index(n, []byte(noteSigSplit))
	if split < 0 {
		return bad("no signatures")
	}
	c, err := ParseCheckpoint(n[:split+1])
	if err != nil || len(c.Origin) > 255 {
		return bad("not a checkpoint")
	}
	if c.Origin == sameOrigin {
		b = append(b, 0)
	} else {
		b = append(b, byte(len(c.Origin)))
		b = append(b, c.Origin...)
	}
	b = binary.AppendUvarint(b, c.Size)
	b = append(b, c.Root[:]...)
	lines := strings.SplitAfter(string(n[split+2:]), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" || len(lines)-1 > maxNoteSigs {
		return bad("signature lines")
	}
	lines = lines[:len(lines)-1]
	b = append(b, byte(len(lines)))
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, noteSigPrefix)
		name, b64, ok2 := strings.Cut(strings.TrimSuffix(rest, "\n"), " ")
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if !ok || !ok2 || err != nil || !validKeyName(name) || len(name) > 255 || len(raw) < 5 || len(raw) > 4+255 {
			return bad("signature line")
		}
		if name == c.Origin {
			b = append(b, 0)
		} else {
			b = append(b, byte(len(name)))
			b = append(b, name...)
		}
		b = append(b, raw[:4]...)
		b = append(b, byte(len(raw)-4))
		b = append(b, raw[4:]...)
	}
	return b, c.Origin, nil
}

// noteWire reads a note in binary and rebuilds its text.
func (r *reader) noteWire(sameOrigin string) (note []byte, origin string) {
	n := int(r.u8())
	if n == 0 {
		if sameOrigin == "" {
			r.fail("checkpoint origin reference")
			return nil, ""
		}
		origin = sameOrigin
	} else {
		origin = string(r.bytes(n))
		if origin == sameOrigin {
			r.fail("checkpoint origin not referenced")
			return nil, ""
		}
	}
	if r.err != nil {
		return nil, ""
	}
	size, k := binary.Uvarint(r.b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, size)) {
		r.fail("checkpoint size")
		return nil, ""
	}
	r.bytes(k)
	c := Checkpoint{Origin: origin, Size: size, Root: r.hash()}
	body := c.Marshal()
	if _, err := ParseCheckpoint(body); err != nil {
		r.fail("checkpoint origin")
		return nil, ""
	}
	var out bytes.Buffer
	out.Write(body)
	out.WriteByte('\n')
	count := int(r.u8())
	if count == 0 || count > maxNoteSigs {
		r.fail("checkpoint signature count")
		return nil, ""
	}
	for ; count > 0 && r.err == nil; count-- {
		name := origin
		if !validKeyName(origin) {
			r.fail("checkpoint signature name")
		}
		if n := int(r.u8()); n > 0 {
			name = string(r.bytes(n))
			if name == origin || !validKeyName(name) {
				r.fail("checkpoint signature name")
			}
		}
		raw := append([]byte{}, r.bytes(4)...)
		sl := int(r.u8())
		if sl == 0 {
			r.fail("checkpoint signature length")
		}
		raw = append(raw, r.bytes(sl)...)
		out.WriteString(noteSigPrefix)
		out.WriteString(name)
		out.WriteByte(' ')
		out.WriteString(base64.StdEncoding.EncodeToString(raw))
		out.WriteByte('\n')
	}
	if r.err != nil {
		return nil, ""
	}
	if out.Len() > MaxCheckpointSize {
		r.fail("checkpoint too long")
		return nil, ""
	}
	return out.Bytes(), origin
}
