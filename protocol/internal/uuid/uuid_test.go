package uuid

import "testing"

func TestParseFormat(t *testing.T) {
	const s = "0b2c2c1e-6a9e-4a53-9f63-3c7f1d2e8a11"
	for _, in := range []string{s, "0B2C2C1E-6A9E-4A53-9F63-3C7F1D2E8A11"} {
		u, ok := Parse(in)
		if !ok || Format(u) != s {
			t.Fatalf("Parse(%q) = %x, %v; Format = %q", in, u, ok, Format(u))
		}
	}
	for _, bad := range []string{"", s[:35], s + "0", "0b2c2c1e-6a9e-4a53-9f63+3c7f1d2e8a11", "0b2c2c1e-6a9e-4a53-9f63-3c7f1d2e8a1g", "0b2c2c1e6a9e-4a53-9f63-3c7f1d2e8a11-"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
