package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"github.com/doorless/doorless/client"
)

// A device registers once, then opens its profile to send and receive.
func Example() {
	ctx := context.Background()
	opt := client.Options{Passphrase: "correct horse battery staple"}
	c, err := client.Register(ctx, "/home/alice/.doorless", "https://doorless.example", "alice", "", opt)
	if errors.Is(err, client.ErrProfileExists) {
		c, err = client.Open("/home/alice/.doorless", opt)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.Send(ctx, "bob", "hello bob")
	switch {
	case errors.Is(err, client.ErrUntrustedIdentity):
		log.Fatal("bob's safety number changed: compare it again, then verify it")
	case err != nil:
		log.Fatal(err)
	case res.IdentityChanged:
		fmt.Println("bob's safety number changed")
	}

	// Everything queued, then stop.
	err = c.Receive(ctx, client.ReceiveOptions{UntilEmpty: true}, func(ev client.Event) error {
		switch ev := ev.(type) {
		case *client.IdentityChanged:
			fmt.Printf("%s's safety number changed\n", ev.Username)
		case *client.Message:
			fmt.Printf("%s: %s\n", ev.From, ev.Text)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Streaming until interrupted: Receive reconnects by itself and returns nil
// when its context is cancelled.
func ExampleClient_Receive() {
	c, err := client.Open("/home/alice/.doorless", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = c.Receive(ctx, client.ReceiveOptions{}, func(ev client.Event) error {
		if m, ok := ev.(*client.Message); ok {
			fmt.Printf("%s: %s\n", m.From, m.Text)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleClient_Verify() {
	c, err := client.Open("/home/alice/.doorless", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	sn, err := c.SafetyNumber(ctx, "bob")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("read this to bob, and ask him to read his:", sn.Displayable)
	var heard string // the 60 digits bob read out, as the user typed them
	fmt.Scanln(&heard)
	if err := c.Verify(ctx, "bob", heard); errors.Is(err, client.ErrSafetyNumberMismatch) {
		fmt.Println("the numbers differ: someone may be in the middle")
	} else if err != nil {
		log.Fatal(err)
	}
}
