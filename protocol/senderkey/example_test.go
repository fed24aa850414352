package senderkey_test

import (
	"fmt"

	"github.com/doorless/doorless/protocol/senderkey"
)

func Example() {
	group, _ := senderkey.NewDistributionID(nil)

	// Alice's own record for the group: the first distribution message creates her chain.
	alice := senderkey.NewRecord(group)
	skdm, _ := alice.DistributionMessage(nil)

	// Bob gets skdm.Bytes() over his one-to-one session with Alice and stores it in his
	// record of (Alice, group).
	m, _ := senderkey.ParseDistributionMessage(skdm.Bytes())
	bobsRecordOfAlice := senderkey.NewRecord(m.DistributionID())
	if err := bobsRecordOfAlice.Process(m); err != nil {
		panic(err)
	}

	// Alice encrypts once for the whole group; Bob decrypts.
	ct, _ := alice.Encrypt([]byte("hello, group"), nil)
	msg, _ := senderkey.ParseMessage(ct)
	pt, err := bobsRecordOfAlice.Decrypt(msg)
	fmt.Println(string(pt), err)

	// A replay is refused.
	_, err = bobsRecordOfAlice.Decrypt(msg)
	fmt.Println(err)
	// Output:
	// hello, group <nil>
	// senderkey: duplicate message: iteration 0, chain at 1
}
