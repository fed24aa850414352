package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/doorless/doorless/internal/api"
)

func TestSendAndDeliver(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)

	for i := range 3 {
		e.sendOK(alice, bob, fmt.Sprintf("m%d", i))
	}
	c := e.dial(bob)
	for i := range 3 {
		f := readType(t, c, api.FrameEnvelope)
		env := f.Envelope
		if string(env.Content) != fmt.Sprintf("m%d", i) || env.SourceUsername != "alice" || env.SourceAccount != alice.id || env.SourceDevice != 1 {
			t.Fatalf("envelope %d: %+v", i, env)
		}
		ack(t, c, env.ID)
	}
	readType(t, c, api.FrameQueueEmpty)

	e.sendOK(alice, bob, "live")
	f := readType(t, c, api.FrameEnvelope)
	if string(f.Envelope.Content) != "live" {
		t.Fatalf("live envelope %+v", f.Envelope)
	}
	ack(t, c, f.Envelope.ID)
	c.Close(1000, "")

	// Everything acked: the queue is empty.
	c = e.dial(bob)
	readType(t, c, api.FrameQueueEmpty)
	n, err := e.st.QueueLen(context.Background(), bob.id, bob.device)
	if err != nil || n != 0 {
		t.Fatalf("queue len %d, %v", n, err)
	}
}
