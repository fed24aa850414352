package group

import "testing"

// bigGroup returns alice's 999-member group (alice admin) and a change
// adding the 1,000th member.
func bigGroup(b *testing.B) (*fixture, *State, *SignedChange) {
	f := newFixture(b)
	st, _, err := f.st.AddMembers(f.alice.key, nil, manyMembers(b, MaxMembers-4)...)
	if err != nil {
		b.Fatal(err)
	}
	_, c, err := st.AddMembers(f.alice.key, nil, f.dave.m)
	if err != nil {
		b.Fatal(err)
	}
	return f, st, c
}

// BenchmarkApply1000 judges a change that makes a 1,000-member group, on the
// 999-member state it applies to.
func BenchmarkApply1000(b *testing.B) {
	f, st, c := bigGroup(b)
	raw := c.Bytes()
	for b.Loop() {
		if _, _, err := Apply(st, raw, f.alice.sender()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(raw)), "change-bytes")
	b.ReportMetric(float64(len(c.State().Bytes())), "state-bytes")
}

// BenchmarkJoin1000 judges the same change with no current state, as a new
// member does.
func BenchmarkJoin1000(b *testing.B) {
	f, _, c := bigGroup(b)
	raw := c.Bytes()
	for b.Loop() {
		if _, _, err := Apply(nil, raw, f.alice.sender()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseState1000 decodes a stored 1,000-member state.
func BenchmarkParseState1000(b *testing.B) {
	_, _, c := bigGroup(b)
	enc := c.State().Bytes()
	for b.Loop() {
		if _, err := ParseState(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddMember1000 builds and signs the change adding the 1,000th member.
func BenchmarkAddMember1000(b *testing.B) {
	f, st, _ := bigGroup(b)
	for b.Loop() {
		if _, _, err := st.AddMembers(f.alice.key, nil, f.dave.m); err != nil {
			b.Fatal(err)
		}
	}
}
