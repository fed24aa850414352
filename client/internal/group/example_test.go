package group_test

import (
	"fmt"

	"github.com/doorless/doorless/client/internal/group"
	"github.com/doorless/doorless/protocol/keys"
)

func Example() {
	aliceKey, _ := keys.GeneratePrivateKey(nil)
	bobKey, _ := keys.GeneratePrivateKey(nil)
	alice := group.Member{AccountID: "0b5e4f7a-8c1d-4e2f-9a3b-4c5d6e7f8091", Username: "alice", Identity: aliceKey.PublicKey()}
	bob := group.Member{AccountID: "1c6f5a8b-9d2e-4f30-8b4c-5d6e7f809102", Username: "bob", Identity: bobKey.PublicKey()}
	fromAlice := group.Sender{AccountID: alice.AccountID, Identity: alice.Identity}

	// alice creates the group and sends the change to bob, pairwise.
	id, _ := group.NewID(nil)
	aliceState, created, err := group.Create(id, "Book club", alice, []group.Member{bob}, 0, aliceKey, nil)
	if err != nil {
		panic(err)
	}
	// bob does not know the group yet: he applies the change to nil.
	bobState, diff, err := group.Apply(nil, created.Bytes(), fromAlice)
	if err != nil {
		panic(err)
	}
	fmt.Println(bobState.Title(), bobState.Version(), len(diff.Added), "members")

	// alice sets a disappearing-message timer; bob follows.
	aliceState, change, err := aliceState.SetTimer(aliceKey, nil, 3600)
	if err != nil {
		panic(err)
	}
	bobState, diff, err = group.Apply(bobState, change.Bytes(), fromAlice)
	if err != nil {
		panic(err)
	}
	fmt.Println(bobState.Timer(), diff.TimerChanged, bobState.Hash() == aliceState.Hash())

	// bob is no admin: he may only leave.
	if _, _, err := bobState.SetTitle(bobKey, nil, "Bob's club"); err != nil {
		fmt.Println(err)
	}
	// Output:
	// Book club 1 2 members
	// 3600 true true
	// group: author is not an admin
}
