package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	testID      = "0b7c2c1e-4d4f-4c2a-9e3b-6f1d2a3b4c5d"
	testAccount = "7f9d3c1a-2b4e-4f60-8a1b-2c3d4e5f6a7b"
)

func validEnvelope() *Envelope {
	return &Envelope{
		ID:              testID,
		Type:            EnvelopePreKey,
		SourceAccount:   testAccount,
		SourceUsername:  "alice",
		SourceDevice:    1,
		ClientTimestamp: 1700000000000,
		ServerTimestamp: 1700000000123,
		Content:         []byte{3, 1, 2, 3},
	}
}

// sealedEnvelope is a well-formed sealed-sender envelope: no source.
func sealedEnvelope() *Envelope {
	return &Envelope{
		ID:              testID,
		Type:            EnvelopeUnidentifiedSender,
		ClientTimestamp: 1700000000000,
		ServerTimestamp: 1700000000123,
		Content:         []byte{0x11, 1, 2, 3},
	}
}

// validFrames are one well-formed frame of every type, in their wire form.
func validFrames(t testing.TB) [][]byte {
	var out [][]byte
	for _, f := range []Frame{
		{Type: FrameEnvelope, Envelope: validEnvelope()},
		{Type: FrameEnvelope, Envelope: sealedEnvelope()},
		{Type: FrameQueueEmpty},
		{Type: FrameRefill, Keys: &KeyStatus{PreKeys: 3, KyberPreKeys: 0}},
		{Type: FrameAck, ID: testID},
	} {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestParseFrameValid(t *testing.T) {
	for _, b := range validFrames(t) {
		f, err := ParseFrame(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		again, _ := json.Marshal(f)
		if string(again) != string(b) {
			t.Fatalf("re-encoded %s as %s", b, again)
		}
	}
	// Whitespace around the frame is not trailing data.
	if _, err := ParseFrame([]byte(" {\"type\":\"queue_empty\"}\n")); err != nil {
		t.Fatal(err)
	}
}

func TestParseFrameRefusals(t *testing.T) {
	env := func(mod func(*Envelope)) string {
		e := validEnvelope()
		mod(e)
		b, _ := json.Marshal(Frame{Type: FrameEnvelope, Envelope: e})
		return string(b)
	}
	sealed := func(mod func(*Envelope)) string {
		e := sealedEnvelope()
		mod(e)
		b, _ := json.Marshal(Frame{Type: FrameEnvelope, Envelope: e})
		return string(b)
	}
	for name, frame := range map[string]string{
		"empty":                       ``,
		"not json":                    `ack`,
		"array":                       `[]`,
		"null":                        `null`,
		"no type":                     `{}`,
		"unknown type":                `{"type":"hello"}`,
		"type case":                   `{"type":"ACK","id":"` + testID + `"}`,
		"unknown field":               `{"type":"queue_empty","extra":1}`,
		"trailing data":               `{"type":"queue_empty"}{"type":"queue_empty"}`,
		"trailing garbage":            `{"type":"queue_empty"} x`,
		"truncated":                   `{"type":"queue_empty"`,
		"ack without id":              `{"type":"ack"}`,
		"ack id not a uuid":           `{"type":"ack","id":"1234"}`,
		"ack id upper case":           `{"type":"ack","id":"` + strings.ToUpper(testID) + `"}`,
		"ack with keys":               `{"type":"ack","id":"` + testID + `","keys":{"pre_keys":1,"kyber_pre_keys":1}}`,
		"ack with envelope":           `{"type":"ack","id":"` + testID + `","envelope":` + mustJSON(validEnvelope()) + `}`,
		"queue_empty with id":         `{"type":"queue_empty","id":"` + testID + `"}`,
		"refill without keys":         `{"type":"refill"}`,
		"refill negative":             `{"type":"refill","keys":{"pre_keys":-1,"kyber_pre_keys":0}}`,
		"refill with id":              `{"type":"refill","id":"` + testID + `","keys":{"pre_keys":1,"kyber_pre_keys":1}}`,
		"refill unknown key field":    `{"type":"refill","keys":{"pre_keys":1,"kyber_pre_keys":1,"x":2}}`,
		"envelope missing":            `{"type":"envelope"}`,
		"envelope with id":            `{"type":"envelope","id":"` + testID + `","envelope":` + mustJSON(validEnvelope()) + `}`,
		"envelope id":                 env(func(e *Envelope) { e.ID = "x" }),
		"envelope type":               env(func(e *Envelope) { e.Type = 1 }),
		"envelope source":             env(func(e *Envelope) { e.SourceAccount = "alice" }),
		"envelope username":           env(func(e *Envelope) { e.SourceUsername = "A" }),
		"envelope device 0":           env(func(e *Envelope) { e.SourceDevice = 0 }),
		"envelope device 128":         env(func(e *Envelope) { e.SourceDevice = MaxDevicesPerAccount + 1 }),
		"envelope no content":         env(func(e *Envelope) { e.Content = nil }),
		"envelope bad base64":         `{"type":"envelope","envelope":{"id":"` + testID + `","content":"***"}}`,
		"envelope unknown field":      strings.Replace(env(func(*Envelope) {}), `"type":3`, `"type":3,"x":1`, 1),
		"wrong field type":            `{"type":"ack","id":5}`,
		"number too big for keys":     `{"type":"refill","keys":{"pre_keys":1e400,"kyber_pre_keys":1}}`,
		"envelope device negative":    strings.Replace(env(func(*Envelope) {}), `"source_device":1`, `"source_device":-1`, 1),
		"envelope timestamp fraction": strings.Replace(env(func(*Envelope) {}), `"client_timestamp":1700000000000`, `"client_timestamp":1.5`, 1),
		"envelope without source":     env(func(e *Envelope) { e.SourceAccount, e.SourceUsername, e.SourceDevice = "", "", 0 }),
		"sealed with source account":  sealed(func(e *Envelope) { e.SourceAccount = testAccount }),
		"sealed with source username": sealed(func(e *Envelope) { e.SourceUsername = "alice" }),
		"sealed with source device":   sealed(func(e *Envelope) { e.SourceDevice = 1 }),
		"sealed without content":      sealed(func(e *Envelope) { e.Content = nil }),
	} {
		f, err := ParseFrame([]byte(frame))
		if err == nil {
			t.Errorf("%s: parsed %s as %+v", name, frame, f)
			continue
		}
		if !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: error %v does not wrap ErrBadFrame", name, err)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// FuzzParseFrame: ParseFrame never panics, and whatever it accepts is well
// formed and survives a round trip through its encoding unchanged.
func FuzzParseFrame(f *testing.F) {
	for _, b := range validFrames(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"type":"ack","id":"` + testID + `"}{}`))
	f.Add([]byte(`{"TYPE":"queue_empty"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if err := fr.Check(); err != nil {
			t.Fatalf("parsed frame fails Check: %v", err)
		}
		enc, err := json.Marshal(fr)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseFrame(enc)
		if err != nil {
			t.Fatalf("re-encoding %s does not parse: %v", enc, err)
		}
		if !reflect.DeepEqual(fr, again) {
			t.Fatalf("round trip changed %+v into %+v", fr, again)
		}
	})
}
