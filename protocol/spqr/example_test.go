package spqr_test

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/doorless/doorless/protocol/spqr"
)

func Example() {
	authKey := make([]byte, spqr.AuthKeySize) // from PQXDH in a real session
	rand.Read(authKey)
	alice, _ := spqr.NewState(spqr.Params{AuthKey: authKey, Direction: spqr.A2B, MaxJump: 25000, MaxOOOKeys: 2000})
	bob, _ := spqr.NewState(spqr.Params{AuthKey: authKey, Direction: spqr.B2A, MaxJump: 25000, MaxOOOKeys: 2000})

	// Alice sends: msg goes into the SignalMessage's pq_ratchet field, key
	// is mixed into the message keys.
	alice, sentKey, msg, err := alice.Send(rand.Reader)
	if err != nil {
		panic(err)
	}
	_ = alice

	// Bob receives; he keeps the old state until the message as a whole
	// has been authenticated.
	next, recvKey, err := bob.Recv(msg)
	if err != nil {
		panic(err)
	}
	bob = next
	fmt.Println(bytes.Equal(sentKey, recvKey), len(msg), bob)
	// Output: true 37 spqr.State{B2A epoch=1 NoHeaderReceived}
}
