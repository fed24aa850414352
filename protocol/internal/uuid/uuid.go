// Package uuid reads and writes UUIDs in their hyphenated form (8-4-4-4-12 hex
// digits), as libsignal (the uuid crate) does: sender-key distribution ids and
// sealed-sender service ids. Pure functions, safe for concurrent use.
package uuid

import "encoding/hex"

// StringLen is the length of a hyphenated UUID: 8-4-4-4-12 hex digits.
const StringLen = 36

// Parse reads a hyphenated UUID in any case.
func Parse(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != StringLen || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	var digits [32]byte
	copy(digits[0:8], s[0:8])
	copy(digits[8:12], s[9:13])
	copy(digits[12:16], s[14:18])
	copy(digits[16:20], s[19:23])
	copy(digits[20:32], s[24:36])
	if _, err := hex.Decode(u[:], digits[:]); err != nil {
		return [16]byte{}, false
	}
	return u, true
}

// Format writes u in lower-case hyphenated form, as libsignal (the uuid crate)
// does.
func Format(u [16]byte) string {
	var b [StringLen]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}
