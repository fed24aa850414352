package fingerprint

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// recursionLimit is the nesting depth libsignal's protobuf decoder (prost) allows
// before it refuses the input; unknown groups nested deeper are malformed here too.
const recursionLimit = 100

// encodeScannable encodes CombinedFingerprints{version, local{content}, remote{content}}
// with the fields in number order, as libsignal serializes it.
func encodeScannable(version uint32, local, remote []byte) []byte {
	b := make([]byte, 0, 2*(scannableBytes+4)+6)
	b = protowire.AppendTag(b, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(version))
	for _, side := range []struct {
		field   protowire.Number
		content []byte
	}{{fieldLocal, local}, {fieldRemote, remote}} {
		inner := protowire.SizeTag(fieldLogicalContent) + protowire.SizeBytes(len(side.content))
		b = protowire.AppendTag(b, side.field, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(inner))
		b = protowire.AppendTag(b, fieldLogicalContent, protowire.BytesType)
		b = protowire.AppendBytes(b, side.content)
	}
	return b
}

// scanned is a decoded CombinedFingerprints. A side's content is nil when its message,
// or the content inside it, is absent; present but empty content is a non-nil empty slice.
type scanned struct {
	version uint32
	local   []byte
	remote  []byte
}

// decodeScannable decodes a CombinedFingerprints message with the rules of libsignal's
// decoder, so that exactly the inputs libsignal refuses are malformed here:
//   - fields may come in any order and repeat: the last version and the last content of
//     a side win, and a side's repeated messages merge (an empty one keeps the content
//     seen before);
//   - unknown fields of every wire type, groups included, are skipped;
//   - a known field with another wire type, a field number of 0, a key above 2^32-1,
//     wire types 6 and 7, a varint longer than 10 bytes or overflowing 64 bits, a
//     truncated field, an unmatched end-group and nesting deeper than recursionLimit
//     are errors;
//   - the version is a varint truncated to 32 bits.
func decodeScannable(b []byte) (scanned, error) {
	var s scanned
	for len(b) > 0 {
		num, typ, n, err := consumeKey(b)
		if err != nil {
			return s, err
		}
		b = b[n:]
		switch num {
		case fieldVersion:
			if typ != protowire.VarintType {
				return s, malformed("version has wire type %d", typ)
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, malformed("bad version varint")
			}
			s.version = uint32(v) // prost reads a uint32 field as a truncated varint
			b = b[n:]
		case fieldLocal, fieldRemote:
			if typ != protowire.BytesType {
				return s, malformed("side fingerprint has wire type %d", typ)
			}
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, malformed("truncated side fingerprint")
			}
			b = b[n:]
			side := &s.local
			if num == fieldRemote {
				side = &s.remote
			}
			if err := decodeLogical(msg, side); err != nil {
				return s, err
			}
		default:
			n, err := skipField(b, num, typ, recursionLimit)
			if err != nil {
				return s, err
			}
			b = b[n:]
		}
	}
	return s, nil
}

// decodeLogical merges a LogicalFingerprint message into *content. A side that appears
// at all, even without content, is present; its content stays nil until a content field
// is seen.
func decodeLogical(b []byte, content *[]byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeKey(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if num != fieldLogicalContent {
			n, err := skipField(b, num, typ, recursionLimit-1)
			if err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return malformed("fingerprint content has wire type %d", typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return malformed("truncated fingerprint content")
		}
		*content = append(make([]byte, 0, len(v)), v...)
		b = b[n:]
	}
	return nil
}

// consumeKey reads a field key as prost does: a varint no larger than 2^32-1, with a
// wire type of 0 to 5 and a field number of at least 1.
func consumeKey(b []byte) (protowire.Number, protowire.Type, int, error) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, 0, malformed("bad key varint")
	}
	if v > math.MaxUint32 {
		return 0, 0, 0, malformed("key out of range")
	}
	typ := protowire.Type(v & 7)
	if typ > protowire.Fixed32Type {
		return 0, 0, 0, malformed("invalid wire type %d", typ)
	}
	num := protowire.Number(v >> 3)
	if num < protowire.MinValidNumber {
		return 0, 0, 0, malformed("field number 0")
	}
	return num, typ, n, nil
}

// skipField returns the length of an unknown field's value (after its key). budget is
// the nesting still allowed: it is spent by each field inside a group, as prost does.
func skipField(b []byte, num protowire.Number, typ protowire.Type, budget int) (int, error) {
	if budget <= 0 {
		return 0, malformed("nested too deeply")
	}
	switch typ {
	case protowire.VarintType:
		_, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, malformed("bad varint")
		}
		return n, nil
	case protowire.Fixed32Type:
		if len(b) < 4 {
			return 0, malformed("truncated fixed32")
		}
		return 4, nil
	case protowire.Fixed64Type:
		if len(b) < 8 {
			return 0, malformed("truncated fixed64")
		}
		return 8, nil
	case protowire.BytesType:
		_, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, malformed("truncated length-delimited field")
		}
		return n, nil
	case protowire.StartGroupType:
		total := 0
		for {
			inNum, inTyp, n, err := consumeKey(b[total:])
			if err != nil {
				return 0, err
			}
			total += n
			if inTyp == protowire.EndGroupType {
				if inNum != num {
					return 0, malformed("mismatched end group")
				}
				return total, nil
			}
			n, err = skipField(b[total:], inNum, inTyp, budget-1)
			if err != nil {
				return 0, err
			}
			total += n
		}
	default: // protowire.EndGroupType
		return 0, malformed("unexpected end group")
	}
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
