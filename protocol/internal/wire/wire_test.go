package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestSignalMessageRoundTrip(t *testing.T) {
	m := SignalMessage{
		RatchetKey: bytes.Repeat([]byte{5}, 33), Counter: 300, PreviousCounter: 7,
		Ciphertext: []byte("ciphertext"), PQRatchet: []byte{1, 2, 3}, Addresses: bytes.Repeat([]byte{9}, 36),
	}
	b := m.Append(nil)
	if len(b) != m.Size() {
		t.Fatalf("Size %d, encoded %d", m.Size(), len(b))
	}
	var got SignalMessage
	if err := got.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if !got.HasRatchetKey || !got.HasCounter || !got.HasCiphertext || got.Counter != 300 || got.PreviousCounter != 7 ||
		!bytes.Equal(got.Ciphertext, m.Ciphertext) || !bytes.Equal(got.PQRatchet, m.PQRatchet) || !bytes.Equal(got.Addresses, m.Addresses) {
		t.Fatalf("round trip: %+v", got)
	}
	// Optional fields are absent when empty, as in libsignal.
	m.PQRatchet, m.Addresses = nil, nil
	if err := got.Unmarshal(m.Append(nil)); err != nil || got.PQRatchet != nil || got.Addresses != nil {
		t.Fatalf("absent optional fields: %+v %v", got, err)
	}
}

func TestPreKeySignalMessageRoundTrip(t *testing.T) {
	m := PreKeySignalMessage{
		RegistrationID: 1234, PreKeyID: 5, HasPreKeyID: true, SignedPreKeyID: 6,
		KyberPreKeyID: 7, HasKyberPreKeyID: true, KyberCiphertext: []byte{8, 8}, HasKyberCiphertext: true,
		BaseKey: []byte{2}, IdentityKey: []byte{3}, Message: []byte{4},
	}
	var got PreKeySignalMessage
	if err := got.Unmarshal(m.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if got.RegistrationID != 1234 || !got.HasPreKeyID || got.PreKeyID != 5 || got.SignedPreKeyID != 6 || got.KyberPreKeyID != 7 ||
		!got.HasRegistrationID || !got.HasSignedPreKeyID || !got.HasBaseKey || !got.HasIdentityKey || !got.HasMessage ||
		!bytes.Equal(got.KyberCiphertext, []byte{8, 8}) || !bytes.Equal(got.Message, []byte{4}) {
		t.Fatalf("round trip: %+v", got)
	}
	m.HasPreKeyID = false
	if err := got.Unmarshal(m.Append(nil)); err != nil || got.HasPreKeyID {
		t.Fatalf("no one-time prekey: %+v %v", got, err)
	}
}

func TestMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{0x0a, 0x05, 1}, // bytes field longer than the input
		{0x10},          // varint missing
		{0x0b},          // group start
		{0x12, 0x00},    // counter (field 2) with wire type bytes
		{0x0a, 0x01},    // field 1 bytes, content missing
	} {
		var m SignalMessage
		if err := m.Unmarshal(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("Unmarshal(%x) = %v", b, err)
		}
	}
}

func FuzzSignalMessage(f *testing.F) {
	f.Add(SignalMessage{RatchetKey: make([]byte, 33), Counter: 1, Ciphertext: make([]byte, 16), PQRatchet: []byte{1}}.encoded())
	f.Add([]byte{0x0a, 0x05, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m SignalMessage
		if err := m.Unmarshal(b); err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes to the same values.
		var again SignalMessage
		if err := again.Unmarshal(m.Append(nil)); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if again.Counter != m.Counter || !bytes.Equal(again.Ciphertext, m.Ciphertext) || !bytes.Equal(again.PQRatchet, m.PQRatchet) {
			t.Fatal("re-encoding changed the message")
		}
	})
}

func FuzzPreKeySignalMessage(f *testing.F) {
	f.Add(PreKeySignalMessage{RegistrationID: 1, BaseKey: make([]byte, 33), Message: []byte{0x44}}.encoded())
	f.Fuzz(func(t *testing.T, b []byte) {
		var m PreKeySignalMessage
		if err := m.Unmarshal(b); err != nil {
			return
		}
		var again PreKeySignalMessage
		if err := again.Unmarshal(m.Append(nil)); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if again.RegistrationID != m.RegistrationID || !bytes.Equal(again.Message, m.Message) {
			t.Fatal("re-encoding changed the message")
		}
	})
}

func (m SignalMessage) encoded() []byte       { return m.Append(nil) }
func (m PreKeySignalMessage) encoded() []byte { return m.Append(nil) }
